"""Assess a ticket: fetch its case, judge it, keep the assessment, tell the agent when the verdict changes,
and open (or auto-create) the escalation it calls for."""

from __future__ import annotations

import logging
from typing import Any

from connector.render import render_html
from rules.adapters.zendesk import case_from_bundle
from rules.evaluate import evaluate
from rules.package_document import assessment_document
from worker import rollup, symptom_index  # issue 6: symptom index, one problem one issue
from worker.handoff import hand_off
from worker.jobs import JobContext
from worker.runtime import runtime_for
from worker.store import EscalationDraft, EscalationState, TicketRef

log = logging.getLogger(__name__)

SOURCE = "zendesk"
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


def assess_ticket(
    ctx: JobContext, ticket_id: int, *, delivery: tuple[str, str] | None = None
) -> dict[str, Any]:
    rt = runtime_for(ctx.settings)
    ref = TicketRef.of(SOURCE, ticket_id)
    bundle = symptom_index.fetch_bundle(ctx, ticket_id)  # history from the index once it is filled
    decision = evaluate(case_from_bundle(bundle), rt.rules, rt.matcher).to_dict()
    record = ctx.store.record_assessment(
        ref,
        decision,
        ruleset_version=decision["ruleset_version"],
        matcher=decision["matcher"],
        delivery=delivery,
    )
    noted = tell_agent(ctx, ref, decision)
    outcome: dict[str, Any] = {"ticket_id": ref.id, "verdict": decision["verdict"], "noted": noted}
    placed = rollup.place(ctx, ref, decision, bundle)  # joins an open escalation of its symptom; regressions
    if decision["escalate"]:
        draft = EscalationDraft(
            severity=decision["severity"], assessment_id=record.id, reason=decision["verdict"]
        )
        with ctx.store.lock_open_escalation(ref, decision["destination"], create=draft) as lock:
            assert lock is not None  # a draft was given
            severity = rollup.severity_after(lock.record, decision["severity"])  # grouped: only rises
            if not lock.created and lock.record.severity != severity:
                lock.set_severity(severity)
            escalation = lock.record
        outcome["escalation_id"] = escalation.id
        if decision["automatic"] and escalation.state is EscalationState.SUGGESTED:
            escalation = hand_off(ctx, ref, decision["destination"], actor="rules")
        outcome["state"] = escalation.state.value
        outcome["jira_key"] = escalation.jira_key
    outcome.update(placed.as_outcome(), **rollup.settle(ctx, ref, decision))  # links, rollup, severity
    return outcome


def tell_agent(ctx: JobContext, ref: TicketRef, decision: dict[str, Any]) -> bool:
    """An internal note with the assessment and tags naming destination and severity, once per verdict."""
    rt = runtime_for(ctx.settings)
    print_ = fingerprint(decision)
    last = ctx.store.actions(target="zendesk", subject=ref.id, action="assessment_note", limit=1)
    if last and (last[0].detail or {}).get("fingerprint") == print_:
        return False
    rt.zendesk.add_internal_note(int(ref.id), render_html(assessment_document(decision)))
    current = decision_tags(decision)
    tags = (
        rt.zendesk.add_tags(int(ref.id), current) if current else rt.zendesk.get_ticket(int(ref.id))["tags"]
    )
    stale = [t for t in tags or [] if t.startswith(MANAGED_TAGS) and t not in current]
    if stale:
        rt.zendesk.remove_tags(int(ref.id), stale)
    ctx.store.record_action(
        "zendesk",
        "assessment_note",
        ref.id,
        detail={"fingerprint": print_, "verdict": decision["verdict"], "tags": current},
    )
    return True
