"""Resurfaced problems: a new ticket with the same symptom as a resolved escalation is a regression.

``rollup.place`` finds the resolved escalation (its tickets stay in the symptom index for as long as the
escalation exists); this module decides whether it is a regression, flags it on the ticket (an internal
note and the ``escalate_regression`` tag), and does what the rules file's ``regressions.action`` says:

* ``reopen``: the resolved Jira issue is moved back into work, our escalation goes back to
  ``acknowledged`` and the ticket joins it. A *closed* escalation cannot reopen (its lifecycle ends
  there, worker/store/lifecycle.py), so it falls back to:
* ``new_linked``: a new escalation for the ticket, handed off at once (engineering accepted this
  problem once already), its issue linked ("relates to") to the resolved one, and both issues told.

Every outward step is ledgered in the audit log, and the Jira steps come before our own state change, so
a retried job finishes what a failed one started without repeating what it did.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.jira_description import adf_from_text
from rules.ruleset import RegressionAction
from worker.jobs import JobContext
from worker.runtime import runtime_for
from worker.store import (
    OPEN_STATES,
    EscalationDraft,
    EscalationRecord,
    EscalationState,
    TicketAlreadyEscalated,
    TicketRef,
)

log = logging.getLogger(__name__)

TAG = "escalate_regression"
FLAGGED = "regression_note"
REOPENED = "regression_reopen"
JIRA_REOPENED = "jira_regression_reopen"
LINKED = "jira_regression_link"
MARK = "Escalate:"


def resolved_at(ctx: JobContext, escalation: EscalationRecord) -> datetime:
    return ctx.store.tracking(escalation.id).resolved_at or escalation.state_changed_at


def is_regression(
    ctx: JobContext,
    ref: TicketRef,
    created: datetime | None,
    old: EscalationRecord,
    *,
    now: datetime | None = None,
) -> bool:
    """A ticket reported after the escalation was resolved, within the rules' window, and not one of the
    tickets the escalation already gathered."""
    if ref in old.tickets:
        return False
    rules = runtime_for(ctx.settings).rules
    fixed = resolved_at(ctx, old)
    now = now or datetime.now(UTC)
    if now - fixed > timedelta(days=rules.regressions.lookback_days):
        return False
    # Zendesk times have whole seconds: a ticket from the second of the resolution counts as after it.
    return created is None or created >= fixed.replace(microsecond=0)


def handle(
    ctx: JobContext, ref: TicketRef, decision: Mapping[str, Any], old: EscalationRecord, score: float
) -> dict[str, Any]:
    rules = runtime_for(ctx.settings).rules
    reopenable = old.state in (EscalationState.RESOLVED, EscalationState.CUSTOMER_UPDATED)
    if rules.regressions.action is RegressionAction.REOPEN and reopenable:
        outcome = _reopen(ctx, ref, old)
    else:
        outcome = _new_linked(ctx, ref, decision, old)
    outcome["score"] = round(score, 3)
    _flag(ctx, ref, old, outcome)
    return outcome


def _reopen(ctx: JobContext, ref: TicketRef, old: EscalationRecord) -> dict[str, Any]:
    rt = runtime_for(ctx.settings)
    key = old.jira_key
    assert key is not None
    subject = f"{old.id}:{ref.id}"
    if not ctx.store.ledger_has(JIRA_REOPENED, subject, escalation_id=old.id):
        status = rt.jira.reopen(key)
        fixed = resolved_at(ctx, old).strftime("%Y-%m-%d")
        desk = rt.desk(ref.source)
        text = (
            f"{MARK} regression. {desk.name(ref.id)} ({desk.ticket_url(ref.id)}) reports "
            f"the symptom resolved here on {fixed} again; the issue was reopened"
            + (f" (now {status})." if status else ".")
        )
        rt.jira.add_comment(key, body_adf=adf_from_text(text), body_wiki=text)
        ctx.store.record_action(
            "jira", JIRA_REOPENED, subject, escalation_id=old.id, detail={"status": status}
        )
    with ctx.store.lock_escalation(old.id) as lock:
        if lock.record.state in (EscalationState.RESOLVED, EscalationState.CUSTOMER_UPDATED):
            lock.transition(EscalationState.ACKNOWLEDGED, reason=f"regression reported on ticket {ref.id}")
        if lock.record.state in OPEN_STATES:
            try:
                lock.link_ticket(ref)
            except TicketAlreadyEscalated as exc:
                log.info("regression ticket %s stays where it is: %s", ref.id, exc)
        lock.record_action("escalate", REOPENED, ref.id, detail={"key": key})
    ctx.store.update_tracking(
        old.id, resolved_at=None, last_movement_at=datetime.now(UTC), last_movement="reopened as a regression"
    )
    return {"action": "reopened", "escalation_id": old.id, "jira_key": key, "of": key}


def _new_linked(
    ctx: JobContext, ref: TicketRef, decision: Mapping[str, Any], old: EscalationRecord
) -> dict[str, Any]:
    from worker.handoff import hand_off

    rt = runtime_for(ctx.settings)
    destination = old.destination
    draft = EscalationDraft(
        severity=decision.get("severity") or old.severity, reason=f"regression of {old.jira_key}"
    )
    with ctx.store.lock_open_escalation(ref, destination, create=draft) as lock:
        assert lock is not None
        new = lock.record
    ctx.store.update_tracking(new.id, regression_of=old.id)
    new = hand_off(ctx, ref, destination, actor="regression")
    subject = f"{new.id}:{old.id}"
    if new.jira_key and old.jira_key and not ctx.store.ledger_has(LINKED, subject, escalation_id=new.id):
        rt.jira.link_issues(new.jira_key, old.jira_key, "Relates")
        fixed = resolved_at(ctx, old).strftime("%Y-%m-%d")
        text = f"{MARK} regression of {old.jira_key}, resolved on {fixed}: the same symptom is back."
        rt.jira.add_comment(new.jira_key, body_adf=adf_from_text(text), body_wiki=text)
        back = f"{MARK} the symptom came back after this issue was resolved; {new.jira_key} is open for it."
        rt.jira.add_comment(old.jira_key, body_adf=adf_from_text(back), body_wiki=back)
        ctx.store.record_action("jira", LINKED, subject, escalation_id=new.id, detail={"of": old.jira_key})
    return {"action": "new_linked", "escalation_id": new.id, "jira_key": new.jira_key, "of": old.jira_key}


def _flag(ctx: JobContext, ref: TicketRef, old: EscalationRecord, outcome: Mapping[str, Any]) -> None:
    if ctx.store.ledger_has(FLAGGED, ref.id, escalation_id=old.id, target=ref.source):
        return
    rt = runtime_for(ctx.settings)
    fixed = resolved_at(ctx, old).strftime("%Y-%m-%d")
    done = (
        f"Jira {old.jira_key} was reopened and this ticket linked to it."
        if outcome["action"] == "reopened"
        else f"Jira {outcome.get('jira_key')} was opened for it, linked to {old.jira_key}."
    )
    text = (
        f"Regression: this ticket reports the same symptom as Jira {old.jira_key}, resolved on {fixed}. "
        f"{done}"
    )
    desk = rt.desk(ref.source)
    desk.add_note_text(ref.id, text, [TAG])
    ctx.store.record_action(ref.source, FLAGGED, ref.id, escalation_id=old.id, detail=dict(outcome))
