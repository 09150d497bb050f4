"""Assess a ticket: fetch its case, judge it, keep the assessment, tell the agent when the verdict changes,
and open (or auto-create) the escalation it calls for."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rules.case import Case
from rules.evaluate import evaluate
from rules.package_document import assessment_document
from rules.ruleset import Destination
from worker import rollup, symptom_index  # issue 6: symptom index, one problem one issue
from worker.handoff import CreationInDoubt, hand_off
from worker.jobs import JobContext
from worker.metrics import count_decision
from worker.runtime import runtime_for
from worker.store import (
    AssessmentStamp,
    EscalationDraft,
    EscalationRecord,
    EscalationState,
    LastAction,
    TicketRef,
)

log = logging.getLogger(__name__)

SOURCE = "zendesk"  # the default desk; a JSM request is assessed with source="jsm"
DEFAULT_REASSESS_AFTER = 600.0
NOTE_ACTION = "assessment_note"
TAG_PREFIX = "escalate_"
# Tags this module owns on a ticket; a changed verdict removes the ones that no longer hold.
MANAGED_TAGS = (f"{TAG_PREFIX}suggested", f"{TAG_PREFIX}to_", f"{TAG_PREFIX}severity_")


def fingerprint(decision: dict[str, Any]) -> str:
    """What an agent must hear about again when it changes; re-assessments that only move numbers do not
    post another note."""
    triggers = ",".join(sorted(t["id"] for t in decision["triggers"]))
    holds = ",".join(sorted(h["id"] for h in decision["hold_reasons"]))
    return f"{decision['escalate']}|{decision['destination']}|{decision['severity']}|{triggers}|{holds}"


def decision_tags(decision: dict[str, Any]) -> list[str]:
    if not decision["escalate"]:
        return []
    return [
        f"{TAG_PREFIX}suggested",
        f"{TAG_PREFIX}to_{decision['destination']}",
        f"{TAG_PREFIX}severity_{decision['severity']}",
    ]


def reassess_after() -> float:
    """Seconds after which an unchanged ticket is judged again when an event arrives for it
    (``ESCALATE_REASSESS_AFTER``; 0: always): time alone moves SLA positions and ages."""
    try:
        return max(float(os.environ.get("ESCALATE_REASSESS_AFTER", DEFAULT_REASSESS_AFTER)), 0.0)
    except ValueError:
        return DEFAULT_REASSESS_AFTER


def last_stamp(ctx: JobContext, ref: TicketRef) -> AssessmentStamp | None:
    """The ticket's latest assessment with its latest note (for ``_our_echo``), when a repeated event
    may be answered from it at all (``reassess_after()`` above 0)."""
    if reassess_after() <= 0:
        return None
    return ctx.store.assessment_stamp(ref, last_action=NOTE_ACTION)


def still_current(
    last: AssessmentStamp | None, updated_at: Any, ruleset_version: str, delivery: str | None
) -> bool:
    """Whether ``last`` judged this very version of the ticket, under these rules, recently, for another
    delivery: a repeated or echoed event (our own note and tags update the ticket too) needs no second
    judgement. A retry of the delivery that made it is never skipped: that job may have failed after the
    assessment was kept, with its actions half done."""
    if last is None or not updated_at:
        return False
    if last.ruleset_version != ruleset_version or not isinstance(last.trace, dict):
        return False
    if last.trace.get("delivery") == delivery:
        return False
    if last.trace.get("ticket_updated_at") != updated_at and not _our_echo(updated_at, last):
        return False
    return (datetime.now(UTC) - last.assessed_at).total_seconds() <= reassess_after()


def _our_echo(updated_at: Any, last: AssessmentStamp) -> bool:
    """Whether the ticket's only change since ``last`` is the note that assessment's job wrote."""
    note = last.last_action
    if note is None or note.at < last.assessed_at:
        return False
    return (note.detail or {}).get("ticket_updated_at") == updated_at


def assess_ticket(
    ctx: JobContext,
    ticket_id: int | str,
    *,
    source: str = SOURCE,
    delivery: tuple[str, str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Judge the ticket and act on the verdict. Unless ``force``, a Zendesk ticket unchanged since its
    last assessment (same ``updated_at``, same rules, within ``reassess_after()``) is not judged again."""
    rt = runtime_for(ctx.settings)
    ref = TicketRef.of(source, ticket_id)
    # What this assessment saw, for telling a later event about the same ticket version apart.
    seen: dict[str, Any] = {"delivery": ":".join(delivery) if delivery else None}
    raw = None
    if source == SOURCE:  # a Zendesk ticket's updated_at costs one read: enough to tell it unchanged
        raw = rt.zendesk.get_ticket(int(ticket_id))
        updated_at = seen["ticket_updated_at"] = raw.get("updated_at")
        last = None if force or not updated_at else last_stamp(ctx, ref)
        if still_current(last, updated_at, rt.rules.version, seen["delivery"]):
            assert last is not None
            return {"ticket_id": ref.id, "verdict": last.verdict, "unchanged": True}
    case = symptom_index.case_of(ctx, ref, ticket=raw)  # the ticket just read is reused
    decision = evaluate(case, rt.rules, rt.matcher).to_dict()
    record = ctx.store.record_assessment(
        ref,
        decision,
        ruleset_version=decision["ruleset_version"],
        matcher=decision["matcher"],
        trace=seen,
        delivery=delivery,
        last_action=NOTE_ACTION,  # read as late as this: another job may have noted since
    )
    count_decision(record)
    noted = tell_agent(ctx, ref, decision, record.last_action, known_tags=case.ticket.tags)
    outcome: dict[str, Any] = {"ticket_id": ref.id, "verdict": decision["verdict"], "noted": noted}
    placed = rollup.place(ctx, ref, decision, case.ticket)  # joins its symptom's; regressions
    # The ticket's open escalations, as place read (or joined) them: escalating and settling start from
    # them too.
    mine = placed.mine
    current = placed.regression is None  # a regression opens one ``mine`` does not hold
    if decision["escalate"]:
        escalation, created = _escalation(ctx, ref, decision, record.id, mine if current else None)
        # Opened now, or its severity moved under the lock: what settles next starts from the record as it is.
        mine = [*mine, escalation] if created else [escalation if e.id == escalation.id else e for e in mine]
        outcome["escalation_id"] = escalation.id
        if decision["automatic"] and escalation.state is EscalationState.SUGGESTED:
            escalation = _hand_off_unless_underway(ctx, ref, escalation, decision["destination"], case)
            current = False  # now created, with its issue key (or being created by another job)
        outcome["state"] = escalation.state.value
        outcome["jira_key"] = escalation.jira_key
    settled = rollup.settle(ctx, ref, decision, mine=mine if current else None)  # links, rollup, severity
    outcome.update(placed.as_outcome(), **settled)
    return outcome


