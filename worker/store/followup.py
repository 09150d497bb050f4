"""The Store's verbs for issue 6: the symptom index rows, the index's named state, per-escalation
tracking (last movement, stall, rollup, regression) and ledger look-ups in the audit log.

Mixed into ``Store`` like ``EscalationVerbs``; every verb is one short transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from worker.store import statements
from worker.store.followup_models import EscalationTracking, IndexState, SymptomRow
from worker.store.models import EscalationTicket, utcnow
from worker.store.records import (
    ActionRecord,
    EscalationRecord,
    TicketRef,
    escalations_from_grouped_rows,
    escalations_from_rows,
)

_SYMPTOMS = statements.SYMPTOMS
_SYNC_COLUMNS = statements.SYMPTOM_SYNC_COLUMNS
_UPSERT_BATCH = 500


@dataclass(frozen=True)
class SymptomEntry:
    """One ticket to index (what goes in)."""

    source: str
    ticket_id: str
    subject: str
    description: str
    text_hash: str
    matcher: str
    embedding: bytes | None
    organization_id: str | None = None
    requester_id: str | None = None
    status: str | None = None
    tags: tuple[str, ...] = ()
    custom_fields: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class SymptomRecord:
    """One indexed ticket (what comes out). ``subject``/``description``/``tags``/``custom_fields`` are
    empty in sync reads, which carry only what the matrix needs."""

    id: int
    source: str
    ticket_id: str
    organization_id: str | None
    created_at: datetime | None
    updated_at: datetime | None
    indexed_at: datetime
    text_hash: str
    matcher: str
    embedding: bytes | None
    requester_id: str | None = None
    status: str | None = None
    tags: tuple[str, ...] = ()
    custom_fields: Mapping[str, Any] = field(default_factory=dict)
    subject: str = ""
    description: str = ""

    @property
    def ref(self) -> TicketRef:
        return TicketRef(self.source, self.ticket_id)


@dataclass(frozen=True)
class TrackingRecord:
    escalation_id: int
    last_movement_at: datetime | None = None
    last_movement: str | None = None
    jira_status: str | None = None
    resolved_at: datetime | None = None
    stalled_since: datetime | None = None
    missed_intervals: int = 0
    rollup: Mapping[str, Any] | None = None
    regression_of: int | None = None


_TRACKING_FIELDS = frozenset(
    {
        "last_movement_at",
        "last_movement",
        "jira_status",
        "resolved_at",
        "stalled_since",
        "missed_intervals",
        "rollup",
        "regression_of",
    }
)


def _full(row: SymptomRow | Row[Any]) -> SymptomRecord:
    return SymptomRecord(
        id=row.id,
        source=row.source,
        ticket_id=row.ticket_id,
        organization_id=row.organization_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        indexed_at=row.indexed_at,
        text_hash=row.text_hash,
        matcher=row.matcher,
        embedding=row.embedding,
        requester_id=row.requester_id,
        status=row.status,
        tags=tuple(row.tags or ()),
        custom_fields=dict(row.custom_fields or {}),
        subject=row.subject,
        description=row.description,
    )


def _tracking(row: EscalationTracking | Row[Any] | None, escalation_id: int) -> TrackingRecord:
    if row is None:
        return TrackingRecord(escalation_id)
    return TrackingRecord(
        escalation_id=row.escalation_id,
        last_movement_at=row.last_movement_at,
        last_movement=row.last_movement,
        jira_status=row.jira_status,
        resolved_at=row.resolved_at,
        stalled_since=row.stalled_since,
        missed_intervals=row.missed_intervals or 0,
        rollup=row.rollup,
        regression_of=row.regression_of,
    )


class FollowupVerbs:
    """The issue-6 half of the Store (mixed into it); needs ``engine``, ``_session`` and ``_connect``."""

    engine: Engine

    def _session(self, *, write: bool = False, single: bool = False) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _connect(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    # -- the symptom index --------------------------------------------------------------------

    def upsert_symptoms(self, entries: Sequence[SymptomEntry]) -> list[SymptomRecord]:
        """Insert or update tickets in the index (one row per source and ticket id); returns the rows as
        written, whole (``symptom_rows``' shape: the synced columns as the database returned them, the rest
        as sent), so the writer's copy takes them as they are and keeps them for its matches."""
        if not entries:
            return []
        now = utcnow()
        written: list[SymptomRecord] = []
        dialect = self.engine.dialect.name
        # In key order: jobs writing some of the same rows (two backfilling one history) lock them in the
        # same order, so one waits for the other instead of both being caught in a deadlock.
        entries = sorted(entries, key=lambda e: (e.source, e.ticket_id))
        # One statement needs no transaction around it (the job's connection); several batches share one.
        block = self._connect(write=True) if len(entries) <= _UPSERT_BATCH else self._session(write=True)
        with block as connection:
            for start in range(0, len(entries), _UPSERT_BATCH):
                batch = entries[start : start + _UPSERT_BATCH]
                values = [_values(e, now) for e in batch]
                result = connection.execute(statements.upsert_symptoms(dialect, tuple(values[0])), values)
                sent = {(e.source, e.ticket_id): e for e in batch}
                written += [_whole(SymptomRecord(*row), sent[row.source, row.ticket_id]) for row in result]
        return written

    def symptom_rows_since(
        self, indexed_after: datetime | None, *, after_id: int | None = None, limit: int | None = None
    ) -> list[SymptomRecord]:
        """Rows written after ``indexed_after`` (all when None), in write order, without their text.

        With ``after_id`` the position is (``indexed_after``, ``after_id``): rows written at that same
        instant with a higher id come too, which is how a long read continues page by page."""
        c = _SYMPTOMS.c
        query = select(*_SYNC_COLUMNS).order_by(c.indexed_at, c.id)
        if indexed_after is not None and after_id is None:
            query = query.where(c.indexed_at > indexed_after)
        elif indexed_after is not None:
            query = query.where(
                or_(c.indexed_at > indexed_after, and_(c.indexed_at == indexed_after, c.id > after_id))
            )
        if limit is not None:
            query = query.limit(limit)
        with self._connect() as connection:
            return [SymptomRecord(*row) for row in connection.execute(query)]

    def symptom_changes(self, indexed_after: datetime) -> tuple[int, list[tuple[int, datetime]]]:
        """The highest row id (a copy that has seen a higher one is looking at a database since reset) and
        (id, indexed_at) of the rows written after ``indexed_after`` (what a copy checks before it reads
        rows in full): what a copy reads on every sync, in one round trip."""
        top, found = 0, []
        with self._connect() as connection:
            rows = connection.execute(statements.symptom_changes(), {"since": indexed_after})
            for kind, row_id, at in rows:
                if kind == 0:
                    top = int(row_id or 0)
                else:
                    found.append((row_id, at))
        return top, found

    def symptom_sync_rows(self, ids: Sequence[int]) -> list[SymptomRecord]:
        """Rows by id as ``symptom_rows_since`` reads them (without their text), in write order."""
        if not ids:
            return []
        c = _SYMPTOMS.c
        query = select(*_SYNC_COLUMNS).where(c.id.in_(list(ids))).order_by(c.indexed_at, c.id)
        with self._connect() as connection:
            return [SymptomRecord(*row) for row in connection.execute(query)]

    def symptom_rows(self, ids: Iterable[int]) -> list[SymptomRecord]:
        """Full rows by id, in the order given; ids no longer stored are skipped."""
        wanted = list(dict.fromkeys(int(i) for i in ids))
        if not wanted:
            return []
        with self._connect() as connection:
            found = {r.id: _full(r) for r in connection.execute(statements.symptom_rows(), {"ids": wanted})}
        return [found[i] for i in wanted if i in found]

    def symptom_row(self, ticket: TicketRef) -> SymptomRecord | None:
        with self._session() as session:
            row = session.scalars(
                select(SymptomRow).where(
                    SymptomRow.source == ticket.source, SymptomRow.ticket_id == ticket.id
                )
            ).one_or_none()
            return _full(row) if row is not None else None

    def symptom_rows_for(self, tickets: Iterable[TicketRef]) -> dict[TicketRef, SymptomRecord]:
        """Full rows of the given tickets that are indexed, in one query per helpdesk."""
        by_source: dict[str, set[str]] = {}
        for t in tickets:
            by_source.setdefault(t.source, set()).add(t.id)
        found: dict[TicketRef, SymptomRecord] = {}
        c = _SYMPTOMS.c
        with self._connect() as connection:
            for source, ids in by_source.items():
                query = select(_SYMPTOMS).where(c.source == source, c.ticket_id.in_(sorted(ids)))
                for row in connection.execute(query):
                    found[TicketRef(row.source, row.ticket_id)] = _full(row)
        return found

    def count_symptoms(self) -> int:
        with self._session() as session:
            return int(session.scalar(select(func.count()).select_from(SymptomRow)) or 0)

    def prune_symptoms(self, created_before: datetime) -> int:
        """Forget tickets created before the cutoff, except those under an escalation: their symptom is
        what a resurfacing problem is recognised by."""
        linked = exists().where(
            and_(
                EscalationTicket.ticket_source == SymptomRow.source,
                EscalationTicket.ticket_id == SymptomRow.ticket_id,
            )
        )
        with self._session(write=True) as session:
            result = session.execute(
                delete(SymptomRow).where(SymptomRow.created_at < created_before, ~linked)
            )
            return int(result.rowcount or 0)

    def index_state(self, name: str) -> dict[str, Any] | None:
        with self._session() as session:
            row = session.get(IndexState, name)
            return dict(row.value) if row is not None else None

    def set_index_state(self, name: str, value: Mapping[str, Any]) -> None:
        values = {"name": name, "value": dict(value), "updated_at": utcnow()}
        with self._connect(write=True) as connection:
            connection.execute(statements.set_index_state(self.engine.dialect.name), values)

    # -- escalations seen from their tickets --------------------------------------------------

    def escalation(self, escalation_id: int) -> EscalationRecord | None:
        """The escalation with all its tickets, in one statement."""
        with self._connect() as connection:
            rows = connection.execute(
                statements.escalation_with_tickets(), {"escalation_id": escalation_id}
            ).all()
        return escalations_from_rows(rows).get(escalation_id)

    def escalations_of_tickets(
        self,
        tickets: Iterable[TicketRef],
        *,
        destinations: Iterable[str] | None = None,
        own: TicketRef | None = None,
        open_links: bool = False,
    ) -> dict[TicketRef, list[EscalationRecord]]:
        """Every escalation each ticket is under (any state), oldest first, with all its tickets. With
        ``destinations``, only those going there, but for the escalations of ``own``, which come whatever
        their destination: what ``rollup.place`` asks (a ticket's own escalations, the groupable ones of
        its look-alikes). Then only ``own``'s come with all their tickets; the others hold the asked
        tickets only, since an outage's escalation can gather thousands and every report reads it.
        ``open_links`` (without ``destinations``): only escalations an asked ticket's link is open in."""
        by_source: dict[str, set[str]] = {}
        for t in tickets:
            by_source.setdefault(t.source, set()).add(t.id)
        if not by_source:
            return {}
        wanted = {TicketRef(source, i) for source, ids in by_source.items() for i in ids}
        values: dict[str, Any] = {}
        for n, (source, ids) in enumerate(by_source.items()):
            values[f"source_{n}"], values[f"ids_{n}"] = source, sorted(ids)
        filtered = destinations is not None
        if filtered:
            values["destinations"] = sorted(set(destinations or ()))
            values["own_source"], values["own_id"] = (own.source, own.id) if own else (None, None)
        with self._connect() as connection:
            arrays = connection.dialect.name == "postgresql"
            query = statements.escalations_under(len(by_source), filtered, arrays, open_links)
            rows = connection.execute(query, values)
            records = escalations_from_grouped_rows(rows) if arrays else escalations_from_rows(rows)
        found: dict[TicketRef, list[EscalationRecord]] = {}
        for record in records.values():  # oldest first; one grouped escalation is built once
            for ref in record.tickets:
                if ref in wanted:
                    found.setdefault(ref, []).append(record)
        return found

    def escalations_for_ticket(self, ticket: TicketRef, *, open_only: bool = False) -> list[EscalationRecord]:
        """The escalations the ticket is under, oldest first, with all their tickets; ``open_only``: those
        its link is open in."""
        return self.escalations_of_tickets([ticket], open_links=open_only).get(ticket, [])

    # -- tracking -----------------------------------------------------------------------------

    def tracking(self, escalation_id: int) -> TrackingRecord:
        with self._connect() as connection:
            row = connection.execute(statements.tracking(), {"escalation_id": escalation_id}).one_or_none()
        return _tracking(row, escalation_id)

    def update_tracking(self, escalation_id: int, **changes: Any) -> TrackingRecord:
        """Set some of an escalation's tracking fields (the row is made on first use)."""
        unknown = set(changes) - _TRACKING_FIELDS
        if unknown:
            raise TypeError(f"unknown tracking field(s) {sorted(unknown)}")
        statement = statements.set_tracking(self.engine.dialect.name, tuple(sorted(changes)))
        values = {**changes, "escalation_id": escalation_id, "updated_at": utcnow()}
        with self._connect(write=True) as connection:
            row = connection.execute(statement, values).one()
        return _tracking(row, escalation_id)

    def set_rollup(self, escalation_id: int, rollup: Mapping[str, Any]) -> bool:
        """Keep ``rollup`` as the escalation's; True when it differs from the one kept (the row is then
        written; made on first use). One statement: the comparison is the database's."""
        values = {"escalation_id": escalation_id, "rollup": dict(rollup), "updated_at": utcnow()}
        with self._connect(write=True) as connection:
            written = connection.execute(statements.set_rollup(self.engine.dialect.name), values).first()
        return written is not None

    def trackings(self, escalation_ids: Iterable[int]) -> dict[int, TrackingRecord]:
        ids = sorted(set(escalation_ids))
        with self._session() as session:
            rows = (
                {
                    r.escalation_id: r
                    for r in session.scalars(
                        select(EscalationTracking).where(EscalationTracking.escalation_id.in_(ids))
                    )
                }
                if ids
                else {}
            )
            return {i: _tracking(rows.get(i), i) for i in ids}

    # -- the audit log as a ledger ------------------------------------------------------------

    def ledger(
        self,
        actions: AbstractSet[str] | Sequence[str],
        *,
        escalation_id: int | None = None,
        subject: str | None = None,
        target: str | None = None,
        limit: int = 1000,
    ) -> list[ActionRecord]:
        """Audited actions of the given kinds, newest first: what a retried job asks before acting."""
        given = {"escalation_id": escalation_id, "subject": subject, "target": target}
        values: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
        query = statements.audit_entries(tuple(values), in_actions=True)
        with self._connect() as connection:
            rows = connection.execute(query, {**values, "actions": list(actions), "limit": limit})
            return [ActionRecord.of(row) for row in rows]

    def ledger_subjects(self, actions: AbstractSet[str], *, escalation_id: int) -> dict[str, set[str]]:
        """The subjects of the escalation's audited actions of the given kinds, by action: a grouped
        issue's links and join comments, one per ticket, read without the entries themselves."""
        found: dict[str, set[str]] = {action: set() for action in actions}
        values = {"escalation_id": escalation_id, "actions": sorted(actions)}
        with self._connect() as connection:
            for action, subject in connection.execute(statements.done_for_escalation(), values):
                found[action].add(subject)
        return found

    def ledger_has(
        self, action: str, subject: str, *, escalation_id: int | None = None, target: str | None = None
    ) -> bool:
        return bool(
            self.ledger({action}, escalation_id=escalation_id, subject=subject, target=target, limit=1)
        )


def _whole(row: SymptomRecord, entry: SymptomEntry) -> SymptomRecord:
    """A row just written as ``symptom_rows`` reads it back (``_full`` of what ``_values`` stored)."""
    return replace(
        row,
        requester_id=entry.requester_id,
        status=entry.status,
        tags=tuple(sorted(entry.tags)),
        custom_fields=dict(entry.custom_fields),
        subject=entry.subject,
        description=entry.description,
    )


def _values(entry: SymptomEntry, now: datetime) -> dict[str, Any]:
    return {
        "source": entry.source,
        "ticket_id": entry.ticket_id,
        "organization_id": entry.organization_id,
        "requester_id": entry.requester_id,
        "status": entry.status,
        "tags": sorted(entry.tags),
        "custom_fields": dict(entry.custom_fields) or None,
        "subject": entry.subject,
        "description": entry.description,
        "text_hash": entry.text_hash,
        "matcher": entry.matcher,
        "embedding": entry.embedding,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
        "indexed_at": now,
    }
