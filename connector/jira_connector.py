"""The Jira side of an escalation: create the issue, link tickets to it, comment, read its status.

Cloud gets REST v3 with ADF descriptions and comments; Server and Data Center get REST v2 with wiki
markup (DESIGN.md). The jira client speaks v2 only, so the two v3 calls (create, comment) are sent
through the client's own session — same auth, same timeout, same no-retry policy, same error path.

Avoiding duplicates is the caller's job, with this module's help: every created issue carries an
``idempotency_label`` the worker derives from the ticket, and ``find_issue_by_label`` looks for it. Jira
Cloud's search is eventually consistent (a just-created issue can be missing from JQL for a while), so
the worker must record the created key in its own store first and use the label search only to recover
from a crash between "created" and "recorded".
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from jira import JIRA

from connector.errors import NotFoundError, PermanentError
from connector.jira_client import Deployment, JiraConfig, build_jira, deployment_of, jira_errors
from connector.jira_description import adf_from_text, adf_problems, fit_adf, fit_wiki

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

SUMMARY_LIMIT = 255
GLOBAL_ID_LIMIT = 255


@dataclass(frozen=True)
class IssueRef:
    key: str
    id: str
    url: str


@dataclass(frozen=True)
class IssueStatus:
    name: str
    # Jira's statusCategory key: "new", "indeterminate" or "done".
    category: str
    updated: datetime | None


def calls_jira(method: Callable[P, R]) -> Callable[P, R]:
    """Run a method inside ``jira_errors``: whatever the client raises arrives as a typed error."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with jira_errors():
            return method(*args, **kwargs)

    return wrapper


def ticket_global_id(ticket_url: str, ticket_id: int | str) -> str:
    """A remote link's stable ``globalId`` for a ticket, in the form Atlassian's docs use
    (``system=<base url>&id=<id>``): posting a link with the same globalId updates it in place."""
    parts = urlsplit(ticket_url)
    return f"system={parts.scheme}://{parts.netloc}/tickets&id={ticket_id}"[:GLOBAL_ID_LIMIT]


def clean_label(label: str) -> str:
    """Jira labels cannot contain spaces and stop at 255 characters."""
    return re.sub(r"\s+", "-", label.strip())[:255]


def clean_summary(summary: str) -> str:
    """One line (Jira refuses newlines in a summary) of at most 255 characters."""
    line = " ".join(summary.split())
    return line if len(line) <= SUMMARY_LIMIT else line[: SUMMARY_LIMIT - 1].rstrip() + "…"


