"""Case bundle (DESIGN.md, "Case bundle") in Zendesk's API shapes → the neutral ``Case``.

Tolerant by contract: ids as strings, statuses in upper case (event webhooks send them so), missing
comments, users, organizations or SLAs all become "unknown", never an exception.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from rules.adapters.coerce import lower, mapping, sequence, strings, text, text_id, timestamp
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

TRACKED_FIELDS = ("priority", "status", "type", "group_id")
_API_URL = re.compile(r"^(https?://[^/]+)/api/v2/tickets/(\d+)(?:\.json)?")


class BundleError(ValueError):
    """A bundle that cannot be judged at all (no ticket)."""


def case_from_bundle(bundle: Any, now: datetime | None = None) -> Case:
    if not isinstance(bundle, dict):
        raise BundleError("a case bundle must be a JSON object")
    raw_ticket = bundle.get("ticket")
    if not isinstance(raw_ticket, dict):
        raise BundleError("the bundle has no 'ticket' object")
    if text_id(raw_ticket.get("id")) is None:
        raise BundleError("the bundle's ticket has no id")
    when = now or timestamp(bundle.get("now")) or datetime.now(UTC)
    ticket = ticket_from_zendesk(raw_ticket, audits=bundle.get("audits"))
    people = {p.id: p for p in (person_from_zendesk(u) for u in sequence(bundle.get("users"))) if p}
    orgs = {
        o.id: o for o in (organization_from_zendesk(x) for x in sequence(bundle.get("organizations"))) if o
    }
    history = tuple(
        t
        for t in (_history_ticket(h) for h in sequence(bundle.get("history")))
        if t is not None and t.id != ticket.id
    )
    comments = tuple(c for c in (comment_from_zendesk(c) for c in sequence(bundle.get("comments"))) if c)
    return Case(
        ticket=ticket,
        now=when,
        comments=comments,
        people=people,
        organizations=orgs,
        history=history,
        source="zendesk",
    )


def ticket_from_zendesk(raw: dict, audits: Any = None) -> Ticket:
    tid = text_id(raw.get("id")) or ""
    return Ticket(
        id=tid,
        subject=text(raw.get("subject") or raw.get("raw_subject")),
        description=text(raw.get("description")),
        status=lower(raw.get("status")),
        priority=lower(raw.get("priority")),
        type=lower(raw.get("type")),
        tags=strings(raw.get("tags")),
        requester_id=text_id(raw.get("requester_id")),
        organization_id=text_id(raw.get("organization_id")),
        group_id=text_id(raw.get("group_id")),
        created_at=timestamp(raw.get("created_at")),
        updated_at=timestamp(raw.get("updated_at")),
        custom_fields=_custom_fields(raw),
        sla_metrics=_sla_metrics(raw),
        changes=_changes(audits),
        url=_agent_url(raw, tid),
    )


def person_from_zendesk(raw: Any) -> Person | None:
    raw = mapping(raw)
    pid = text_id(raw.get("id"))
    if pid is None:
        return None
    role = lower(raw.get("role"))
    return Person(
        id=pid,
        name=text(raw.get("name")) or None,
        email=text(raw.get("email")) or None,
        role=Role(role) if role in {r.value for r in Role} else Role.UNKNOWN,
        organization_id=text_id(raw.get("organization_id")),
    )


def organization_from_zendesk(raw: Any) -> Organization | None:
    raw = mapping(raw)
    oid = text_id(raw.get("id"))
    if oid is None:
        return None
    return Organization(
        id=oid,
        name=text(raw.get("name")) or None,
        tags=strings(raw.get("tags")),
        fields=dict(mapping(raw.get("organization_fields"))),
    )


def comment_from_zendesk(raw: Any) -> Comment | None:
    raw = mapping(raw)
    body = raw.get("plain_body") or raw.get("body")
    if not isinstance(body, str):
        return None
    public = raw.get("public")
    return Comment(
        id=text_id(raw.get("id")) or "",
        author_id=text_id(raw.get("author_id")),
        body=body,
        # Zendesk omits `public` on some sideloads; a comment is public unless it says otherwise.
        public=public if isinstance(public, bool) else True,
        created_at=timestamp(raw.get("created_at")),
        attachments=tuple(_attachments(raw)),
    )


def _history_ticket(raw: Any) -> Ticket | None:
    raw = mapping(raw)
    return ticket_from_zendesk(raw) if text_id(raw.get("id")) else None


def _attachments(raw: dict) -> list[Attachment]:
    found = []
    for a in sequence(raw.get("attachments")):
        a = mapping(a)
        name = text(a.get("file_name"))
        if name:
            size = a.get("size")
            found.append(
                Attachment(
                    name=name,
                    url=text(a.get("content_url")) or None,
                    content_type=text(a.get("content_type")) or None,
                    size=size if isinstance(size, int) else None,
                )
            )
    return found


def _custom_fields(raw: dict) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for f in sequence(raw.get("custom_fields")) or sequence(raw.get("fields")):
        f = mapping(f)
        fid = text_id(f.get("id"))
        if fid is not None and f.get("value") not in (None, ""):
            fields[fid] = f.get("value")
    return fields


def _sla_metrics(raw: dict) -> tuple[SlaMetric, ...]:
    metrics = []
    for m in sequence(mapping(raw.get("slas")).get("policy_metrics")):
        m = mapping(m)
        stage = lower(m.get("stage"))
        metrics.append(
            SlaMetric(
                metric=text(m.get("metric")) or "unknown",
                stage=SlaStage(stage) if stage in {s.value for s in SlaStage} else SlaStage.UNKNOWN,
                breach_at=timestamp(m.get("breach_at")),
            )
        )
    return tuple(metrics)


def _changes(audits: Any) -> tuple[FieldChange, ...]:
    """Field changes from ticket audits (GET /api/v2/tickets/{id}/audits.json), oldest first."""
    changes = []
    for audit in sequence(audits):
        audit = mapping(audit)
        at = timestamp(audit.get("created_at"))
        for event in sequence(audit.get("events")):
            event = mapping(event)
            name = event.get("field_name")
            if event.get("type") == "Change" and name in TRACKED_FIELDS:
                changes.append(
                    FieldChange(
                        field=name,
                        previous=lower(text(event.get("previous_value"))),
                        value=lower(text(event.get("value"))),
                        at=at,
                    )
                )
    changes.sort(key=lambda c: c.at or datetime.min.replace(tzinfo=UTC))
    return tuple(changes)


def _agent_url(raw: dict, tid: str) -> str | None:
    """The agent-facing URL; Zendesk's `url` is the API's, which agents cannot open."""
    match = _API_URL.match(text(raw.get("url")))
    return f"{match.group(1)}/agent/tickets/{match.group(2)}" if match else None
