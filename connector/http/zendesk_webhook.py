"""POST /webhooks/zendesk: trigger webhooks (our body template) and ticket event subscriptions.

Verify, extract, delegate: this module never calls Zendesk and never runs the work. The event-type
table below is the one place that says which events we act on; the list of supported events (and
the subscriptions in deploy/zendesk/) derive from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.http import signing
from connector.http.events import EventKind, InboundEvent, Source
from connector.http.webhook_common import (
    Answer,
    Malformed,
    WebhookEndpoint,
    WebhookRequest,
    body_digest,
    delegate,
    ignored,
    parse_json_object,
    read_body,
    reply,
)

log = logging.getLogger(__name__)

PATH = "/webhooks/zendesk"

SECRET_CONFIG_KEY = "ZENDESK_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION_HEADER = "X-Zendesk-Webhook-Invocation-Id"

# The "type" of our own trigger body template (deploy/zendesk/trigger_body.json).
TRIGGER_EVENT_TYPE = "escalate.ticket_changed"
EVENT_TYPE_PREFIX = "zen:event-type:"


@dataclass(frozen=True)
class Extracted:
    kind: EventKind
    ticket_id: int
    changes: Mapping[str, Any] = field(default_factory=dict)


def ticket_id_from(value: Any) -> int:
    """Zendesk ids arrive as numbers, or as strings in event payloads and rendered placeholders."""
    if isinstance(value, bool):
        raise Malformed(f"ticket id is not a number: {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise Malformed(f"ticket id is not a number: {value!r}")
    if number <= 0:
        raise Malformed(f"ticket id is not positive: {number}")
    return number


def _lower(value: Any) -> Any:
    # Event webhooks send status and priority upper case ("OPEN"); the rest of the system uses the
    # REST API's lower case.
    return value.lower() if isinstance(value, str) else value


def _event_ticket_id(body: Mapping[str, Any]) -> int:
    detail = body.get("detail")
    if isinstance(detail, Mapping) and detail.get("id") not in (None, ""):
        return ticket_id_from(detail["id"])
    subject = body.get("subject")
    if isinstance(subject, str) and subject.startswith("zen:ticket:"):
        return ticket_id_from(subject.removeprefix("zen:ticket:"))
    raise Malformed("ticket event without detail.id or subject zen:ticket:ID")


def _ticket_event(body: Mapping[str, Any]) -> Extracted:
    event = body.get("event")
    changes: dict[str, Any] = {}
    event_type = str(body.get("type", ""))
    name = event_type.removeprefix(EVENT_TYPE_PREFIX + "ticket.")
    if isinstance(event, Mapping):
        if "current" in event or "previous" in event:
            field_name = name.removesuffix("_changed")
            normalise = _lower if field_name in ("status", "priority") else (lambda v: v)
            changes = {
                "field": field_name,
                "from": normalise(event.get("previous")),
                "to": normalise(event.get("current")),
            }
        elif "tags_added" in event or "tags_removed" in event:
            changes = {
                "field": "tags",
                "added": list(event.get("tags_added") or []),
                "removed": list(event.get("tags_removed") or []),
            }
    return Extracted(EventKind.EVALUATE_TICKET, _event_ticket_id(body), changes)


def _trigger_event(body: Mapping[str, Any]) -> Extracted:
    if "ticket_id" not in body:
        raise Malformed("trigger body without ticket_id")
    changes = {k: _lower(body[k]) for k in ("status", "priority") if body.get(k)}
    return Extracted(EventKind.EVALUATE_TICKET, ticket_id_from(body["ticket_id"]), changes)


# Ticket events that can change what the rules decide: the ticket's text, people, organization,
# status, priority, tags, fields and SLA. Everything else is answered 200 and ignored.
_EVALUATED_TICKET_EVENTS = (
    "created",
    "agent_assignment_changed",
    "group_assignment_changed",
    "comment_added",
    "status_changed",
    "custom_status_changed",
    "priority_changed",
    "tags_changed",
    "custom_field_changed",
    "subject_changed",
    "description_changed",
    "organization_changed",
    "requester_changed",
    "type_changed",
    "problem_link_changed",
    "sla_policy_changed",
    "next_sla_breach_changed",
)

EVENT_HANDLERS: dict[str, Callable[[Mapping[str, Any]], Extracted]] = {
    TRIGGER_EVENT_TYPE: _trigger_event,
    **{f"{EVENT_TYPE_PREFIX}ticket.{name}": _ticket_event for name in _EVALUATED_TICKET_EVENTS},
}

SUPPORTED_EVENTS: tuple[str, ...] = tuple(sorted(EVENT_HANDLERS))
# What the event-subscription webhook in deploy/zendesk/ subscribes to.
SUBSCRIBED_EVENT_TYPES: tuple[str, ...] = tuple(
    t for t in SUPPORTED_EVENTS if t.startswith(EVENT_TYPE_PREFIX)
)


def receive(request: WebhookRequest, endpoint: WebhookEndpoint) -> Answer:
    body = read_body(request)
    key = endpoint.secret(SECRET_CONFIG_KEY, request)
    if key is None:
        return reply(401, error="webhook secret not configured")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    if not signature or not timestamp:
        return reply(401, error="missing signature")
    if not signing.zendesk_signature_valid(key, timestamp, body, signature):
        log.warning("zendesk webhook with a bad signature from %s", request.remote_addr)
        return reply(401, error="bad signature")
    # Checked after the signature: a forged request learns nothing about our clock.
    if not signing.timestamp_fresh(timestamp):
        log.warning("zendesk webhook with a stale timestamp %r", timestamp)
        return reply(401, error="stale timestamp")

    try:
        data = parse_json_object(body)
        event_type = data.get("type")
        if not isinstance(event_type, str) or not event_type:
            raise Malformed("body has no type")
        handler = EVENT_HANDLERS.get(event_type)
        if handler is None:
            if event_type.startswith(f"{EVENT_TYPE_PREFIX}ticket."):
                return ignored("zendesk", event_type, "ticket event we do not act on")
            return ignored("zendesk", event_type, "not a ticket event")
        extracted = handler(data)
        event = InboundEvent(
            source=Source.ZENDESK,
            # The invocation id is stable across Zendesk's retries of one delivery; the event id
            # of an event webhook is the next best thing; the body digest is the last resort.
            delivery_id=request.headers.get(INVOCATION_HEADER)
            or str(data.get("id") or "")
            or body_digest(body),
            kind=extracted.kind,
            event_type=event_type,
            ticket_id=extracted.ticket_id,
            changes=extracted.changes,
            payload=data,
        )
    except (Malformed, ValueError) as exc:
        return reply(400, error=str(exc))
    return delegate(event, endpoint.intake)
