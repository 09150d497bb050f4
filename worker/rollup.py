"""One problem, one issue: tickets reporting the same symptom gather under one escalation, whose impact
rollup (customers, tickets, ARR exposed, growth over the window) lives on the Jira issue and in every
linked ticket's sidebar, and whose severity rises when the rollup crosses POLICY.md §4's threshold.

Two steps around an assessment (``worker.assess``):

* ``place`` (before the escalation step): a ticket whose symptom matches an open escalation joins it
  (``Store.join_escalation``); one matching a resolved escalation is a regression
  (``worker.regression``).
* ``settle`` (after it): the ticket's unsolved same-symptom tickets join its grouped escalations too, and
  each of those escalations is ``refresh``-ed: a remote link per ticket, a Jira comment naming each new
  account and its ARR, the rollup (an issue property, ``escalate-impact``), and the severity.

Idempotent under retries: every outward action is checked against, and recorded in, the audit log (the
ledger), as ``worker.handoff`` does. Which destinations group is the rules file's ``grouping``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import LockError

from connector import errors
from connector.jira_description import adf_from_text
from rules.adapters.coerce import number
from rules.case import Ticket
from rules.ruleset import Destination, Ruleset
from worker.jobs import JobContext
from worker.queue import JOB_TIMEOUT
from worker.runtime import Runtime, runtime_for
from worker.store import (
    OPEN_STATES,
    EscalationRecord,
    EscalationState,
    TicketRef,
)

log = logging.getLogger(__name__)

JOINED = "symptom_join"
REMOTE_LINK = "jira_remote_link"
JOIN_COMMENT = "jira_join_comment"
SEVERITY_RAISED = "severity_raised"
JIRA_SEVERITY = "jira_severity"
IMPACT_SET = "jira_impact_property"
IMPACT_PROPERTY = "escalate-impact"
COMMENT_MARK = "Escalate:"  # how our own Jira comments begin (progress tells them from engineering's)
SEVERITY_RANK = {None: -1, "medium": 0, "high": 1, "critical": 2}
RESOLVED_STATES = frozenset(
    {EscalationState.RESOLVED, EscalationState.CUSTOMER_UPDATED, EscalationState.CLOSED}
)
# Escalations a new report of their symptom joins; a resolved one is a regression instead.
JOINABLE_STATES = frozenset(
    {EscalationState.SUGGESTED, EscalationState.CREATED, EscalationState.ACKNOWLEDGED}
)


def rank(severity: str | None) -> int:
    return SEVERITY_RANK.get(severity, -1)


def severity_after(current: EscalationRecord, proposed: str | None) -> str | None:
    """The severity an escalation takes from one ticket's re-assessment: a single-ticket escalation follows
    its ticket; a grouped one only rises (another customer's calmer ticket does not lower it)."""
    if len(current.tickets) <= 1:
        return proposed
    return proposed if rank(proposed) > rank(current.severity) else current.severity


def grouped(rules: Ruleset) -> frozenset[str]:
    return frozenset(d.value for d in rules.grouping.destinations)


@dataclass
class Placement:
    """What ``place`` did: joined (or reopened) an escalation, opened a regression, or nothing."""

    joined: list[int] = field(default_factory=list)
    regression: dict[str, Any] | None = None
    # The ticket's open escalations as they stand after ``place``: those it just joined included.
    mine: list[EscalationRecord] = field(default_factory=list)

    def as_outcome(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.joined:
            found["joined"] = self.joined
        if self.regression:
            found["regression"] = self.regression
        return found


# -- before the escalation step ----------------------------------------------------------------------


def place(ctx: JobContext, ref: TicketRef, decision: Mapping[str, Any], ticket: Ticket) -> Placement:
    """Join the open grouped escalation whose symptom this ticket shares, or handle a regression. The
    ticket's own open escalations, read with its matches' (and those it joined, as the join left them),
    come back in ``Placement.mine``."""
    from worker import regression
    from worker.symptom_index import index_for

    rt = runtime_for(ctx.settings)
    text = ticket.text
    destinations = grouped(rt.rules)
    index = index_for(ctx.store, rt.matcher)
    hits = [hit for hit, _row in index.matches(ctx.store, text, exclude=ref)] if text else []
    # The look-alikes' escalations only where grouping could use them; the ticket's own all.
    by_ticket = ctx.store.escalations_of_tickets(
        [ref, *(h.ticket for h in hits)], destinations=destinations, own=ref
    )
    placement = Placement(mine=[e for e in by_ticket.get(ref, []) if e.state in OPEN_STATES])
    if not hits:
        return placement
    taken = {e.destination for e in placement.mine}
    wanted = decision.get("destination") if decision.get("escalate") else None
    open_match: dict[str, tuple[EscalationRecord, float]] = {}
    resolved_match: tuple[EscalationRecord, float] | None = None
    for hit in hits:  # best match first
        for e in by_ticket.get(hit.ticket, []):
            if e.destination not in destinations:
                continue
            if e.state in JOINABLE_STATES and e.destination not in taken and e.destination not in open_match:
                if e.jira_key or e.destination == wanted:
                    open_match[e.destination] = (e, hit.score)
            elif e.state in RESOLVED_STATES and e.jira_key and resolved_match is None:
                resolved_match = (e, hit.score)
    for escalation, score in open_match.values():
        joined = _join(ctx, escalation.id, ref, score)
        if joined is not None:
            placement.joined.append(joined.id)
            placement.mine.append(joined)
    if resolved_match is not None and resolved_match[0].destination not in (*open_match, *taken):
        old, score = resolved_match
        if regression.is_regression(ctx, ref, ticket.created_at, old):
            placement.regression = regression.handle(ctx, ref, decision, old, score)
    return placement


def _join(
    ctx: JobContext, escalation_id: int, ref: TicketRef, score: float, *, via: str = "symptom"
) -> EscalationRecord | None:
    """Link ``ref`` under the escalation; the escalation as the join left it, or None when not joined
    (no longer joinable, linked already, or the ticket has another open one for that destination)."""
    audit = {
        "target": "escalate",
        "action": JOINED,
        "subject": ref.id,
        "detail": {"score": round(score, 3), "via": via},
    }
    joined = ctx.store.join_escalation(escalation_id, ref, states=JOINABLE_STATES, audit=audit)
    if joined is None:
        log.info(
            "ticket %s not joined to escalation %s: not joinable, or under it or another already",
            ref.id,
            escalation_id,
        )
    return joined


# -- after the escalation step -----------------------------------------------------------------------


def settle(
    ctx: JobContext,
    ref: TicketRef,
    decision: Mapping[str, Any],
    *,
    mine: Sequence[EscalationRecord] | None = None,
) -> dict[str, Any]:
    """Gather the ticket's unsolved same-symptom tickets under its grouped escalations, then refresh each
    (links, comments, rollup, severity). ``mine``: the ticket's open escalations, when still current."""
    rt = runtime_for(ctx.settings)
    destinations = grouped(rt.rules)
    given = mine is not None
    if mine is None:
        mine = ctx.store.escalations_for_ticket(ref, open_only=True)
    mine = [e for e in mine if e.destination in destinations]
    related = [
        r
        for r in decision.get("related_tickets") or []
        if str(r.get("status") or "").lower() not in ("solved", "closed") and r.get("ticket_id")
    ]
    result: dict[str, Any] = {}
    others = [(TicketRef.of(ref.source, r["ticket_id"]), float(r.get("similarity") or 0)) for r in related]
    linked = {e.id: set(e.tickets) for e in mine}  # an outage's escalation gathers hundreds
    held = _held_elsewhere(ctx, mine, linked, [other for other, _score in others])
    for escalation in mine:
        joined = False
        for other, score in others:
            if other in linked[escalation.id] or (other, escalation.destination) in held:
                continue  # joined already (a re-assessment), or cannot be: no lock, no write
            joined |= _join(ctx, escalation.id, other, score, via=f"related to #{ref.id}") is not None
        known = escalation if given and not joined else None
        result[str(escalation.id)] = refresh(ctx, escalation.id, known=known)
    return {"rollups": result} if result else {}


def _held_elsewhere(
    ctx: JobContext,
    mine: Sequence[EscalationRecord],
    linked: Mapping[int, set[TicketRef]],
    related: Sequence[TicketRef],
) -> set[tuple[TicketRef, str]]:
    """(ticket, destination) for each related ticket not under ``mine`` that another open escalation
    to that destination holds: a ticket is under one open escalation per destination, so joining it
    would fail. When one symptom's tickets sit under two open escalations (escalated before either saw
    the other), every re-judgement of one side would otherwise lock and retry each of the other's
    tickets. One read, and only when some related ticket is not linked yet."""
    unlinked = {t for t in related if any(t not in tickets for tickets in linked.values())}
    if not unlinked:
        return set()
    found = ctx.store.escalations_of_tickets(unlinked, destinations={e.destination for e in mine})
    return {
        (ticket, e.destination)
        for ticket, escalations in found.items()
        for e in escalations
        if e.id not in linked and e.state in OPEN_STATES
    }


def refresh(
    ctx: JobContext,
    escalation_id: int,
    *,
    now: datetime | None = None,
    known: EscalationRecord | None = None,
) -> dict[str, Any]:
    """Recompute an escalation's rollup and carry it out: severity, and on Jira the links, the comments
    for new accounts and the impact property. Safe to call any number of times. ``known``: the
    escalation as just read in this job, not changed since."""
    from worker.handoff import hand_off

    rt = runtime_for(ctx.settings)
    now = now or datetime.now(UTC)
    escalation = known if known is not None else ctx.store.escalation(escalation_id)
    if escalation is None or escalation.state not in OPEN_STATES:
        return {}
    tickets = ticket_infos(ctx, escalation.tickets)
    orgs = _organizations(ctx, tickets)
    rollup = compute(rt.rules, tickets, orgs, now)
    changed = ctx.store.set_rollup(escalation_id, rollup)  # written only when it moved
    floor = rollup.get("severity_floor")
    raised_from = None
    if rank(floor) > rank(escalation.severity):
        with ctx.store.lock_escalation(escalation_id) as lock:
            current = lock.record.severity
            if rank(floor) > rank(current):
                lock.set_severity(floor)
                lock.record_action(
                    "escalate",
                    SEVERITY_RAISED,
                    f"{escalation_id}:{floor}",
                    detail={"from": current, "to": floor, "why": rollup.get("severity_reason")},
                )
                raised_from = current
        escalation = ctx.store.escalation(escalation_id) or escalation
    if escalation.jira_key:
        with carrying(ctx, escalation.id):
            _carry_to_jira(ctx, escalation, tickets, orgs, rollup, changed=changed)
    elif (
        raised_from is not None
        and escalation.state is EscalationState.SUGGESTED
        and rt.rules.is_automatic(Destination(escalation.destination), _severity(escalation.severity))
    ):
        # The rollup made it an escalation the rules carry out without a click (e.g. critical).
        hand_off(ctx, escalation.ticket, escalation.destination, actor="rollup")
    return rollup


def reconcile(ctx: JobContext, escalation: EscalationRecord) -> bool:
    """Refresh a grouped escalation whose issue is missing a ticket's link or comment (a job that failed
    half-way and was not retried, a click whose follow-up failed): the follow-through check calls this."""
    rt = runtime_for(ctx.settings)
    if not escalation.jira_key or escalation.destination not in grouped(rt.rules):
        return False
    done = ctx.store.ledger_subjects({REMOTE_LINK, JOIN_COMMENT}, escalation_id=escalation.id)
    linked, commented = done[REMOTE_LINK], done[JOIN_COMMENT]
    missing = any(t.id not in linked for t in escalation.tickets) or any(
        t.id not in commented for t in escalation.tickets[1:]
    )
    if missing:
        refresh(ctx, escalation.id)
    return missing


def _severity(value: str | None) -> Any:
    from rules.ruleset import Severity

    return Severity(value) if value else None


# -- the rollup ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketInfo:
    ref: TicketRef
    organization_id: str | None
    requester_id: str | None
    created_at: datetime | None
    subject: str


def ticket_infos(ctx: JobContext, refs: Sequence[TicketRef]) -> list[TicketInfo]:
    """What the rollup needs of each linked ticket: from the symptom index, Zendesk for the rest."""
    from worker.symptom_index import index_for

    rt = runtime_for(ctx.settings)
    found = []
    rows = index_for(ctx.store, rt.matcher).rows_for(ctx.store, refs)
    for ref in refs:
        row = rows.get(ref)
        if row is not None:
            found.append(TicketInfo(ref, row.organization_id, row.requester_id, row.created_at, row.subject))
            continue
        s = rt.desk(ref.source).summary(ref.id)
        found.append(TicketInfo(ref, s.organization_id, s.requester_id, s.created_at, s.subject))
    return found


def _organizations(ctx: JobContext, tickets: Sequence[TicketInfo]) -> dict[str, dict[str, Any]]:
    """Each linked ticket's organization, from the desk it lives in (an escalation may gather both)."""
    rt = runtime_for(ctx.settings)
    by_desk: dict[str, set[str]] = {}
    for t in tickets:
        if t.organization_id:
            by_desk.setdefault(t.ref.source, set()).add(t.organization_id)
    found: dict[str, dict[str, Any]] = {}
    for source, ids in sorted(by_desk.items()):
        found.update({str(o["id"]): o for o in rt.desk(source).organizations(sorted(ids))})
    return found


def compute(
    rules: Ruleset, tickets: Sequence[TicketInfo], orgs: Mapping[str, Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """The impact rollup (POLICY.md §5 breadth and revenue, summed over the linked tickets; each
    organization counted once) and the severity floor it sets (POLICY.md §4)."""
    arr_key = rules.fields.organization.arr
    high = rules.thresholds.high_value_arr
    customers: dict[str, dict[str, Any]] = {}
    for t in tickets:
        key = f"org:{t.organization_id}" if t.organization_id else f"user:{t.requester_id or t.ref.id}"
        entry = customers.setdefault(key, {"tickets": []})
        entry["tickets"].append(t.ref.id)
        if t.organization_id:
            org = orgs.get(t.organization_id) or {}
            entry.update(
                id=t.organization_id,
                name=org.get("name") or f"organization {t.organization_id}",
                arr=number((org.get("organization_fields") or {}).get(arr_key)),
            )
        else:
            entry.update(id=None, name=f"requester {t.requester_id or 'unknown'}", arr=None)
    known = [c["arr"] for c in customers.values() if c["arr"] is not None]
    high_value = [c["name"] for c in customers.values() if c["arr"] is not None and c["arr"] >= high]
    days = rules.thresholds.lookback_days
    created = sorted(t.created_at for t in tickets if t.created_at)
    # The cutoffs once, not per ticket: an outage's escalation sums hundreds on every join.
    window, half = now - timedelta(days=days), now - timedelta(days=days / 2)
    day = now - timedelta(hours=24)
    recent = sum(1 for c in created if c >= half)
    earlier = sum(1 for c in created if window <= c < half)
    needed = rules.thresholds.critical_high_value_organizations
    floor = "critical" if len(high_value) >= needed else None
    return {
        "customers": len(customers),
        "tickets": len(tickets),
        "currency": rules.fields.currency,
        "arr_exposed": sum(known) if known else None,
        "customers_without_arr": [c["name"] for c in customers.values() if c["arr"] is None],
        "accounts": sorted(customers.values(), key=lambda c: (-(c["arr"] or 0), c["name"])),
        "high_value_customers": sorted(high_value),
        "window_days": days,
        "first_reported_at": _iso(created[0]) if created else None,
        "last_reported_at": _iso(created[-1]) if created else None,
        "last_24h": sum(1 for c in created if c >= day),
        "recent_half_window": recent,
        "earlier_half_window": earlier,
        "growing": (recent > earlier) if len(created) >= 2 else None,
        "severity_floor": floor,
        "severity_reason": (
            f"{len(high_value)} accounts with ARR ≥ {high:,.0f} share the symptom "
            f"({', '.join(sorted(high_value))})"
            if floor
            else None
        ),
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def money(amount: float | None, currency: str) -> str:
    return "ARR unknown" if amount is None else f"{currency} {amount:,.0f}"


def summary_line(rollup: Mapping[str, Any]) -> str:
    """ "3 customers · 4 tickets · USD 580,000 ARR exposed · growing (3 in the last 7 days, 1 before)"."""
    customers, tickets = rollup.get("customers", 0), rollup.get("tickets", 0)
    parts = [
        f"{customers} customer{'s' if customers != 1 else ''}",
        f"{tickets} ticket{'s' if tickets != 1 else ''}",
        f"{money(rollup.get('arr_exposed'), rollup.get('currency') or 'USD')} ARR exposed"
        if rollup.get("arr_exposed") is not None
        else "ARR exposed unknown",
    ]
    growing = rollup.get("growing")
    half = float(rollup.get("window_days") or 14) / 2
    recent, earlier = rollup.get("recent_half_window", 0), rollup.get("earlier_half_window", 0)
    trend = f"{recent} in the last {half:g} days, {earlier} before"
    if growing is True:
        parts.append(f"growing ({trend})")
    elif growing is False:
        parts.append(f"not growing ({trend})")
    return " · ".join(parts)


def followup_view(store: Any, escalation: EscalationRecord) -> dict[str, Any]:
    """What the sidebar shows of an escalation beyond its state: the rollup line and the stall."""
    tracking = store.tracking(escalation.id)
    view: dict[str, Any] = {}
    if tracking.rollup:
        view["rollup"] = dict(tracking.rollup)
        view["rollup_summary"] = summary_line(tracking.rollup)
    if tracking.stalled_since is not None:
        view["stalled_since"] = tracking.stalled_since.isoformat()
        view["missed_check_ins"] = tracking.missed_intervals
    return view


# -- on the Jira issue ---------------------------------------------------------------------------------


CARRY_LOCK_SECONDS = JOB_TIMEOUT  # a lock its holder died with goes by then
# Short: a waiting job holds its worker thread, and an agent's click in the sidebar waits within
# gunicorn's 10 s. Not had by then, the job looks again later (a reschedule, not a failed attempt).
CARRY_WAIT_SECONDS = 5
CARRY_RETRY_SECONDS = 5
# How often a waiting job asks for the lock: redis-py's default, 0.1 s, cost a job of an outage's group
# up to that much each time another was carrying.
CARRY_POLL_SECONDS = 0.02
_local_carry_locks = [threading.Lock() for _ in range(64)]


@contextmanager
def carrying(ctx: JobContext, escalation_id: int) -> Iterator[None]:
    """One job at a time carries an escalation to Jira. Carrying reads the ledger, then links, comments
    and records: two jobs refreshing one escalation at once (an outage's tickets, in two workers or two
    threads of one) would both find a ticket unlinked and post its link note twice. With Redis the lock
    is Redis's, shared by every worker; inline, the process's own. Not had within ``CARRY_WAIT_SECONDS``:
    the job is rescheduled (a RateLimited) rather than act unguarded. Never nested: not re-entrant."""
    connection = getattr(ctx.queue, "connection", None)
    if connection is None:
        with _local_carry_locks[escalation_id % len(_local_carry_locks)]:
            yield
        return
    lock = connection.lock(
        f"escalate:carry:{escalation_id}",
        timeout=CARRY_LOCK_SECONDS,
        blocking_timeout=CARRY_WAIT_SECONDS,
        sleep=CARRY_POLL_SECONDS,
    )
    if not lock.acquire():
        raise errors.RateLimited(
            "escalate",
            f"escalation {escalation_id} is being carried to Jira by another job",
            retry_after=CARRY_RETRY_SECONDS,
        )
    try:
        yield
    finally:
        with suppress(LockError):  # held past its timeout: another job may hold it now
            lock.release()


def _carry_to_jira(
    ctx: JobContext,
    escalation: EscalationRecord,
    tickets: Sequence[TicketInfo],
    orgs: Mapping[str, Mapping[str, Any]],
    rollup: Mapping[str, Any],
    *,
    changed: bool,
) -> None:
    rt = runtime_for(ctx.settings)
    key = escalation.jira_key
    assert key is not None
    store = ctx.store
    # What was done for this issue already, in one read: a link and (but for the first) a comment per ticket.
    done = store.ledger_subjects({REMOTE_LINK, JOIN_COMMENT}, escalation_id=escalation.id)
    linked, commented = done[REMOTE_LINK], done[JOIN_COMMENT]
    for t in tickets:
        if t.ref.id in linked:
            continue
        rt.desk(t.ref.source).link_issue(t.ref.id, key, t.subject)
        store.record_action("jira", REMOTE_LINK, t.ref.id, escalation_id=escalation.id, detail={"key": key})
    newcomers = [
        t
        for t in tickets[1:]  # the first is the ticket the issue was created from: its package says it all
        if t.ref.id not in commented
    ]
    if newcomers:
        lines = [_newcomer_line(rt, t, orgs) for t in newcomers]
        count = len({t.organization_id or t.ref.id for t in newcomers})
        who = f"{count} more customers report" if count != 1 else "1 more customer reports"
        head = f"{COMMENT_MARK} {who} this symptom."
        text = "\n\n".join([head, *lines, f"Impact now: {summary_line(rollup)}."])
        rt.jira.add_comment(key, body_adf=adf_from_text(text), body_wiki=text)
        for t in newcomers:
            store.record_action(
                "jira", JOIN_COMMENT, t.ref.id, escalation_id=escalation.id, detail={"key": key}
            )
    if changed or not store.ledger_has(IMPACT_SET, str(escalation.id), escalation_id=escalation.id):
        rt.jira.set_property(key, IMPACT_PROPERTY, dict(rollup))
        store.record_action(
            "jira",
            IMPACT_SET,
            str(escalation.id),
            escalation_id=escalation.id,
            detail={"customers": rollup.get("customers"), "tickets": rollup.get("tickets")},
        )
    _tell_severity(ctx, escalation, rollup)


def _newcomer_line(rt: Runtime, t: TicketInfo, orgs: Mapping[str, Mapping[str, Any]]) -> str:
    rules, desk = rt.rules, rt.desk(t.ref.source)
    url = desk.ticket_url(t.ref.id)
    org = orgs.get(t.organization_id or "") or {}
    fallback = f"organization {t.organization_id}" if t.organization_id else "no organization"
    name = org.get("name") or fallback
    arr = number((org.get("organization_fields") or {}).get(rules.fields.organization.arr))
    return f"{desk.name(t.ref.id)} from {name} (ARR {money(arr, rules.fields.currency)}): {t.subject} ({url})"


def _tell_severity(ctx: JobContext, escalation: EscalationRecord, rollup: Mapping[str, Any]) -> None:
    """Engineering hears when the escalation's severity is above what the issue last said: the priority
    follows the rules' ``priority_by_severity`` and a comment says why."""
    rt = runtime_for(ctx.settings)
    key = escalation.jira_key
    assert key is not None
    told = ctx.store.ledger({JIRA_SEVERITY}, escalation_id=escalation.id, limit=1)
    if told:
        known = (told[0].detail or {}).get("severity")
    else:
        labels = [x.removeprefix("severity-") for x in rt.jira.labels(key) if x.startswith("severity-")]
        known = labels[0] if labels else None
    current = escalation.severity
    if rank(current) <= rank(known):
        if not told:
            ctx.store.record_action(
                "jira",
                JIRA_SEVERITY,
                str(escalation.id),
                escalation_id=escalation.id,
                detail={"severity": known},
            )
        return
    target = rt.rules.destinations[Destination(escalation.destination)].jira
    priority = target.priority_by_severity.get(_severity(current)) if target else None
    if priority:
        rt.jira.set_priority(key, priority)
    rt.jira.replace_labels(key, add=[f"severity-{current}"], remove=[f"severity-{known}"] if known else [])
    why = rollup.get("severity_reason") or "the rollup of affected customers"
    text = (
        f"{COMMENT_MARK} severity raised from {known or 'unknown'} to {current}: {why}. "
        f"Impact now: {summary_line(rollup)}."
    )
    rt.jira.add_comment(key, body_adf=adf_from_text(text), body_wiki=text)
    ctx.store.record_action(
        "jira",
        JIRA_SEVERITY,
        str(escalation.id),
        escalation_id=escalation.id,
        detail={"severity": current, "from": known, "priority": priority},
    )
