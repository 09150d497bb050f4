"""Case bundle in Jira Service Management's shapes → the neutral ``Case`` (``source="jsm"``).

The bundle is what ``connector.jsm_connector.JsmConnector.fetch_case`` assembles, each section as the API
returned it (only ``request`` is required; anything missing is "unknown", never an exception):

```
{ "now": "2026-11-20T15:00:00Z", "source": "jsm",
  "request":  GET /rest/servicedeskapi/request/{key}?expand=requestType   (requestFieldValues, currentStatus,
              reporter, createdDate {iso8601, epochMillis}, serviceDeskId, requestType, _links)
  "issue":    GET /rest/api/2/issue/{key}?fields=…  (priority, labels, issuetype, status, custom fields)
  "changelog": [Jira changelog histories: {created, items: [{field, fromString, toString}]}],
  "comments": [GET …/request/{key}/comment values: {id, body, public, author, created}],
  "sla":      [GET …/request/{key}/sla values: {name, ongoingCycle, completedCycles}],
  "participants": [GET …/request/{key}/participant values (UserDTO)],
  "organizations": [OrganizationDTO {id, name}],
  "organization_properties": {"<org id>": GET …/organization/{id}/property/{key} → {key, value}},
  "memberships": {"<accountId>": ["<org id>", …]}   (GET …/servicedesk/{id}/organization?accountId=…;
                 present with [] when the account was looked up and belongs to no organization of the desk)
  "history":  [Jira issues of the desk's project from JQL, newest first],
  "mapping":  {JsmMapping as a dict: field ids and name mappings the connector was configured with} }
```

How JSM facts become neutral ones (all overridable through ``mapping``):

- status: the status *name* first (``Waiting for customer`` → pending, ``Resolved`` → solved, ``Closed``
  → closed), else its category (``new`` → new, ``indeterminate`` → open, ``done`` → solved);
- priority by name: Highest/Blocker/Critical → urgent, High/Major → high, Medium → normal,
  Low/Lowest/Minor/Trivial → low;
- type from the request type (and the issue type): incident-like → incident, problem/bug → problem,
  questions → question, anything else → task;
- SLA: an ongoing, running cycle is an ``active`` metric breaching at its ``breachTime`` (JSM's own
  ``breached`` verdict wins over a clock that disagrees); a paused ongoing cycle is ``paused``; an SLA
  with completed cycles only is ``achieved``. POLICY.md's SLA position then follows unchanged;
- the organization: the configured Organizations field of the request, else the reporter's organization
  on the desk; its custom values come from an organization property (default key ``escalate``, a JSON
  object such as ``{"arr": 120000, "sla_tier": "enterprise", "tags": ["strategic"]}``), optionally
  overridden by request fields (``request_org_fields``: field id → organization field key);
- people: internal-comment authors are agents (customers cannot write internal comments); the reporter,
  participants and members of the desk's organizations are customers; an author looked up and found in
  no organization is an agent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rules.adapters.coerce import lower, mapping, sequence, strings, text, text_id, timestamp
from rules.adapters.zendesk import BundleError
from rules.case import (
    Attachment,
    Case,
    Comment,
    FieldChange,
    Organization,
    Person,
    Role,
    SlaMetric,
    SlaStage,
    Ticket,
)

SOURCE = "jsm"

DEFAULT_PRIORITIES = {
    "highest": "urgent", "blocker": "urgent", "critical": "urgent", "urgent": "urgent",
    "high": "high", "major": "high",
    "medium": "normal", "normal": "normal",
    "low": "low", "lowest": "low", "minor": "low", "trivial": "low",
}  # fmt: skip
DEFAULT_STATUSES = {
    "waiting for customer": "pending", "pending": "pending", "on hold": "hold",
    "resolved": "solved", "done": "solved", "completed": "solved",
    "closed": "closed", "canceled": "closed", "cancelled": "closed", "declined": "closed",
}  # fmt: skip
STATUS_CATEGORIES = {"new": "new", "indeterminate": "open", "done": "solved"}
NEUTRAL_TYPES = ("incident", "problem", "question", "task")
_TYPE_WORDS = (
    ("incident", re.compile(r"\b(incidents?|outages?|down|emergency|major incident)\b", re.IGNORECASE)),
    ("problem", re.compile(r"\b(problems?|bugs?|defects?|errors?|broken)\b", re.IGNORECASE)),
    ("question", re.compile(r"\b(questions?|ask|how|faq|inquiry|enquiry)\b", re.IGNORECASE)),
)
TRACKED_FIELDS = ("priority", "status")


@dataclass(frozen=True)
class JsmMapping:
    """How a desk's own names and fields map onto the neutral case; the connector's configuration."""

    # Lower-case JSM name → neutral name; merged over the defaults above.
    priorities: Mapping[str, str] = field(default_factory=dict)
    statuses: Mapping[str, str] = field(default_factory=dict)
    # Lower-case request type (or issue type) name → incident | problem | question | task.
    types: Mapping[str, str] = field(default_factory=dict)
    # The request's Organizations field (e.g. "customfield_10002"); None: the reporter's organization.
    organization_field: str | None = None
    # Request field id → organization field key (e.g. {"customfield_10050": "arr"}).
    request_org_fields: Mapping[str, str] = field(default_factory=dict)
    # The Customer Request Type field on Jira issues (history), e.g. "customfield_10010".
    request_type_field: str | None = None
    # The organization property holding ARR, tier, renewal, pipeline and tags.
    org_property_key: str = "escalate"

    @classmethod
    def from_dict(cls, raw: Any) -> JsmMapping:
        raw = mapping(raw)

        def names(key: str) -> dict[str, str]:
            return {k.strip().lower(): str(v).strip().lower() for k, v in mapping(raw.get(key)).items() if v}

        return cls(
            priorities=names("priorities"),
            statuses=names("statuses"),
            types={k: v for k, v in names("types").items() if v in NEUTRAL_TYPES},
            organization_field=text(raw.get("organization_field")) or None,
            request_org_fields={
                str(k): str(v) for k, v in mapping(raw.get("request_org_fields")).items() if k and v
            },
            request_type_field=text(raw.get("request_type_field")) or None,
            org_property_key=text(raw.get("org_property_key")) or "escalate",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "priorities": dict(self.priorities),
            "statuses": dict(self.statuses),
            "types": dict(self.types),
            "organization_field": self.organization_field,
            "request_org_fields": dict(self.request_org_fields),
            "request_type_field": self.request_type_field,
            "org_property_key": self.org_property_key,
        }

    # --- names ------------------------------------------------------------------------------------
    def priority(self, name: Any) -> str | None:
        key = lower(name)
        if key is None:
            return None
        return self.priorities.get(key) or DEFAULT_PRIORITIES.get(key) or key

    def status(self, name: Any, category: Any = None) -> str | None:
        key = lower(name)
        if key is not None and (key in self.statuses or key in DEFAULT_STATUSES):
            return self.statuses.get(key) or DEFAULT_STATUSES[key]
        by_category = STATUS_CATEGORIES.get(lower(category) or "")
        return by_category or key

    def ticket_type(self, request_type: Any, issue_type: Any = None) -> str | None:
        rt, it = lower(request_type), lower(issue_type)
        for name in (rt, it):
            if name and name in self.types:
                return self.types[name]
        issue_kind = _classify(it)
        if issue_kind in ("incident", "problem"):
            return issue_kind
        return _classify(rt) or issue_kind or ("task" if rt or it else None)


def _classify(name: str | None) -> str | None:
    if not name:
        return None
    for kind, words in _TYPE_WORDS:
        if words.search(name):
            return kind
    return None


# --- the bundle -------------------------------------------------------------------------------------
def case_from_jsm_bundle(
    bundle: Any, now: datetime | None = None, jsm_mapping: JsmMapping | None = None
) -> Case:
    if not isinstance(bundle, dict):
        raise BundleError("a JSM case bundle must be a JSON object")
    request = bundle.get("request")
    if not isinstance(request, dict):
        raise BundleError("the bundle has no 'request' object")
    if not (text_id(request.get("issueKey")) or text_id(request.get("issueId"))):
        raise BundleError("the bundle's request has no issueKey")
    m = jsm_mapping or JsmMapping.from_dict(bundle.get("mapping"))
    when = now or timestamp(bundle.get("now")) or datetime.now(UTC)
    issue = mapping(bundle.get("issue"))
    memberships = {
        aid: [o for o in (text_id(x) for x in sequence(orgs)) if o]
        for aid, orgs in mapping(bundle.get("memberships")).items()
    }
    comments = tuple(c for c in (comment_from_jsm(c) for c in sequence(bundle.get("comments"))) if c)
    participants = [p for p in (mapping(x) for x in sequence(bundle.get("participants"))) if p]

    reporter = mapping(request.get("reporter"))
    reporter_id = _account_id(reporter)
    values = request_field_values(request)
    org_ids = _request_org_ids(values, issue, m, memberships, reporter_id)
    orgs = _organizations(bundle)
    org_id = org_ids[0] if org_ids else None
    org_id = _apply_request_org_fields(orgs, org_id, values, issue, m, reporter)

    ticket = ticket_from_jsm_request(
        request, issue, m, organization_id=org_id, sla=bundle.get("sla"), changelog=bundle.get("changelog"),
        now=when,
    )  # fmt: skip
    people = _people(reporter, participants, _comment_authors(bundle.get("comments")), comments, memberships)
    history = tuple(
        t
        for t in (ticket_from_jira_issue(h, m, memberships) for h in sequence(bundle.get("history")))
        if t is not None and t.id != ticket.id
    )
    return Case(
        ticket=ticket,
        now=when,
        comments=comments,
        people=people,
        organizations=orgs,
        history=history,
        source=SOURCE,
    )


def request_field_values(request: Mapping[str, Any]) -> dict[str, Any]:
    """``requestFieldValues`` (a list of ``{fieldId, label, value}``) keyed by field id."""
    found: dict[str, Any] = {}
    for item in sequence(request.get("requestFieldValues")):
        item = mapping(item)
        fid = text_id(item.get("fieldId"))
        if fid is not None:
            found[fid] = item.get("value")
    return found


def ticket_from_jsm_request(
    request: Mapping[str, Any],
    issue: Mapping[str, Any],
    m: JsmMapping,
    *,
    organization_id: str | None = None,
    sla: Any = None,
    changelog: Any = None,
    now: datetime | None = None,
) -> Ticket:
    values = request_field_values(request)
    fields = mapping(issue.get("fields"))
    key = (
        text_id(request.get("issueKey")) or text_id(issue.get("key")) or text_id(request.get("issueId")) or ""
    )
    status = mapping(request.get("currentStatus"))
    jira_status = mapping(fields.get("status"))
    # currentStatus names the JSM status; its category may be absent, the Jira issue's status has one.
    status_name = status.get("status") or jira_status.get("name")
    category = status.get("statusCategory") or mapping(jira_status.get("statusCategory")).get("key")
    request_type = mapping(request.get("requestType")).get("name")
    return Ticket(
        id=key,
        subject=text(values.get("summary") or fields.get("summary")),
        description=_plain(
            values.get("description") if "description" in values else fields.get("description")
        ),
        status=m.status(status_name, category),
        priority=m.priority(_name(values.get("priority")) or _name(fields.get("priority"))),
        type=m.ticket_type(request_type, _name(fields.get("issuetype"))),
        tags=strings(fields.get("labels")),
        requester_id=_account_id(mapping(request.get("reporter")))
        or _account_id(mapping(fields.get("reporter"))),
        organization_id=organization_id,
        created_at=date_value(request.get("createdDate")) or timestamp(fields.get("created")),
        updated_at=timestamp(fields.get("updated")) or date_value(status.get("statusDate")),
        custom_fields=_custom_fields(values, fields),
        sla_metrics=tuple(sla_metrics_from_jsm(sla, now or datetime.now(UTC))),
        changes=_changes(changelog, m),
        url=_agent_url(mapping(request.get("_links")), key) or _browse_url(issue, key),
    )


def ticket_from_jira_issue(raw: Any, m: JsmMapping, memberships: Mapping[str, list[str]]) -> Ticket | None:
    """A request of the desk as Jira's search returns it (the history window)."""
    raw = mapping(raw)
    key = text_id(raw.get("key")) or text_id(raw.get("id"))
    if key is None:
        return None
    fields = mapping(raw.get("fields"))
    status = mapping(fields.get("status"))
    reporter = _account_id(mapping(fields.get("reporter")))
    org_ids = _org_ids_of(fields.get(m.organization_field)) if m.organization_field else []
    org_ids = org_ids or list(memberships.get(reporter or "", []))
    request_type = None
    if m.request_type_field:
        value = mapping(fields.get(m.request_type_field))
        request_type = mapping(value.get("requestType")).get("name") or value.get("name")
    return Ticket(
        id=key,
        subject=text(fields.get("summary")),
        description=_plain(fields.get("description")),
        status=m.status(status.get("name"), mapping(status.get("statusCategory")).get("key")),
        priority=m.priority(_name(fields.get("priority"))),
        type=m.ticket_type(request_type, _name(fields.get("issuetype"))),
        tags=strings(fields.get("labels")),
        requester_id=reporter,
        organization_id=org_ids[0] if org_ids else None,
        created_at=timestamp(fields.get("created")),
        updated_at=timestamp(fields.get("updated")),
        custom_fields=_custom_fields({}, fields),
        url=_browse_url(raw, key),
    )


