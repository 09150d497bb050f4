"""Follow-through (POLICY.md §7): scheduled checks that chase stalled escalations and overdue customer
updates, on the cadence of the rules file's ``follow_through``.

For each handed-over escalation, at ``now`` (a parameter, so tests and the CLI control time):

* **Stalled**: the linked issue has not moved (status change or engineering comment, recorded from the
  Jira webhooks by ``worker.progress`` and, for a missed webhook, from the issue's status here) within the
  check-in interval. Each missed interval puts one internal note on every linked ticket (tag
  ``escalate_stalled``) and one chasing comment on the issue; the *second* missed interval of a critical
  or high escalation notifies leadership through the rules' ``leadership`` destination: a Jira issue in
  that project (linked to the stalled one), or, for a Zendesk-group target, a comment on the stalled issue
  naming the group. Movement ends the stall (the tag comes off).
* **Customer update overdue**: no public agent reply on a linked ticket within the upper bound of the
  cadence's customer-update range: one reminder (internal note, tag ``escalate_customer_update_due``) per
  overdue interval. A resolved escalation whose every ticket has had a public reply since the resolution
  becomes ``customer_updated``.

"Once per missed interval" is a ledger in the audit log keyed by (escalation or ticket, the episode's
start, the interval number): a retried or overlapping run repeats nothing it already did. Runs are also
kept from overlapping: a Redis lock with Redis, a process lock inline.

Scheduling: with Redis, RQ 3's cron scheduler enqueues ``worker.followthrough.check_all`` every
``interval`` seconds (``escalate followthrough cron``); inline, a timer thread in the web process runs it
(``start_inline``; ``ESCALATE_FOLLOWTHROUGH_INTERVAL`` seconds, 0 turns it off).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from connector import errors
from connector.jira_description import adf_from_text
from rules.ruleset import Destination, Severity
from worker import housekeeping
from worker.jobs import JobContext
from worker.runtime import runtime_for
from worker.store import EscalationRecord, EscalationState, TicketRef

log = logging.getLogger(__name__)

STALLED_NOTE = "stalled_note"
JIRA_CHASE = "jira_stalled_chase"
LEADERSHIP = "leadership_notified"
CUSTOMER_REMINDER = "customer_update_reminder"
STALLED_TAG = "escalate_stalled"
CUSTOMER_UPDATE_TAG = "escalate_customer_update_due"
HANDED_OFF = ("jira_create_issue", "assign_group")
MARK = "Escalate:"
INTERVAL_ENV = "ESCALATE_FOLLOWTHROUGH_INTERVAL"
DEFAULT_INTERVAL = 300
JOB_FUNC = "worker.followthrough.check_all"
LOCK_NAME = "escalate:followthrough:lock"
LOCK_TIMEOUT = 900
CHECKED_STATES = (EscalationState.CREATED, EscalationState.ACKNOWLEDGED)
UPDATE_STATES = (EscalationState.CREATED, EscalationState.ACKNOWLEDGED, EscalationState.RESOLVED)


# -- movement, recorded by worker.progress -----------------------------------------------------------


def record_movement(
    ctx: JobContext,
    escalation: EscalationRecord,
    what: str,
    *,
    status: str | None = None,
    category: str | None = None,
    at: datetime | None = None,
) -> None:
    """The linked issue moved: the stall clock starts again."""
    at = at or datetime.now(UTC)
    changes: dict[str, Any] = {"last_movement_at": at, "last_movement": what[:200]}
    if status is not None:
        changes["jira_status"] = status
    if category == "done":
        changes["resolved_at"] = at
    ctx.store.update_tracking(escalation.id, **changes)


def is_engineering_comment(ctx: JobContext, comment: dict[str, Any]) -> bool:
    """A comment by somebody other than this service (ours begin with the mark, or are by our account)."""
    body = comment.get("body")
    if isinstance(body, str) and body.strip().startswith(MARK):
        return False
    author = comment.get("author") or {}
    ours = ctx.settings.jira_email
    return not (ours and str(author.get("emailAddress") or "").lower() == ours.lower())


# -- the check -------------------------------------------------------------------------------------------


def check_all(now: str | None = None) -> dict[str, Any]:
    """The scheduled RQ job: one follow-through pass over every open escalation."""
    from worker.jobs import worker_context

    return run(worker_context(), now=_parse(now))


def _parse(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


_inline_lock = threading.Lock()


@contextmanager
def _exclusive(ctx: JobContext) -> Iterator[bool]:
    connection = getattr(ctx.queue, "connection", None)
    if connection is None:
        got = _inline_lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                _inline_lock.release()
        return
    lock = connection.lock(LOCK_NAME, timeout=LOCK_TIMEOUT, blocking=False)
    got = bool(lock.acquire(blocking=False))
    try:
        yield got
    finally:
        if got:
            lock.release()


def run(ctx: JobContext, *, now: datetime | None = None) -> dict[str, Any]:
    """Check every handed-over escalation at ``now``. Errors on one escalation do not stop the others;
    the first is raised at the end, so the job is seen to fail and its retry finishes the work."""
    now = now or datetime.now(UTC)
    with _exclusive(ctx) as got:
        if not got:
            log.info("follow-through check skipped: another one is running")
            return {"skipped": "another check is running"}
        results: dict[str, Any] = {}
        failures: list[BaseException] = []
        for escalation in ctx.store.escalations_in():
            if escalation.state is EscalationState.SUGGESTED:
                continue
            try:
                results[str(escalation.id)] = check(ctx, escalation, now)
            except errors.ConnectorError as exc:
                log.warning("follow-through of escalation %s failed: %s", escalation.id, exc)
                failures.append(exc)
        try:
            from worker.backfill import keep_current

            results["index"] = keep_current(ctx, now=now)
        except errors.ConnectorError as exc:
            log.warning("symptom index catch-up failed: %s", exc)
        if failures:
            raise failures[0]
        return results


def check(ctx: JobContext, escalation: EscalationRecord, now: datetime) -> dict[str, Any]:
    rules = runtime_for(ctx.settings).rules
    severity = Severity(escalation.severity or Severity.MEDIUM.value)
    cadence = rules.follow_through[severity]
    handed = handed_off_at(ctx, escalation)
    result: dict[str, Any] = {}
    from worker.rollup import reconcile

    if reconcile(ctx, escalation):  # links or comments a failed job left undone
        result["reconciled"] = True
    if escalation.jira_key and escalation.state in CHECKED_STATES:
        result.update(_stall(ctx, escalation, severity, timedelta(hours=cadence.check_in_hours), handed, now))
    if escalation.state in UPDATE_STATES:
        hours = max(cadence.customer_update_hours)
        result.update(
            _customer_updates(ctx, escalation, severity, cadence.customer_update_hours, hours, handed, now)
        )
    return result


def handed_off_at(ctx: JobContext, escalation: EscalationRecord) -> datetime:
    found = ctx.store.ledger(set(HANDED_OFF), escalation_id=escalation.id, limit=1)
    return found[0].at if found else escalation.created_at


# -- stalled -----------------------------------------------------------------------------------------------


def _stall(
    ctx: JobContext,
    e: EscalationRecord,
    severity: Severity,
    interval: timedelta,
    handed: datetime,
    now: datetime,
) -> dict[str, Any]:
    rt = runtime_for(ctx.settings)
    assert e.jira_key is not None
    tracking = ctx.store.tracking(e.id)
    status = rt.jira.get_status(e.jira_key)
    if tracking.jira_status is None:
        tracking = ctx.store.update_tracking(e.id, jira_status=status.name)
    elif status.name != tracking.jira_status:  # a status change whose webhook never came
        record_movement(
            ctx,
            e,
            f"status {tracking.jira_status} → {status.name} (seen by the check)",
            status=status.name,
            category=status.category,
            at=now,
        )
        tracking = ctx.store.tracking(e.id)
    since = max(t for t in (tracking.last_movement_at, e.state_changed_at, handed) if t is not None)
    missed = int((now - since) / interval) if now > since else 0
    if missed < 1:
        if tracking.stalled_since is not None:
            _unstall(ctx, e)
        return {"stalled": False}
    episode = str(int(since.timestamp()))
    lead = None
    if missed >= 2 and severity in (Severity.CRITICAL, Severity.HIGH):
        lead = _notify_leadership(ctx, e, severity, since, episode, now)
    hours = (now - since).total_seconds() / 3600
    cadence = f"check-in every {interval.total_seconds() / 3600:g} h for {severity.value} escalations"
    text = (
        f"Stalled: Jira {e.jira_key} has not moved for {hours:.1f} h ({cadence}; missed check-in {missed}). "
        "Chase engineering on the issue." + (f" Leadership has been notified ({lead})." if lead else "")
    )
    noted = 0
    for ticket in e.tickets:
        subject = f"{ticket.id}:{episode}:{missed}"
        if ctx.store.ledger_has(STALLED_NOTE, subject, escalation_id=e.id):
            continue
        desk = rt.desk(ticket.source)
        desk.add_note_text(ticket.id, text, [STALLED_TAG])
        ctx.store.record_action(
            ticket.source,
            STALLED_NOTE,
            subject,
            escalation_id=e.id,
            detail={"ticket": ticket.id, "missed": missed, "since": since.isoformat()},
        )
        noted += 1
    chase = f"{e.id}:{episode}:{missed}"
    if not ctx.store.ledger_has(JIRA_CHASE, chase, escalation_id=e.id):
        body = (
            f"{MARK} no movement on this issue for {hours:.1f} h ({cadence}). Support is keeping "
            f"{len(e.tickets)} customer ticket(s) waiting on it: please update the status or comment."
        )
        rt.jira.add_comment(e.jira_key, body_adf=adf_from_text(body), body_wiki=body)
        ctx.store.record_action("jira", JIRA_CHASE, chase, escalation_id=e.id, detail={"missed": missed})
    ctx.store.update_tracking(e.id, stalled_since=since, missed_intervals=missed)
    return {"stalled": True, "missed": missed, "noted": noted, "leadership": lead}


def _unstall(ctx: JobContext, e: EscalationRecord) -> None:
    rt = runtime_for(ctx.settings)
    for ticket in e.tickets:
        rt.desk(ticket.source).remove_tags(ticket.id, [STALLED_TAG])
    ctx.store.update_tracking(e.id, stalled_since=None, missed_intervals=0)


def _notify_leadership(
    ctx: JobContext, e: EscalationRecord, severity: Severity, since: datetime, episode: str, now: datetime
) -> str:
    """Once per stall: a Jira issue in the leadership project (or, for a Zendesk-group target, a comment
    on the stalled issue). Returns what leadership got (an issue key or the group)."""
    subject = f"{e.id}:{episode}"
    done = ctx.store.ledger({LEADERSHIP}, escalation_id=e.id, subject=subject, limit=1)
    if done:
        return str((done[0].detail or {}).get("key") or (done[0].detail or {}).get("group"))
    rt = runtime_for(ctx.settings)
    assert e.jira_key is not None
    target = rt.rules.destinations[Destination.LEADERSHIP]
    hours = (now - since).total_seconds() / 3600
    text = (
        f"{MARK} a {severity.value} escalation has stalled: {e.jira_key} ({rt.jira.browse_url(e.jira_key)}) "
        f"has not moved for {hours:.1f} h, two check-in intervals or more. {len(e.tickets)} customer "
        f"ticket(s) wait on it: {', '.join('#' + t.id for t in e.tickets)}.\n\n"
        "Decision needed: unblock the receiving team or tell the customers what to expect."
    )
    rollup = ctx.store.tracking(e.id).rollup or {}
    if rollup:
        from worker.rollup import summary_line

        text += f"\n\nImpact: {summary_line(rollup)}."
    if target.jira is not None:
        label = f"escalate-stalled-{e.id}-{episode}"
        issue = rt.jira.find_issue_by_label(label) or rt.jira.create_issue(
            project=target.jira.project,
            issue_type=target.jira.issue_type,
            summary=f"Stalled {severity.value} escalation {e.jira_key}: no movement for {hours:.0f} h",
            description_adf=adf_from_text(text),
            description_wiki=text,
            labels=[*target.jira.labels, "escalate-stalled"],
            security_level=target.jira.security_level,
            idempotency_label=label,
            priority=target.jira.priority_by_severity.get(severity),
        )
        rt.jira.link_issues(issue.key, e.jira_key, "Relates")
        detail: dict[str, Any] = {"key": issue.key, "url": issue.url}
    else:
        group = target.zendesk.group_id if target.zendesk else None
        body = f"{text}\n\nLeadership (Zendesk group {group or 'unset'}) is asked to step in."
        rt.jira.add_comment(e.jira_key, body_adf=adf_from_text(body), body_wiki=body)
        detail = {"group": group}
    ctx.store.record_action("jira", LEADERSHIP, subject, escalation_id=e.id, detail=detail)
    return str(detail.get("key") or detail.get("group"))


# -- customer updates --------------------------------------------------------------------------------------


def _customer_updates(
    ctx: JobContext,
    e: EscalationRecord,
    severity: Severity,
    window: tuple[float, float],
    hours: float,
    handed: datetime,
    now: datetime,
) -> dict[str, Any]:
    due = timedelta(hours=hours)
    if now - handed < due:
        return {"reminded": 0}
    rt = runtime_for(ctx.settings)
    resolved = ctx.store.tracking(e.id).resolved_at if e.state is EscalationState.RESOLVED else None
    reminded, told_since_resolution = 0, 0
    for ticket in e.tickets:
        last, solved = _last_public_reply(ctx, ticket)
        if solved:
            told_since_resolution += 1
            continue
        if resolved is not None and last is not None and last >= resolved:
            told_since_resolution += 1
        base = max(handed, last) if last else handed
        overdue = int((now - base) / due) if now > base else 0
        if overdue < 1:
            continue
        subject = f"{ticket.id}:{int(base.timestamp())}:{overdue}"
        if ctx.store.ledger_has(CUSTOMER_REMINDER, subject, escalation_id=e.id):
            continue
        since = f"{(now - base).total_seconds() / 3600:.1f} h"
        text = (
            f"Customer update overdue: no public reply to the customer for {since} (for {severity.value} "
            f"escalations, update every {window[0]:g}–{window[1]:g} h). Tell them where Jira "
            f"{e.jira_key or e.destination} stands, even if nothing changed."
        )
        desk = rt.desk(ticket.source)
        desk.add_note_text(ticket.id, text, [CUSTOMER_UPDATE_TAG])
        ctx.store.record_action(
            ticket.source,
            CUSTOMER_REMINDER,
            subject,
            escalation_id=e.id,
            detail={"ticket": ticket.id, "overdue": overdue},
        )
        reminded += 1
    if resolved is not None and e.tickets and told_since_resolution == len(e.tickets):
        ctx.store.transition_escalation(
            e.id,
            EscalationState.CUSTOMER_UPDATED,
            reason="every ticket had a public reply since the resolution",
        )
    return {"reminded": reminded}


def _last_public_reply(ctx: JobContext, ticket: TicketRef) -> tuple[datetime | None, bool]:
    """(when an agent last replied publicly, whether the ticket is solved) from its desk."""
    desk = runtime_for(ctx.settings).desk(ticket.source)
    case = desk.case(desk.fetch_bundle(ticket.id, history_days=0, changes=False))
    replies = [c.created_at for c in case.comments if c.public and c.created_at and case.is_staff_comment(c)]
    return (max(replies) if replies else None), case.ticket.is_solved


# -- scheduling --------------------------------------------------------------------------------------------


def interval_seconds() -> int:
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    try:
        return max(int(raw), 0) if raw else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


def cron_scheduler(
    connection: Any, queue_name: str, *, interval: int = DEFAULT_INTERVAL, now: str | None = None
) -> Any:
    """RQ 3's cron scheduler with the follow-through check registered every ``interval`` seconds (the
    first run is due at once), and the store's daily prune (``worker.housekeeping``). ``now`` pins the
    check's clock (tests, replays). Needs rq >= 2.5."""
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=connection, logging_level=logging.WARNING)
    scheduler.register(
        check_all,
        queue_name,
        kwargs={"now": now} if now else None,
        interval=interval,
        job_timeout=LOCK_TIMEOUT,
        result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600,
        name="escalate-followthrough",
    )
    housekeeping.register(scheduler, queue_name)
    return scheduler


class InlineTicker:
    """Inline mode's scheduler: a daemon thread running the check every ``interval`` seconds for as long
    as the service lives and its queue is open, and the store's prune once a day."""

    def __init__(self, service: Any, interval: int) -> None:
        self._service = weakref.ref(service)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="escalate-followthrough", daemon=True)
        self._prune = housekeeping.InlinePrune()

    def start(self) -> InlineTicker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            service = self._service()
            if service is None or getattr(service.queue, "_closed", False):
                return
            try:
                run(service.job_context())
            except Exception:
                log.exception("follow-through check failed; the next one runs in %ss", self.interval)
            try:
                self._prune.maybe_run(service.store)
            except Exception:
                log.exception("store prune failed; the next one runs in a day")
            del service


def start_inline(service: Any) -> InlineTicker | None:
    """Start the inline ticker (the app factory calls this when there is no Redis)."""
    seconds = interval_seconds()
    return InlineTicker(service, seconds).start() if seconds > 0 else None
