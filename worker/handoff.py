"""Hand a ticket over: create the Jira issue for its escalation (or, for L2, reassign the group), link it
both ways, and record it. Never two issues for one ticket and destination.

Why it cannot create twice, even when a worker dies between creating the issue and recording it:

1. Under the escalation's row lock, an *intent* (audit entry ``jira_create_started`` with the issue's
   idempotency label) is committed before Jira is called. A second worker that arrives meanwhile sees the
   intent and waits instead of creating.
2. Jira is called outside the lock. The issue carries the idempotency label.
3. Under the lock again, the key is recorded (``created``).

A worker that finds an intent without a key searches Jira for the label. Found: it records that issue.
Not found: Jira Cloud's search lags behind creation, so it only creates anew once the intent is older
than ``INTENT_WINDOW_SECONDS``; before that it reschedules itself, soon at first (the other job is most
likely still at it), then less often. A create that Jira definitely refused (an HTTP error answer, not
a timeout) is marked failed at once, so its retry does not wait.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from connector import errors
from connector.jira_connector import IssueRef
from connector.render import render_adf, render_jira_wiki
from rules.case import Case
from rules.evaluate import package_for
from rules.package_document import package_document
from rules.ruleset import Destination
from worker import rollup, symptom_index
from worker.jobs import JobContext
from worker.runtime import Runtime, runtime_for
from worker.store import (
    ActionRecord,
    EscalationDraft,
    EscalationLock,
    EscalationRecord,
    EscalationState,
    TicketRef,
)

log = logging.getLogger(__name__)

INTENT_WINDOW_SECONDS = 300
# A job that finds another's intent looks again this soon, then after as long as the intent is old: most
# often the other job is still creating the issue and records its key within a second (two jobs of one
# outage's tickets, in two workers or two threads of one), so waiting out the whole window would hold
# this ticket's job for five minutes. Doubling reaches the window in seven looks, well within the job's
# reschedules.
INTENT_RECHECK_SECONDS = 5.0
STARTED, FAILED, CREATED = "jira_create_started", "jira_create_failed", "jira_create_issue"
LINKED = "record_jira_link"
# The audit log's name for an L2 hand-over, per desk (Zendesk's predates JSM).
L2_ASSIGNED = {"zendesk": "assign_group", "jsm": "assign_l2"}


class CreationInDoubt(errors.RateLimited):
    """An earlier attempt may have created the issue and Jira's search may not show it yet: try later.

    A RateLimited, so the job reschedules itself after ``retry_after`` instead of failing or sleeping.
    """


def recheck_after(age: float) -> float:
    """Seconds until a job that found an unconfirmed intent ``age`` seconds old looks again."""
    return max(min(INTENT_WINDOW_SECONDS - age, max(INTENT_RECHECK_SECONDS, age)), 1.0)


def idempotency_label(ref: TicketRef, destination: str, escalation_id: int) -> str:
    return f"escalate-{ref.source}-{ref.id}-{destination}-{escalation_id}"


def hand_off(
    ctx: JobContext,
    ref: TicketRef,
    destination: str,
    *,
    actor: str,
    case: Case | None = None,
    refresh: bool = True,
) -> EscalationRecord:
    """Carry out the escalation of ``ref`` to ``destination``; safe to call any number of times.
    ``case``: the ticket's case as this job has just read it (the rules' automatic hand-off, right after
    judging it), for the package; without it the ticket and its history are read again. ``refresh``:
    carry a grouped escalation's rollup and other tickets to the issue now; False when the caller
    settles the ticket's escalations next (an assessment does), which refreshes it."""
    rt = runtime_for(ctx.settings)
    target = rt.rules.destinations[Destination(destination)]
    if target.jira is None:
        return _hand_to_l2(ctx, rt, ref, destination, actor)
    escalation, label, issue = _claim(ctx, rt, ref, destination, actor)
    if issue is None and escalation.jira_key is None:
        issue = _create(ctx, rt, ref, escalation, label, actor, case)
        escalation = _record(ctx, ref, destination, issue, actor)
    elif issue is not None:
        escalation = _record(ctx, ref, destination, issue, actor)
    _link_both_ways(ctx, rt, ref, escalation, case.ticket.subject if case is not None else None)
    if refresh and escalation.destination in rollup.grouped(rt.rules):
        rollup.refresh(ctx, escalation.id)  # issue 6: every ticket under it linked, the rollup on the issue
    return escalation


