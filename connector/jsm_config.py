"""Configuration of the Jira Service Management connector (environment; DESIGN.md "Configuration").

Authentication and the site are the Jira ones (``JIRA_URL``, ``JIRA_EMAIL``, ``JIRA_API_TOKEN``,
``JIRA_DEPLOYMENT``): a JSM desk and the Jira Software projects it escalates into live on one site. The
desk's own settings:

- ``JSM_PROJECT_KEY`` (required): the service desk's project key (history JQL, webhook routing).
- ``JSM_SERVICE_DESK_ID``: the service desk id; default: each request's own ``serviceDeskId``.
- ``JSM_ORG_PROPERTY_KEY`` (default ``escalate``): the organization property holding a JSON object with
  ``arr``, ``pipeline_arr``, ``sla_tier``, ``renewal_date`` and ``tags`` (POLICY.md's organization fields).
- ``JSM_ORG_FIELD``: the request's Organizations field (e.g. ``customfield_10002``); default: the
  reporter's organization on the desk.
- ``JSM_ARR_FIELD`` / ``JSM_TIER_FIELD``: request fields carrying the account's ARR / tier; they win over
  the organization property.
- ``JSM_REQUEST_TYPE_FIELD``: the Customer Request Type field on issues (the history's types); default:
  the issue type.
- ``JSM_LINK_TYPE`` (default ``Relates``): the issue link type between the request and the engineering
  issue; its inward or outward description works too (the ``jira`` client resolves it).
- ``JSM_L2_FIELD`` / ``JSM_L2_VALUE``: the field an L2 hand-over sets (what the L2 queue's JQL filters on,
  an assignee group, a team) and its value, as JSON (``{"value": "Tier 2"}``, ``{"name": "support-l2"}``)
  or text. Unset: L2 hand-over is not configured.
- ``JSM_PRIORITY_MAP`` / ``JSM_STATUS_MAP`` / ``JSM_TYPE_MAP``: ``Name=neutral;Other=neutral`` overrides
  of the name mappings in ``rules.adapters.jsm``.
- ``JSM_HISTORY_JQL`` (default ``project = "<key>"``): JQL selecting the history's requests;
  ``ORDER BY created DESC`` is appended.
- ``JSM_EXTRA_FIELDS``: further issue fields to read, comma-separated (e.g. a product-area field).
- ``JSM_MEMBERSHIP_LOOKUPS`` (default 50): at most this many history reporters' organizations are looked
  up per case when there is no Organizations field.
- ``JSM_DIRECTORY_TTL`` (default 300): seconds a connector reuses organization memberships and properties.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.errors import ConfigError
from rules.adapters.jsm import NEUTRAL_TYPES, JsmMapping

NEUTRAL_PRIORITIES = ("low", "normal", "high", "urgent")
NEUTRAL_STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
_FIELD_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class JsmConfig:
    project_key: str
    service_desk_id: str | None = None
    org_property_key: str = "escalate"
    organization_field: str | None = None
    arr_field: str | None = None
    tier_field: str | None = None
    request_type_field: str | None = None
    link_type: str = "Relates"
    l2_field: str | None = None
    l2_value: Any = None
    priority_map: Mapping[str, str] = field(default_factory=dict)
    status_map: Mapping[str, str] = field(default_factory=dict)
    type_map: Mapping[str, str] = field(default_factory=dict)
    history_jql: str | None = None
    extra_fields: tuple[str, ...] = ()
    membership_lookups: int = 50
    directory_ttl: float = 300.0
    # Labels the request gets once linked (the rules' default "escalated" tags include it).
    escalation_label: str = "jira_escalated"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", self.project_key or ""):
            raise ConfigError("JSM_PROJECT_KEY must be a Jira project key such as DESK")
        for name, value in (
            ("JSM_ORG_FIELD", self.organization_field),
            ("JSM_ARR_FIELD", self.arr_field),
            ("JSM_TIER_FIELD", self.tier_field),
            ("JSM_REQUEST_TYPE_FIELD", self.request_type_field),
            ("JSM_L2_FIELD", self.l2_field),
            *(("JSM_EXTRA_FIELDS", f) for f in self.extra_fields),
        ):
            if value is not None and not _FIELD_ID.match(value):
                raise ConfigError(f"{name} must be a Jira field id such as customfield_10050")
        if not self.org_property_key.strip():
            raise ConfigError("JSM_ORG_PROPERTY_KEY must not be empty")
        if not self.link_type.strip():
            raise ConfigError("JSM_LINK_TYPE must not be empty")
        if (self.l2_field is None) != (self.l2_value is None):
            raise ConfigError("JSM_L2_FIELD and JSM_L2_VALUE go together")
        if self.membership_lookups < 0:
            raise ConfigError("JSM_MEMBERSHIP_LOOKUPS must not be negative")
        if self.directory_ttl < 0:
            raise ConfigError("JSM_DIRECTORY_TTL must not be negative")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JsmConfig:
        env = os.environ if environ is None else environ

        def opt(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        if not opt("JSM_PROJECT_KEY"):
            raise ConfigError("missing environment variables: JSM_PROJECT_KEY")
        lookups, ttl = opt("JSM_MEMBERSHIP_LOOKUPS"), opt("JSM_DIRECTORY_TTL")
        try:
            membership_lookups = int(lookups) if lookups else 50
        except ValueError:
            raise ConfigError("JSM_MEMBERSHIP_LOOKUPS must be a whole number") from None
        try:
            directory_ttl = float(ttl) if ttl else 300.0
        except ValueError:
            raise ConfigError("JSM_DIRECTORY_TTL must be a number of seconds") from None
        return cls(
            project_key=str(opt("JSM_PROJECT_KEY")),
            service_desk_id=opt("JSM_SERVICE_DESK_ID"),
            org_property_key=opt("JSM_ORG_PROPERTY_KEY") or "escalate",
            organization_field=opt("JSM_ORG_FIELD"),
            arr_field=opt("JSM_ARR_FIELD"),
            tier_field=opt("JSM_TIER_FIELD"),
            request_type_field=opt("JSM_REQUEST_TYPE_FIELD"),
            link_type=opt("JSM_LINK_TYPE") or "Relates",
            l2_field=opt("JSM_L2_FIELD"),
            l2_value=parse_value(opt("JSM_L2_VALUE")),
            priority_map=parse_map(opt("JSM_PRIORITY_MAP"), "JSM_PRIORITY_MAP", NEUTRAL_PRIORITIES),
            status_map=parse_map(opt("JSM_STATUS_MAP"), "JSM_STATUS_MAP", NEUTRAL_STATUSES),
            type_map=parse_map(opt("JSM_TYPE_MAP"), "JSM_TYPE_MAP", NEUTRAL_TYPES),
            history_jql=opt("JSM_HISTORY_JQL"),
            extra_fields=tuple(f.strip() for f in (opt("JSM_EXTRA_FIELDS") or "").split(",") if f.strip()),
            membership_lookups=membership_lookups,
            directory_ttl=directory_ttl,
        )

    def mapping(self) -> JsmMapping:
        """What the adapter needs to read this desk (it travels in the bundle as ``mapping``)."""
        org_fields = {}
        if self.arr_field:
            org_fields[self.arr_field] = "arr"
        if self.tier_field:
            org_fields[self.tier_field] = "sla_tier"
        return JsmMapping(
            priorities=dict(self.priority_map),
            statuses=dict(self.status_map),
            types=dict(self.type_map),
            organization_field=self.organization_field,
            request_org_fields=org_fields,
            request_type_field=self.request_type_field,
            org_property_key=self.org_property_key,
        )

    def issue_fields(self) -> list[str]:
        """The Jira fields a case reads from the request's issue and from the history's issues."""
        base = ["summary", "description", "status", "priority", "labels", "issuetype", "created", "updated"]
        custom = [self.organization_field, self.arr_field, self.tier_field, self.request_type_field]
        return list(dict.fromkeys([*base, "reporter", *(f for f in custom if f), *self.extra_fields]))

    def history_filter(self) -> str:
        return self.history_jql or f'project = "{self.project_key}"'


def parse_value(raw: str | None) -> Any:
    """JSON when it parses to an object, list, number or boolean; otherwise the text itself."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if not isinstance(value, str) else raw


def parse_map(raw: str | None, name: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """``Highest=urgent;Blocker=urgent`` (``;`` or ``,`` between pairs) → ``{"highest": "urgent", …}``."""
    if not raw:
        return {}
    found: dict[str, str] = {}
    for pair in re.split(r"[;,]", raw):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        value = value.strip().lower()
        if not sep or not key.strip() or value not in allowed:
            raise ConfigError(
                f"{name} must look like Name={allowed[0]};Other={allowed[-1]} (one of {allowed})"
            )
        found[key.strip().lower()] = value
    return found
