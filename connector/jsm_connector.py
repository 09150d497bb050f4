"""The Jira Service Management side of an escalation: read a request's case, write internal comments,
labels and the L2 hand-over, and link the request to the engineering issue.

Everything goes through the ``jira`` client (built by ``connector.jira_client``: one attempt per call,
with a timeout, never sleeping) — the ``jira`` client's own calls where it has them (issue, search, issue
links), its session for JSM's REST API (``/rest/servicedeskapi``) — and every method either returns or
raises a ``connector.errors`` type.

The engineering, product or security issue is created by the ``JiraConnector`` this connector carries
(``jsm.jira.create_issue(...)``: same site, same client) and tied to the request with an *issue link*
of the configured type (not a remote link: both are issues of one site). A Zendesk ticket's internal
note is a JSM internal comment here: ``POST /rest/servicedeskapi/request/{key}/comment`` with
``"public": false``, which customers never see. Nothing here ever writes a public comment.

One connector per worker thread, as for the others (a ``requests.Session`` is not shared).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from jira import JIRA

from connector import jsm_bundle
from connector.directory import Directory
from connector.errors import ConfigError, NotFoundError
from connector.jira_client import JiraConfig
from connector.jira_connector import IssueRef, JiraConnector, calls_jira, clean_label
from connector.jira_description import fit_wiki
from connector.jsm_bundle import ServiceDeskApi
from connector.jsm_config import JsmConfig

log = logging.getLogger(__name__)

SOURCE = "jsm"


def issue_label(key: str) -> str:
    """The per-issue request label, e.g. ``jira_eng_123`` (the Zendesk tag's twin)."""
    return "jira_" + re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


class JsmConnector:
    def __init__(self, config: JsmConfig, jira: JiraConnector) -> None:
        self.config = config
        self.jira = jira
        # Organization memberships and properties, reused across cases for a few minutes.
        self.directory = Directory(ttl=config.directory_ttl)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JsmConnector:
        return cls(JsmConfig.from_env(environ), JiraConnector(JiraConfig.from_env(environ)))

    @property
    def client(self) -> JIRA:
        return self.jira.client

    @property
    def server_url(self) -> str:
        return self.jira.config.server_url

    @property
    def api(self) -> ServiceDeskApi:
        return ServiceDeskApi(self.client, self.server_url)

    def request_url(self, key: str) -> str:
        """Where an agent opens the request (the issue view; the portal is the customer's)."""
        return self.jira.browse_url(key)

    def is_request_key(self, key: str) -> bool:
        """Whether an issue key belongs to the desk (e.g. to route a Jira webhook)."""
        return key.upper().startswith(f"{self.config.project_key}-")

    # ----- reads -----

    @calls_jira
    def check_auth(self) -> dict[str, Any]:
        """The service desk as this account sees it; raises ``AuthError``/``NotFoundError`` when refused."""
        desk = self.config.service_desk_id or self.config.project_key
        return self.api.get(f"servicedesk/{desk}")

    @calls_jira
    def get_request(self, key: str) -> dict[str, Any]:
        """``GET /rest/servicedeskapi/request/{key}?expand=requestType``."""
        return self.api.get(f"request/{key}", {"expand": "requestType"})

    @calls_jira
    def fetch_case(
        self,
        key: str,
        *,
        history_days: int = jsm_bundle.DEFAULT_HISTORY_DAYS,
        history_limit: int = jsm_bundle.DEFAULT_HISTORY_LIMIT,
        include_changelog: bool = True,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """The JSM case bundle (``rules.adapters.jsm.case_from_jsm_bundle`` turns it into a ``Case``)."""
        return jsm_bundle.assemble(
            self.client,
            self.config,
            self.server_url,
            key,
            now=now,
            history_days=history_days,
            history_limit=history_limit,
            include_changelog=include_changelog,
            cache=self.directory,
        )

    fetch_bundle = fetch_case  # the name the Zendesk connector uses

    @calls_jira
    def organization(self, org_id: str) -> dict[str, Any] | None:
        """An organization in the shape rollups read: ``{"id", "name", "organization_fields"}``, its fields
        from the configured organization property (cached like the case's); None when it does not exist."""
        cached = self.directory.get(("organization", org_id))
        if cached is Directory.MISS:
            try:
                cached = self.api.get(f"organization/{org_id}")
            except NotFoundError:
                cached = None
            self.directory.put(("organization", org_id), cached)
        if not cached:
            return None
        key = self.config.org_property_key
        prop = jsm_bundle.organization_property(self.api, org_id, key, self.directory)
        value = prop.get("value", prop) if isinstance(prop, dict) else None  # an EntityProperty {key, value}
        fields = {k: v for k, v in value.items() if k != "tags"} if isinstance(value, dict) else {}
        return {
            "id": str(cached.get("id", org_id)),
            "name": cached.get("name"),
            "organization_fields": fields,
        }

    @calls_jira
    def comments(self, key: str, *, public: bool = True, internal: bool = True) -> list[dict[str, Any]]:
        params = {"public": str(public).lower(), "internal": str(internal).lower()}
        return list(self.api.pages(f"request/{key}/comment", params))

    @calls_jira
    def labels(self, key: str) -> list[str]:
        fields = self.client.issue(key, fields="labels").raw.get("fields") or {}
        return [str(x) for x in fields.get("labels") or []]

    @calls_jira
    def linked_issues(self, key: str) -> list[dict[str, str]]:
        """The request's issue links: ``{"key", "type", "direction"}`` (direction: inward or outward)."""
        fields = self.client.issue(key, fields="issuelinks").raw.get("fields") or {}
        found = []
        for link in fields.get("issuelinks") or []:
            for side, direction in (("inwardIssue", "inward"), ("outwardIssue", "outward")):
                other = link.get(side)
                if isinstance(other, dict) and other.get("key"):
                    found.append(
                        {"key": str(other["key"]), "type": str((link.get("type") or {}).get("name") or ""),
                         "direction": direction}
                    )  # fmt: skip
        return found

    # ----- writes -----

    @calls_jira
    def add_internal_comment(self, key: str, body: str) -> str:
        """An internal comment (``"public": false``: agents only, never the customer); returns its id.

        ``body`` is Jira wiki markup (``connector.render.render_jira_wiki``), shortened to Jira's limit."""
        if not body or not body.strip():
            raise ValueError("an internal comment needs a body")
        created = self.api.post(f"request/{key}/comment", {"body": fit_wiki(body, None), "public": False})
        return str(created.get("id", ""))

    @calls_jira
    def add_labels(self, key: str, labels: Iterable[str]) -> None:
        """Adds labels without touching the others (``update.labels`` of ``PUT /rest/api/2/issue/{key}``)."""
        self._edit(key, {"update": {"labels": [{"add": x} for x in _clean_labels(labels)]}})

    @calls_jira
    def remove_labels(self, key: str, labels: Iterable[str]) -> None:
        self._edit(key, {"update": {"labels": [{"remove": x} for x in _clean_labels(labels)]}})

    @calls_jira
    def link_issue(self, request_key: str, issue_key: str, link_type: str | None = None) -> bool:
        """An issue link between the request and ``issue_key``; False when one already exists.

        The engineering issue is the link's ``inwardIssue`` and the request its ``outwardIssue``. Jira
        gives a direction meaning only in its UI (Atlassian's "Jira issue linking model"); with the
        default ``Relates`` there is none."""
        if any(link["key"] == issue_key for link in self.linked_issues(request_key)):
            return False
        self.jira.link_issues(issue_key, request_key, link_type or self.config.link_type)
        return True

    @calls_jira
    def record_issue_link(self, request_key: str, issue_key: str, issue_url: str) -> bool:
        """Link the request to the issue, say so in an internal comment, and label the request.

        Idempotent: a request already carrying the issue's label is left alone (returns False), so a
        retried job does not post the comment twice. The label is written last, as the "done" mark."""
        marker = issue_label(issue_key)
        if marker in self.labels(request_key):
            return False
        self.link_issue(request_key, issue_key)
        self.add_internal_comment(request_key, f"Linked to Jira issue [{issue_key}|{issue_url}].")
        self.add_labels(request_key, [self.config.escalation_label, marker])
        return True

    @calls_jira
    def assign_l2(self, key: str) -> None:
        """L2 hand-over: set the configured field (what the L2 queue filters on, or the assignee group)."""
        if self.config.l2_field is None:
            raise ConfigError("L2 hand-over in JSM needs JSM_L2_FIELD and JSM_L2_VALUE")
        self._edit(key, {"fields": {self.config.l2_field: self.config.l2_value}})

    def create_issue(self, **kwargs: Any) -> IssueRef:
        """The engineering, product or security issue: ``JiraConnector.create_issue`` on the same site."""
        return self.jira.create_issue(**kwargs)

    def _edit(self, key: str, payload: dict[str, Any]) -> None:
        self.client._session.put(f"{self.server_url}/rest/api/2/issue/{key}", data=json.dumps(payload))
        log.info(
            "jsm request %s edited: %s",
            key,
            ", ".join(sorted(payload.get("fields") or payload.get("update") or {})),
        )


def _clean_labels(labels: Iterable[str]) -> list[str]:
    cleaned = list(dict.fromkeys(clean_label(x) for x in labels if x and x.strip()))
    if not cleaned:
        raise ValueError("no labels given")
    return cleaned