def _hand_off_unless_underway(
    ctx: JobContext, ref: TicketRef, escalation: EscalationRecord, destination: str, case: Case
) -> EscalationRecord:
    """Carry out the escalation, unless this ticket only joined it and another ticket's job is creating
    its issue right now: that job links every ticket under the escalation once the issue exists (it
    reads them after recording the key, and this ticket joined before), so this one need not wait for
    it and judge its ticket again. The escalation's own ticket waits (its job may be the one that died
    mid-create: ``hand_off`` recovers it)."""
    try:
        # The package from the case judged; settling next refreshes the escalation.
        return hand_off(ctx, ref, destination, actor="rules", case=case, refresh=False)
    except CreationInDoubt:
        if escalation.ticket == ref:
            raise
        log.info(
            "ticket %s joined escalation %s, whose issue another job is creating: that job links it",
            ref.id,
            escalation.id,
        )
        return escalation


def _escalation(
    ctx: JobContext,
    ref: TicketRef,
    decision: dict[str, Any],
    assessment_id: int,
    mine: list[EscalationRecord] | None,
) -> tuple[EscalationRecord, bool]:
    """The ticket's open escalation for the decision's destination, opened when there is none, its
    severity following the decision (only rising when grouped); True when it was opened now. Read
    without a lock when ``mine`` (just read) shows it needs no change."""
    destination, proposed = decision["destination"], decision["severity"]
    found = next((e for e in mine or () if e.destination == destination), None)
    if found is not None and rollup.severity_after(found, proposed) == found.severity:
        return found, False
    draft = EscalationDraft(severity=proposed, assessment_id=assessment_id, reason=decision["verdict"])
    if found is None:  # most likely none is open: try opening one, without a lock to wait for
        opened = ctx.store.open_new_escalation(ref, destination, draft)
        if opened is not None:
            return opened, True
    with ctx.store.lock_open_escalation(ref, destination, create=draft) as lock:
        assert lock is not None  # a draft was given
        severity = rollup.severity_after(lock.record, proposed)  # grouped: only rises
        if not lock.created and lock.record.severity != severity:
            lock.set_severity(severity)
        return lock.record, lock.created