# --- people, organizations, comments ------------------------------------------------------------------
def person_from_jsm_user(
    raw: Any, role: Role = Role.UNKNOWN, organization_id: str | None = None
) -> Person | None:
    raw = mapping(raw)
    pid = _account_id(raw)
    if pid is None:
        return None
    return Person(
        id=pid,
        name=text(raw.get("displayName")) or None,
        email=text(raw.get("emailAddress")) or None,
        role=role,
        organization_id=organization_id,
    )


def organization_from_jsm(raw: Any, prop: Any = None) -> Organization | None:
    """An OrganizationDTO with its property (EntityProperty ``{key, value}``) as custom values and tags."""
    raw = mapping(raw)
    oid = text_id(raw.get("id"))
    if oid is None:
        return None
    value = mapping(mapping(prop).get("value")) if "value" in mapping(prop) else mapping(prop)
    return Organization(
        id=oid,
        name=text(raw.get("name")) or None,
        tags=strings(value.get("tags")),
        fields={k: v for k, v in value.items() if k != "tags"},
    )


def comment_from_jsm(raw: Any) -> Comment | None:
    raw = mapping(raw)
    body = raw.get("body")
    if not isinstance(body, str):
        return None
    public = raw.get("public")
    return Comment(
        id=text_id(raw.get("id")) or "",
        author_id=_account_id(mapping(raw.get("author"))),
        body=body,
        # JSM always says; a comment of unknown visibility is treated as internal (never shown as a reply).
        public=public if isinstance(public, bool) else False,
        created_at=date_value(raw.get("created")),
        attachments=tuple(_attachments(raw)),
    )