class JiraConnector:
    def __init__(self, config: JiraConfig, *, client: JIRA | None = None) -> None:
        self.config = config
        self._client = client
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JiraConnector:
        return cls(JiraConfig.from_env(environ))

    @property
    def client(self) -> JIRA:
        """Built on first use: constructing it calls serverInfo, which a constructor should not do."""
        with self._lock:
            if self._client is None:
                with jira_errors():
                    self._client = build_jira(self.config)
            return self._client

    @property
    def deployment(self) -> Deployment:
        return self.config.deployment or deployment_of(self.client)

    def browse_url(self, key: str) -> str:
        return f"{self.config.server_url}/browse/{key}"

    @calls_jira
    def check_auth(self) -> dict[str, Any]:
        """The authenticated account (``GET /rest/api/2/myself``); raises ``AuthError`` when refused."""
        return self.client.myself()

    @calls_jira
    def create_issue(
        self,
        *,
        project: str,
        issue_type: str,
        summary: str,
        description_adf: dict[str, Any],
        description_wiki: str,
        labels: Iterable[str],
        security_level: str | None,
        idempotency_label: str,
        full_package_url: str | None = None,
        priority: str | None = None,
    ) -> IssueRef:
        """One issue, sent once. The description is shortened to Jira's limit, never refused for length."""
        all_labels = list(dict.fromkeys(clean_label(x) for x in [*labels, idempotency_label] if x.strip()))
        fields: dict[str, Any] = {
            "project": {"key": project},
            "issuetype": {"name": issue_type},
            "summary": clean_summary(summary),
            "labels": all_labels,
        }
        if security_level:
            # Jira documents {"id": ...}; a name is accepted for a level of the project's scheme.
            fields["security"] = (
                {"id": security_level} if security_level.isdigit() else {"name": security_level}
            )
        if priority:
            fields["priority"] = {"name": priority}
        if self.deployment is Deployment.CLOUD:
            problems = adf_problems(description_adf)
            if problems:  # a renderer bug must not cost the escalation: send the text as plain ADF
                log.warning("description ADF is malformed (%s); sending it as plain text", problems[0])
            adf = adf_from_text(description_wiki) if problems else description_adf
            fields["description"] = fit_adf(adf, full_package_url)
            raw = self._post_v3("issue", {"fields": fields})
        else:
            fields["description"] = fit_wiki(description_wiki, full_package_url)
            raw = self.client.create_issue(fields=fields, prefetch=False).raw
        return IssueRef(key=raw["key"], id=str(raw["id"]), url=self.browse_url(raw["key"]))

    @calls_jira
    def find_issue_by_label(self, label: str) -> IssueRef | None:
        """The oldest issue carrying ``label``, or None. Eventually consistent on Cloud: see module doc."""
        jql = f'labels = "{clean_label(label)}" ORDER BY created ASC'
        found = self.client.search_issues(jql, maxResults=1, fields="summary,labels", json_result=True)
        issues = found.get("issues") or []
        if not issues:
            return None
        return IssueRef(key=issues[0]["key"], id=str(issues[0]["id"]), url=self.browse_url(issues[0]["key"]))

    @calls_jira
    def upsert_remote_link(
        self,
        issue_key: str,
        *,
        ticket_url: str,
        ticket_id: int | str,
        title: str,
        global_id: str | None = None,
        summary: str | None = None,
    ) -> str:
        """A link from the issue back to a ticket; the same ticket always updates the same link."""
        destination: dict[str, Any] = {"url": ticket_url, "title": title[:255]}
        if summary:
            destination["summary"] = summary[:255]
        link = self.client.add_remote_link(
            issue_key,
            destination,
            globalId=global_id or ticket_global_id(ticket_url, ticket_id),
            application={"type": "com.zendesk", "name": "Zendesk"},
            relationship="support ticket",
        )
        return str(link.raw.get("id", ""))

    def link_ticket(self, issue_key: str, *, ticket_url: str, ticket_id: int | str, title: str) -> str:
        """Attach a further ticket (same symptom, another customer) to an existing issue."""
        return self.upsert_remote_link(issue_key, ticket_url=ticket_url, ticket_id=ticket_id, title=title)

    @calls_jira
    def add_comment(
        self, key: str, *, body_adf: dict[str, Any] | None = None, body_wiki: str | None = None
    ) -> str:
        """A comment in the deployment's format: ADF on Cloud when given, wiki markup otherwise."""
        if self.deployment is Deployment.CLOUD and body_adf is not None and not adf_problems(body_adf):
            raw = self._post_v3(f"issue/{key}/comment", {"body": fit_adf(body_adf, None)})
            return str(raw.get("id", ""))
        if body_wiki is None:
            raise ValueError("add_comment needs body_wiki outside Cloud (or when the ADF is not valid)")
        return str(self.client.add_comment(key, fit_wiki(body_wiki, None)).id)

    @calls_jira
    def get_status(self, key: str) -> IssueStatus:
        fields = self.client.issue(key, fields="status,updated").raw.get("fields") or {}
        status = fields.get("status") or {}
        category = status.get("statusCategory") or {}
        return IssueStatus(
            name=str(status.get("name") or ""),
            category=str(category.get("key") or ""),
            updated=parse_jira_time(fields.get("updated")),
        )

    @calls_jira
    def link_issues(self, inward_key: str, outward_key: str, link_type: str = "Relates") -> None:
        """An issue link between two Jira issues (e.g. a recurrence to the original defect)."""
        self.client.create_issue_link(link_type, inward_key, outward_key)

    @calls_jira
    def reopen(self, key: str) -> str | None:
        """Move a done issue back into work; returns the status it moved to, None when it was not done.

        Workflows differ: a transition named like "Reopen" is taken first, then one into a to-do status,
        then one into an in-progress status (``GET``/``POST /rest/api/2/issue/{key}/transitions``)."""
        if self.get_status(key).category != "done":
            return None
        options = [t for t in self.client.transitions(key) if _category_of(t) not in ("done", "")]
        if not options:
            raise PermanentError("jira", f"{key} has no transition out of its done status")

        def rank(t: dict[str, Any]) -> tuple[int, int]:
            named = "reopen" in str(t.get("name", "")).lower()
            return (0 if named else 1, 0 if _category_of(t) == "new" else 1)

        chosen = min(options, key=rank)
        self.client.transition_issue(key, str(chosen["id"]))
        return str((chosen.get("to") or {}).get("name") or chosen.get("name") or "")

    @calls_jira
    def labels(self, key: str) -> list[str]:
        fields = self.client.issue(key, fields="labels").raw.get("fields") or {}
        return [str(x) for x in fields.get("labels") or []]

    @calls_jira
    def set_priority(self, key: str, priority: str) -> None:
        """``PUT /rest/api/2/issue/{key}`` with the priority by name."""
        self._put_v2(f"issue/{key}", {"fields": {"priority": {"name": priority}}})

    @calls_jira
    def replace_labels(self, key: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """Add and remove labels without touching the others (the ``update`` verbs of an issue edit)."""
        ops = [{"remove": clean_label(x)} for x in remove] + [{"add": clean_label(x)} for x in add]
        if ops:
            self._put_v2(f"issue/{key}", {"update": {"labels": ops}})

    @calls_jira
    def set_property(self, key: str, name: str, value: Any) -> None:
        """An issue entity property (``PUT /rest/api/2/issue/{key}/properties/{name}``): data an app keeps
        on the issue, readable by other apps and automation."""
        self._put_v2(f"issue/{key}/properties/{name}", value)

    def get_property(self, key: str, name: str) -> Any | None:
        """An issue entity property's value; None when the issue has no such property."""
        try:
            with jira_errors():
                url = f"{self.config.server_url}/rest/api/2/issue/{key}/properties/{name}"
                return self.client._session.get(url).json().get("value")
        except NotFoundError:
            return None

    def _put_v2(self, path: str, payload: Any) -> None:
        self.client._session.put(f"{self.config.server_url}/rest/api/2/{path}", data=json.dumps(payload))

    def _post_v3(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.client._session.post(  # the client's session: auth, timeout, no retries
            f"{self.config.server_url}/rest/api/3/{path}", data=json.dumps(payload)
        )
        return response.json()


def parse_jira_time(value: Any) -> datetime | None:
    """Jira's ``2026-11-20T15:00:00.000+0000`` (and ISO 8601 with a colon in the offset)."""
    if not isinstance(value, str) or not value:
        return None
    for parse in (datetime.fromisoformat, lambda v: datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%f%z")):
        try:
            return parse(value)
        except ValueError:
            continue
    return None


def _category_of(transition: dict[str, Any]) -> str:
    return str(((transition.get("to") or {}).get("statusCategory") or {}).get("key") or "")
