"""event → case bundle → decision → store → actions: one handler per event kind (Zulip's habit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.errors import ConfigError
from connector.http.events import EventKind, InboundEvent
from worker import progress
from worker.assess import assess_ticket, create_from_label
from worker.jobs import JobContext, PermanentFailure


def _evaluate(ctx: JobContext, event: InboundEvent) -> dict[str, Any]:
    assert event.ticket_id is not None  # InboundEvent validates this on construction
    return assess_ticket(ctx, event.ticket_id, delivery=(event.source.value, event.delivery_id))


def _evaluate_request(ctx: JobContext, event: InboundEvent) -> dict[str, Any]:
    assert event.issue_key is not None  # InboundEvent validates this on construction
    delivery = (event.source.value, event.delivery_id)
    outcome = assess_ticket(ctx, event.issue_key.upper(), source="jsm", delivery=delivery)
    wanted = event.changes.get("create")
    if wanted is not None:  # an agent labelled the request escalate_create[_<destination>]
        outcome["created"] = create_from_label(ctx, event.issue_key.upper(), str(wanted), outcome)
    return outcome


HANDLERS: dict[EventKind, Callable[[JobContext, InboundEvent], dict[str, Any]]] = {
    EventKind.EVALUATE_TICKET: _evaluate,
    EventKind.EVALUATE_REQUEST: _evaluate_request,
    EventKind.ISSUE_STATUS_CHANGED: progress.status_changed,
    EventKind.ISSUE_COMMENTED: progress.commented,
}
assert set(HANDLERS) == set(EventKind), "every event kind the endpoints produce needs a handler"


def handle_event(event: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    inbound = InboundEvent.from_dict(event)
    try:
        return HANDLERS[inbound.kind](ctx, inbound)
    except ConfigError as exc:
        # Missing or unusable connector settings: retrying cannot help until an operator fixes them.
        raise PermanentFailure(f"configuration: {exc}") from exc