def sla_metrics_from_jsm(values: Any, now: datetime) -> list[SlaMetric]:
    metrics = []
    for raw in sequence(values):
        raw = mapping(raw)
        name = text(raw.get("name")) or text_id(raw.get("id")) or "unknown"
        metric = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unknown"
        ongoing = mapping(raw.get("ongoingCycle"))
        completed = [mapping(c) for c in sequence(raw.get("completedCycles"))]
        if ongoing:
            breach_at = date_value(ongoing.get("breachTime"))
            if breach_at is None:
                remaining = mapping(ongoing.get("remainingTime")).get("millis")
                if isinstance(remaining, int | float) and not isinstance(remaining, bool):
                    breach_at = now + timedelta(milliseconds=remaining)
            if ongoing.get("breached") is True and (breach_at is None or breach_at >= now):
                # JSM says breached (its clock, its calendar): keep its verdict against ours.
                breach_at = now - timedelta(seconds=1)
            stage = SlaStage.PAUSED if ongoing.get("paused") is True else SlaStage.ACTIVE
            metrics.append(SlaMetric(metric=metric, stage=stage, breach_at=breach_at))
        elif completed:
            metrics.append(
                SlaMetric(
                    metric=metric,
                    stage=SlaStage.ACHIEVED,
                    breach_at=date_value(completed[-1].get("breachTime")),
                )
            )
    return metrics


