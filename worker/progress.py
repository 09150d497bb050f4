"""Engineering's progress back to support: a Jira status change or a comment meant for support becomes an
internal note on every ticket linked to the issue (POLICY.md §7): a Zendesk internal note, or a JSM
internal comment."""

from __future__ import annotations

import logging
from typing import Any

from connector.http.events import InboundEvent
from worker import followthrough  # issue 6: movement resets the stall clock
from worker.jobs import JobContext
from worker.runtime import runtime_for
from worker.store import EscalationRecord, EscalationState, InvalidTransition, TicketRef

log = logging.getLogger(__name__)

CUSTOMER_UPDATE_TAG = "escalate_customer_update_due"
# Jira's status categories: new (to do), indeterminate (in progress), done.
STATE_FOR_CATEGORY = {"indeterminate": EscalationState.ACKNOWLEDGED, "done": EscalationState.RESOLVED}
RESOLVED_STATES = (EscalationState.RESOLVED, EscalationState.CUSTOMER_UPDATED)


def _escalation(ctx: JobContext, key: str | None) -> EscalationRecord | None:
    found = ctx.store.escalation_by_jira_key(key) if key else None
    if found is None:
        log.info("jira issue %s is not one of ours; ignored", key)
    return found


def _category(payload: dict[str, Any]) -> str | None:
    status = ((payload.get("issue") or {}).get("fields") or {}).get("status") or {}
    return ((status.get("statusCategory") or {}).get("key")) or None


def _already_noted(ctx: JobContext, ticket: TicketRef, delivery_id: str) -> bool:
    found = ctx.store.actions(target=ticket.source, subject=ticket.id, delivery_id=delivery_id, limit=1)
    return bool(found)


def _note_tickets(
    ctx: JobContext, escalation: EscalationRecord, delivery_id: str, text: str, tags: list[str] | None = None
) -> int:
    rt = runtime_for(ctx.settings)
    noted = 0
    for ticket in escalation.tickets:
        if _already_noted(ctx, ticket, delivery_id):
            continue  # a retried job: this ticket heard it already
        desk = rt.desk(ticket.source)
        desk.add_note_text(ticket.id, text, tags or [])
        ctx.store.record_action(
            ticket.source,
            "progress_note",
            ticket.id,
            escalation_id=escalation.id,
            delivery_id=delivery_id,
            detail={"delivery": delivery_id, "tags": tags or []},
        )
        noted += 1
    return noted


def status_changed(ctx: JobContext, event: InboundEvent) -> dict[str, Any]:
    escalation = _escalation(ctx, event.issue_key)
    if escalation is None:
        return {"ignored": "unknown issue"}
    category = _category(dict(event.payload))
    if category is None:
        category = runtime_for(ctx.settings).jira.get_status(escalation.jira_key).category
    before, after = event.changes.get("from"), event.changes.get("to")
    moved = f"status {before} → {after}"
    followthrough.record_movement(ctx, escalation, moved, status=after, category=category)
    text = f"Jira {escalation.jira_key} moved from {before or 'unknown'} to {after or 'unknown'}."
    tags = None
    if category == "done":
        text += " Engineering has resolved it: update the customer."
        tags = [CUSTOMER_UPDATE_TAG]
    noted = _note_tickets(ctx, escalation, event.delivery_id, text, tags)
    target = STATE_FOR_CATEGORY.get(category)
    if target is None and category == "new" and escalation.state in RESOLVED_STATES:
        target = EscalationState.ACKNOWLEDGED  # reopened after it was resolved
    if target is not None:
        try:
            ctx.store.transition_escalation(escalation.id, target, reason=f"jira status {after}")
        except InvalidTransition as exc:
            log.info("escalation %s stays %s: %s", escalation.id, escalation.state.value, exc)
    return {"issue": escalation.jira_key, "category": category, "noted": noted}


def commented(ctx: JobContext, event: InboundEvent) -> dict[str, Any]:
    escalation = _escalation(ctx, event.issue_key)
    if escalation is None:
        return {"ignored": "unknown issue"}
    prefix = runtime_for(ctx.settings).rules.support_comment_prefix
    comment = dict(event.payload).get("comment") or {}
    body = comment.get("body") if isinstance(comment.get("body"), str) else ""
    if followthrough.is_engineering_comment(ctx, comment):
        who = (comment.get("author") or {}).get("displayName") or "engineering"
        followthrough.record_movement(ctx, escalation, f"comment by {who}")
    if not body.strip().lower().startswith(prefix.lower()):
        return {"issue": escalation.jira_key, "copied": False}
    author = (comment.get("author") or {}).get("displayName") or "engineering"
    text = f"From {author} on Jira {escalation.jira_key}: {body.strip()[len(prefix) :].strip()}"
    return {"issue": escalation.jira_key, "copied": _note_tickets(ctx, escalation, event.delivery_id, text)}