def _claim(
    ctx: JobContext, rt: Runtime, ref: TicketRef, destination: str, actor: str
) -> tuple[EscalationRecord, str, IssueRef | None]:
    """Under the row lock: the existing issue, one recovered from an earlier attempt, or a fresh intent."""
    draft = EscalationDraft(reason=f"requested by {actor}")
    with ctx.store.lock_open_escalation(ref, destination, create=draft) as lock:
        assert lock is not None
        escalation = lock.record
        label = idempotency_label(ref, destination, escalation.id)
        if escalation.jira_key:
            return escalation, label, None
        last = _last_attempt(lock)
        if last is not None and last.action == STARTED:
            # The intent's own label: a joined ticket's job looks for the issue its first ticket's job made.
            found = rt.jira.find_issue_by_label((last.detail or {}).get("label") or label)
            if found is not None:
                return escalation, label, found
            age = (datetime.now(UTC) - last.at).total_seconds()
            if age < INTENT_WINDOW_SECONDS:
                raise CreationInDoubt(
                    "jira",
                    f"an earlier attempt to create the issue for escalation {escalation.id} is unconfirmed",
                    retry_after=recheck_after(age),
                )
        lock.record_action("jira", STARTED, ref.id, actor=actor, detail={"label": label})
        return escalation, label, None


def _last_attempt(lock: EscalationLock) -> ActionRecord | None:
    for action in lock.actions(target="jira"):
        if action.action in (STARTED, FAILED, CREATED):
            return action
    return None


def _create(
    ctx: JobContext,
    rt: Runtime,
    ref: TicketRef,
    escalation: EscalationRecord,
    label: str,
    actor: str,
    case: Case | None,
) -> IssueRef:
    destination = escalation.destination
    target = rt.rules.destinations[Destination(destination)].jira
    assert target is not None
    case = case if case is not None else symptom_index.case_of(ctx, ref)
    package = package_for(case, Destination(destination), rt.rules, rt.matcher)
    document = package_document(package)
    severity = package["severity"]["level"]
    try:
        issue = rt.jira.create_issue(
            project=target.project,
            issue_type=target.issue_type,
            summary=package["summary"],
            description_adf=render_adf(document),
            description_wiki=render_jira_wiki(document),
            labels=[*target.labels, f"{ref.source}-{ref.id}", f"severity-{severity}"],
            security_level=target.security_level,
            idempotency_label=label,
            priority=target.priority_by_severity.get(severity),
        )
    except errors.ConnectorError as exc:
        if exc.status is not None:  # Jira answered: nothing was created
            ctx.store.record_action(
                "jira",
                FAILED,
                ref.id,
                outcome="failed",
                actor=actor,
                escalation_id=escalation.id,
                error=str(exc),
            )
        raise
    log.info("created %s for %s ticket %s (%s)", issue.key, ref.source, ref.id, destination)
    return issue


def _record(
    ctx: JobContext, ref: TicketRef, destination: str, issue: IssueRef, actor: str
) -> EscalationRecord:
    with ctx.store.lock_open_escalation(ref, destination) as lock:
        if lock is None:  # dismissed meanwhile; the issue exists all the same, so say where it is
            raise errors.PermanentError("jira", f"escalation closed while {issue.key} was being created")
        if lock.record.jira_key is None:
            lock.set_jira_key(issue.key)
            lock.record_action(
                "jira", CREATED, ref.id, actor=actor, detail={"key": issue.key, "url": issue.url}
            )
        lock.transition(EscalationState.CREATED)
        return lock.record


def _link_both_ways(
    ctx: JobContext, rt: Runtime, ref: TicketRef, escalation: EscalationRecord, subject: str | None
) -> None:
    """Zendesk: the remote link on the issue and the key on the ticket. JSM: an issue link, an internal
    comment and the request's labels. Each desk's link is idempotent, so a retry repeats nothing.
    ``subject``: the ticket's, when this job has read it (the remote link's title)."""
    key = escalation.jira_key
    assert key is not None
    with rollup.carrying(ctx, escalation.id):  # not beside a refresh linking the same ticket
        if rt.desk(ref.source).link_issue(ref.id, key, subject):
            ctx.store.record_action(
                ref.source, LINKED, ref.id, escalation_id=escalation.id, detail={"key": key}
            )


def _hand_to_l2(
    ctx: JobContext, rt: Runtime, ref: TicketRef, destination: str, actor: str
) -> EscalationRecord:
    """Senior support: a Zendesk group, or the JSM request's configured queue field."""
    target = rt.rules.destinations[Destination(destination)]
    with ctx.store.lock_open_escalation(
        ref, destination, create=EscalationDraft(reason=f"by {actor}")
    ) as lock:
        assert lock is not None
        if lock.record.state is EscalationState.SUGGESTED:
            detail = rt.desk(ref.source).hand_to_l2(ref.id, target)
            lock.record_action(ref.source, L2_ASSIGNED[ref.source], ref.id, actor=actor, detail=detail)
            lock.transition(EscalationState.CREATED)
        return lock.record