def date_value(value: Any) -> datetime | None:
    """JSM's DateDTO ``{iso8601, jira, epochMillis, friendly}`` (or a plain ISO string)."""
    if isinstance(value, dict):
        found = timestamp(value.get("iso8601")) or timestamp(value.get("jira"))
        millis = value.get("epochMillis")
        if found is None and isinstance(millis, int | float) and not isinstance(millis, bool):
            found = datetime.fromtimestamp(millis / 1000, UTC)
        return found
    return timestamp(value)


# --- helpers ------------------------------------------------------------------------------------------
def _account_id(user: Mapping[str, Any]) -> str | None:
    # Cloud: accountId; Server/Data Center: key or name.
    return text_id(user.get("accountId")) or text_id(user.get("key")) or text_id(user.get("name"))


def _name(value: Any) -> str | None:
    if isinstance(value, dict):
        return text(value.get("name") or value.get("value")) or None
    return value if isinstance(value, str) and value.strip() else None


def _plain(value: Any) -> str:
    """A description as text: wiki text as is, an ADF document reduced to its text."""
    if isinstance(value, dict):
        return _adf_text(value).strip()
    return text(value)


def _adf_text(node: Any) -> str:
    node = mapping(node)
    if node.get("type") == "text":
        return text(node.get("text"))
    if node.get("type") == "hardBreak":
        return "\n"
    inner = "".join(_adf_text(c) for c in sequence(node.get("content")))
    blocks = ("paragraph", "heading", "listItem", "codeBlock", "blockquote", "rule")
    return inner + "\n\n" if node.get("type") in blocks else inner