def tell_agent(
    ctx: JobContext,
    ref: TicketRef,
    decision: dict[str, Any],
    last: LastAction | None,
    *,
    known_tags: Iterable[str] | None = None,
) -> bool:
    """An internal note with the assessment (a JSM internal comment, never public) and tags (JSM labels)
    naming destination and severity, once per verdict. ``last``: the ticket's latest note entry, read
    just before (the kept assessment's statement reads it)."""
    desk = runtime_for(ctx.settings).desk(ref.source)
    print_ = fingerprint(decision)
    if last is not None and (last.detail or {}).get("fingerprint") == print_:
        return False
    current = decision_tags(decision)
    written = None
    if known_tags is None:
        desk.add_note(ref.id, assessment_document(decision))
        desk.replace_tags(ref.id, current, MANAGED_TAGS)
    else:  # the ticket's tags as just read: the desk can write the note and the tags together
        written = desk.add_assessment(
            ref.id, assessment_document(decision), current, MANAGED_TAGS, known_tags
        )
    detail = {"fingerprint": print_, "verdict": decision["verdict"], "tags": current}
    if written:
        detail["ticket_updated_at"] = written  # the ticket's time after our note: its echo is ours
    ctx.store.record_action(ref.source, NOTE_ACTION, ref.id, detail=detail)
    return True


def create_from_label(ctx: JobContext, key: str, wanted: str, outcome: dict[str, Any]) -> dict[str, Any]:
    """A JSM agent's "create" (the request labelled ``escalate_create`` or ``escalate_create_<destination>``):
    hand the request off to that destination, or to the one just suggested, then take the label away
    so it can be used again. Safe to repeat: ``hand_off`` never creates a second issue."""
    rt = runtime_for(ctx.settings)
    ref = TicketRef.of("jsm", key)
    latest = ctx.store.latest_assessment(ref)
    destination = wanted or (latest.destination if latest is not None and latest.escalate else None)
    label = f"escalate_create_{wanted}" if wanted else "escalate_create"
    desk = rt.desk(ref.source)
    try:
        valid = destination is not None and Destination(destination) in rt.rules.destinations
    except ValueError:
        valid = False
    if not valid:
        desk.add_note_text(key, f"Escalate: nothing to create for label {label}: no such suggestion.")
        desk.remove_tags(key, [label])
        return {"error": f"no destination for {label}"}
    escalation = hand_off(ctx, ref, str(destination), actor="jsm label")
    desk.remove_tags(key, [label])
    return {"destination": destination, "jira_key": escalation.jira_key, "state": escalation.state.value}
