"""How long the store keeps what every event adds: deliveries, assessments and audit entries.

Every webhook leaves a delivery row and, when its ticket changed, an assessment with its trace; every action
on Zendesk or Jira leaves an audit entry. At a few events a second that is millions of rows a month, so
``prune`` deletes them once they are older than their window, keeping what the service still reads:

- **deliveries**: processed ones only. A received, running or failed one is evidence of work not done
  (``escalate jobs failed`` shows the job; a re-queued job finds its row again).
- **assessments**: never a ticket's latest (an unchanged ticket is answered from it, the sidebar shows
  it), nor one an escalation started from (the package's trace).
- **audit entries**: never one of an escalation still open (the audit log is also the ledger a retried job
  reads before acting: links, join comments), nor the latest entry of each action on each subject (the last
  internal note tells our own echo from a change).

Escalations themselves, with their tickets and tracking, are kept: they are few and they are the history a
resurfacing problem is recognised by. Rows go in id ranges of ``batch`` ids, one short transaction each,
so a large first prune never holds a long lock on tables the workers write.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, delete, exists, func, or_, select
from sqlalchemy.engine import Connection, Engine

from worker.store.lifecycle import OPEN_STATES, DeliveryStatus
from worker.store.statements import ASSESSMENTS, AUDIT, DELIVERIES, ESCALATIONS

# Days kept by default; each can be changed through its variable, 0 keeps that kind forever.
WINDOWS_ENV = {
    "deliveries": ("ESCALATE_KEEP_DELIVERIES_DAYS", 30),
    "assessments": ("ESCALATE_KEEP_ASSESSMENTS_DAYS", 90),
    "audit": ("ESCALATE_KEEP_AUDIT_DAYS", 365),
}
DEFAULT_BATCH = 5_000


@dataclass(frozen=True)
class Windows:
    """Days each kind of row is kept; 0 keeps it forever."""

    deliveries: int = WINDOWS_ENV["deliveries"][1]
    assessments: int = WINDOWS_ENV["assessments"][1]
    audit: int = WINDOWS_ENV["audit"][1]

    @classmethod
    def from_env(cls, **given: int | None) -> Windows:
        """The windows from ``given`` (a command's options) where set, else from the environment, else the
        defaults. A value that is not a whole number of days, or is negative, is refused."""
        days: dict[str, int] = {}
        for kind, (variable, default) in WINDOWS_ENV.items():
            value, origin = given.get(kind), f"the {kind} window"
            if value is None:
                raw, origin = os.environ.get(variable, "").strip(), variable
                try:
                    value = int(raw) if raw else default
                except ValueError:
                    raise ValueError(f"{variable} must be a whole number of days, not {raw!r}") from None
            if value < 0:
                raise ValueError(f"{origin} must be 0 (keep for ever) or a number of days, not {value}")
            days[kind] = value
        return cls(**days)


def _prunable_deliveries(cutoff: datetime) -> ColumnElement[bool]:
    c = DELIVERIES.c
    return and_(c.received_at < cutoff, c.status == DeliveryStatus.PROCESSED)


def _prunable_assessments(cutoff: datetime) -> ColumnElement[bool]:
    c = ASSESSMENTS.c
    newer = ASSESSMENTS.alias("newer")
    superseded = exists().where(
        newer.c.ticket_source == c.ticket_source,
        newer.c.ticket_id == c.ticket_id,
        or_(
            newer.c.assessed_at > c.assessed_at,
            and_(newer.c.assessed_at == c.assessed_at, newer.c.id > c.id),
        ),
    )
    started = exists().where(ESCALATIONS.c.assessment_id == c.id)
    return and_(c.assessed_at < cutoff, superseded, ~started)


def _prunable_audit(cutoff: datetime) -> ColumnElement[bool]:
    c = AUDIT.c
    newer = AUDIT.alias("newer")
    superseded = exists().where(
        newer.c.target == c.target,
        newer.c.subject == c.subject,
        newer.c.action == c.action,
        newer.c.id > c.id,
    )
    open_escalation = exists().where(
        ESCALATIONS.c.id == c.escalation_id, ESCALATIONS.c.state.in_(sorted(OPEN_STATES))
    )
    return and_(c.at < cutoff, superseded, ~open_escalation)


# kind -> (table, its time column's name, the condition for a row older than the cutoff to go)
KINDS: dict[str, tuple[Table, str, Callable[[datetime], ColumnElement[bool]]]] = {
    "assessments": (ASSESSMENTS, "assessed_at", _prunable_assessments),
    "deliveries": (DELIVERIES, "received_at", _prunable_deliveries),
    "audit": (AUDIT, "at", _prunable_audit),
}


def prune(
    engine: Engine,
    windows: Windows,
    *,
    now: datetime,
    batch: int = DEFAULT_BATCH,
    dry_run: bool = False,
) -> dict[str, int]:
    """Delete (``dry_run``: count) the rows past their window, by kind. Assessments go before deliveries:
    a delivery deleted first would have its old assessments' references cleared, then them deleted too.
    Whatever a kept row points at and is deleted, the reference is cleared (every foreign key is SET NULL).
    ``now`` must carry its timezone."""
    if now.tzinfo is None:
        raise ValueError("now must carry its timezone (the store keeps UTC)")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    counts: dict[str, int] = {}
    for kind, (table, time_column, prunable) in KINDS.items():
        days = getattr(windows, kind)
        if days == 0:
            continue
        cutoff = now - timedelta(days=days)
        condition = prunable(cutoff)
        if dry_run:
            counts[kind] = _count(engine, table, condition)
        else:
            counts[kind] = _delete(engine, table, table.c[time_column] < cutoff, condition, batch)
    return counts


def _count(engine: Engine, table: Table, condition: ColumnElement[bool]) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table).where(condition)).scalar_one())


def _delete(
    engine: Engine, table: Table, older: ColumnElement[bool], condition: ColumnElement[bool], batch: int
) -> int:
    """Delete in id ranges over the rows ``older`` than the cutoff, ``condition`` deciding in each."""
    with engine.connect() as connection:
        low, high = _id_range(connection, table, older)
    if low is None or high is None:
        return 0
    deleted = 0
    start = low
    while start <= high:
        end = min(start + batch - 1, high)
        with engine.begin() as connection:
            ids = table.c.id
            result = connection.execute(delete(table).where(ids >= start, ids <= end, condition))
            deleted += int(result.rowcount or 0)
        start = end + 1
    return deleted


def _id_range(connection: Connection, table: Table, condition: ColumnElement[bool]) -> tuple[Any, Any]:
    """The lowest and highest ids of the rows matching ``condition``: the range the batches walk."""
    ids = table.c.id
    row = connection.execute(select(func.min(ids), func.max(ids)).where(condition)).one()
    return row[0], row[1]