def _field_value(value: Any) -> Any:
    """Select options, users and the like as their text; lists element by element."""
    if isinstance(value, list):
        return [v for v in (_field_value(x) for x in value) if v not in (None, "")]
    if isinstance(value, dict):
        for key in ("value", "name", "displayName", "key", "id"):
            if value.get(key) not in (None, ""):
                return value[key]
        return None
    return value


def _custom_fields(values: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for source in (fields, values):  # the request's own values win
        for fid, raw in source.items():
            if not str(fid).startswith("customfield_"):
                continue
            value = _field_value(raw)
            if value not in (None, "", []):
                found[str(fid)] = value
    return found


def _org_ids_of(value: Any) -> list[str]:
    ids = [text_id(mapping(o).get("id")) for o in sequence(value)]
    return [i for i in ids if i]


def _request_org_ids(
    values: Mapping[str, Any],
    issue: Mapping[str, Any],
    m: JsmMapping,
    memberships: Mapping[str, list[str]],
    reporter_id: str | None,
) -> list[str]:
    if m.organization_field:
        raw = values.get(m.organization_field, mapping(issue.get("fields")).get(m.organization_field))
        ids = _org_ids_of(raw)
        if ids:
            return ids
    return list(memberships.get(reporter_id or "", []))


def _organizations(bundle: Mapping[str, Any]) -> dict[str, Organization]:
    props = mapping(bundle.get("organization_properties"))
    orgs: dict[str, Organization] = {}
    for raw in sequence(bundle.get("organizations")):
        oid = text_id(mapping(raw).get("id"))
        org = organization_from_jsm(raw, props.get(oid or ""))
        if org is not None and org.id not in orgs:
            orgs[org.id] = org
    return orgs


def _apply_request_org_fields(
    orgs: dict[str, Organization],
    org_id: str | None,
    values: Mapping[str, Any],
    issue: Mapping[str, Any],
    m: JsmMapping,
    reporter: Mapping[str, Any],
) -> str | None:
    """Request fields that carry the account's values (ARR, tier) onto its organization. With no
    organization, the reporter's account stands in for one, so the values are not lost."""
    fields = mapping(issue.get("fields"))
    extra = {}
    for fid, key in m.request_org_fields.items():
        value = _field_value(values.get(fid, fields.get(fid)))
        if value not in (None, "", []):
            extra[key] = value
    if not extra:
        return org_id
    if org_id is None:
        account = _account_id(reporter)
        if account is None:
            return None
        org_id = f"account:{account}"
        orgs[org_id] = Organization(id=org_id, name=text(reporter.get("displayName")) or None)
    base = orgs.get(org_id) or Organization(id=org_id)
    orgs[org_id] = Organization(id=base.id, name=base.name, tags=base.tags, fields={**base.fields, **extra})
    return org_id


def _people(
    reporter: Mapping[str, Any],
    participants: list[dict[str, Any]],
    authors: Mapping[str, dict[str, Any]],
    comments: tuple[Comment, ...],
    memberships: Mapping[str, list[str]],
) -> dict[str, Person]:
    users: dict[str, dict[str, Any]] = dict(authors)
    for user in [reporter, *participants]:
        if _account_id(user):
            users[_account_id(user) or ""] = dict(user)
    internal_authors = {c.author_id for c in comments if not c.public and c.author_id}
    customers = {_account_id(u) for u in [reporter, *participants]} - {None}
    people: dict[str, Person] = {}
    for aid in sorted({*users, *memberships}):
        orgs = memberships.get(aid)
        if aid in internal_authors:
            role = Role.AGENT
        elif aid in customers or orgs:
            role = Role.END_USER
        elif orgs is not None:  # looked up: in no organization of the desk, yet writing on the request
            role = Role.AGENT
        else:
            role = Role.UNKNOWN
        raw = users.get(aid) or {"accountId": aid}
        person = person_from_jsm_user(raw, role, orgs[0] if orgs else None)
        if person is not None:
            people[aid] = person
    return people


def _comment_authors(comments: Any) -> dict[str, dict[str, Any]]:
    return {
        aid: mapping(mapping(c).get("author"))
        for c in sequence(comments)
        if (aid := _account_id(mapping(mapping(c).get("author"))))
    }


def _attachments(raw: Mapping[str, Any]) -> list[Attachment]:
    found = []
    listing = raw.get("attachments")
    items = sequence(mapping(listing).get("values")) if isinstance(listing, dict) else sequence(listing)
    for a in items:
        a = mapping(a)
        name = text(a.get("filename"))
        if name:
            size = a.get("size")
            found.append(
                Attachment(
                    name=name,
                    url=text(mapping(a.get("_links")).get("content")) or None,
                    content_type=text(a.get("mimeType")) or None,
                    size=size if isinstance(size, int) else None,
                )
            )
    return found


def _changes(changelog: Any, m: JsmMapping) -> tuple[FieldChange, ...]:
    """Priority and status changes from Jira's changelog histories, oldest first, in neutral names."""
    changes = []
    for history in sequence(changelog):
        history = mapping(history)
        at = timestamp(history.get("created"))
        for item in sequence(history.get("items")):
            item = mapping(item)
            name = lower(item.get("field"))
            if name not in TRACKED_FIELDS:
                continue
            convert = m.priority if name == "priority" else m.status
            changes.append(
                FieldChange(
                    field=name,
                    previous=convert(item.get("fromString")),
                    value=convert(item.get("toString")),
                    at=at,
                )
            )
    changes.sort(key=lambda c: c.at or datetime.min.replace(tzinfo=UTC))
    return tuple(changes)


def _agent_url(links: Mapping[str, Any], key: str) -> str | None:
    """Where an agent opens the request: Cloud's ``_links.agent``, else ``/browse/{key}`` on the site."""
    agent = text(links.get("agent"))
    if agent:
        return agent
    for name in ("jiraRest", "self"):
        match = re.match(r"^(https?://.+?)/rest/", text(links.get(name)))
        if match and key:
            return f"{match.group(1)}/browse/{key}"
    return None


def _browse_url(issue: Mapping[str, Any], key: str) -> str | None:
    match = re.match(r"^(https?://.+?)/rest/", text(issue.get("self")))
    return f"{match.group(1)}/browse/{key}" if match and key else None
