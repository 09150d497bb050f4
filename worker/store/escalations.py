"""Escalations: find, create and change them under a lock, so two jobs never open two issues.

The lock is the database's: SELECT ... FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite. The
guarantee that a ticket has at most one open escalation per destination is also the database's
(a partial unique index), so a race between two creators ends in one row, not two.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker.store import statements
from worker.store.lifecycle import OPEN_STATES, TERMINAL_STATES, EscalationState, check_transition
from worker.store.models import AuditEntry, Escalation, EscalationTicket, utcnow
from worker.store.records import ActionRecord, EscalationRecord, TicketRef

_OPEN_VALUES = frozenset(state.value for state in OPEN_STATES)


class TicketAlreadyEscalated(Exception):
    """The ticket already has another open escalation for that destination."""


@dataclass(frozen=True)
class EscalationDraft:
    """What a new escalation starts with when a lock-or-create finds none."""

    severity: str | None = None
    assessment_id: int | None = None
    state: EscalationState = EscalationState.SUGGESTED
    reason: str | None = None


class EscalationLock:
    """An escalation held for update until the ``with`` block ends; its changes commit together."""

    def __init__(self, session: Session, row: Escalation, created: bool) -> None:
        self._session = session
        self._row = row
        self.created = created

    @property
    def id(self) -> int:
        return self._row.id

    @property
    def record(self) -> EscalationRecord:
        self._session.flush()
        return EscalationRecord.of(self._row)

    def transition(self, state: EscalationState, *, reason: str | None = None) -> bool:
        """Move to ``state``; False when already there. Raises InvalidTransition for a forbidden move."""
        target = EscalationState(state)
        if not check_transition(EscalationState(self._row.state), target):
            return False
        self._row.state = target
        self._row.state_changed_at = utcnow()
        if reason is not None:
            self._row.reason = reason
        if target in TERMINAL_STATES:
            # Frees the (ticket, destination) slot: the next escalation of these tickets may open.
            for link in self._row.tickets:
                link.is_open = False
        return True

    def set_jira_key(self, key: str) -> None:
        self._row.jira_key = key

    def set_severity(self, severity: str | None) -> None:
        self._row.severity = severity

    def link_ticket(self, ticket: TicketRef) -> bool:
        """Put another ticket under this escalation; False when it already is.

        Raises TicketAlreadyEscalated when that ticket has a different open escalation for the same
        destination: merging two escalations is a decision for a person, not a side effect.
        """
        if any(t.ticket_source == ticket.source and t.ticket_id == ticket.id for t in self._row.tickets):
            return False
        link = EscalationTicket(
            ticket_source=ticket.source,
            ticket_id=ticket.id,
            destination=self._row.destination,
            is_open=self._row.state in OPEN_STATES,
            role="related",
        )
        try:
            with self._session.begin_nested():
                self._row.tickets.append(link)
                self._session.flush()
        except IntegrityError:
            if link in self._row.tickets:
                self._row.tickets.remove(link)
            raise TicketAlreadyEscalated(
                f"{ticket.source} ticket {ticket.id} already has an open {self._row.destination} escalation"
            ) from None
        return True

    def actions(self, *, target: str | None = None, limit: int = 20) -> list[ActionRecord]:
        """This escalation's audited actions, newest first, read inside the lock's own transaction (a
        second session would wait on the lock this one holds)."""
        query = (
            select(AuditEntry)
            .where(AuditEntry.escalation_id == self._row.id)
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        )
        if target is not None:
            query = query.where(AuditEntry.target == target)
        return [ActionRecord.of(row) for row in self._session.scalars(query)]

    def record_action(self, target: str, action: str, subject: str, **fields: Any) -> None:
        """Audit an action in the same transaction as the state change it caused; ``fields`` as
        ``statements.audit_values`` takes them, but ``escalation_id``, which is this one."""
        values = statements.audit_values(target, action, subject, escalation_id=self._row.id, **fields)
        self._session.add(AuditEntry(**values))


def _tickets_of(connection: Connection, escalation_id: int) -> tuple[TicketRef, ...]:
    """The escalation's tickets in linked order, as (source, id) alone: an outage's gathers hundreds."""
    links = connection.execute(statements.escalation_links(), {"escalation_id": escalation_id})
    return tuple(TicketRef(source, ticket_id) for source, ticket_id in links)


def _open_for(session: Session, ticket: TicketRef, destination: str, *, lock: bool) -> Escalation | None:
    query = (
        select(Escalation)
        .join(EscalationTicket, EscalationTicket.escalation_id == Escalation.id)
        .where(
            EscalationTicket.ticket_source == ticket.source,
            EscalationTicket.ticket_id == ticket.id,
            EscalationTicket.destination == destination,
            EscalationTicket.is_open.is_(True),
        )
    )
    if lock:
        query = query.with_for_update(of=Escalation)
    return session.scalars(query).one_or_none()


class EscalationVerbs:
    """The escalation half of the Store (mixed into it); needs ``engine`` and ``_session(write=...)``."""

    engine: Engine

    def _session(self, *, write: bool = False, single: bool = False) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _connect(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    @contextmanager
    def lock_open_escalation(
        self, ticket: TicketRef, destination: str, *, create: EscalationDraft | None = None
    ) -> Iterator[EscalationLock | None]:
        """The open escalation of ``ticket`` for ``destination``, locked; created from ``create``
        when there is none (None when there is none and no draft)."""
        with self._session(write=True) as session:
            row = _open_for(session, ticket, destination, lock=True)
            created = False
            if row is None and create is not None:
                row, created = _create(session, ticket, destination, create)
            yield EscalationLock(session, row, created) if row is not None else None

    @contextmanager
    def lock_escalation(self, escalation_id: int) -> Iterator[EscalationLock]:
        """An escalation by id, locked; KeyError when there is no such escalation."""
        with self._session(write=True) as session:
            row = session.scalars(
                select(Escalation).where(Escalation.id == escalation_id).with_for_update()
            ).one_or_none()
            if row is None:
                raise KeyError(f"no escalation {escalation_id}")
            yield EscalationLock(session, row, created=False)

    def join_escalation(
        self,
        escalation_id: int,
        ticket: TicketRef,
        *,
        states: Collection[EscalationState],
        audit: Mapping[str, Any] | None = None,
    ) -> EscalationRecord | None:
        """Put ``ticket`` under the escalation if it is in one of ``states``, with ``audit`` (the
        arguments of ``record_action`` but ``escalation_id``) in the same transaction. The escalation as
        it then stands, or None when not joined: another state, the ticket under it already, or under
        another open escalation for that destination. KeyError when there is no such escalation.

        Under the escalation's row lock (a transition waits for it, so no link opens under an escalation
        closing meanwhile). PostgreSQL: the lock, the link and the audit entry are one statement
        (``statements.join_escalation``) on the job's own connection, so the row is held for one round trip
        (in an outage every new report joins the same escalation), then the tickets are read. SQLite: four
        statements in a transaction. The ORM's lock, savepoint and flush took seven. The tickets are read
        back as (source, id) alone: an outage's escalation gathers hundreds."""
        if self.engine.dialect.name == "postgresql":
            return self._join_in_one(escalation_id, ticket, states, audit)
        with self._session(write=True) as session:
            connection = session.connection()
            key = {"escalation_id": escalation_id}
            row = connection.execute(statements.lock_escalation_row(), key).first()
            if row is None:
                raise KeyError(f"no escalation {escalation_id}")
            state = EscalationState(row.state)
            if state not in states:
                return None
            link = {
                **key,
                "ticket_source": ticket.source,
                "ticket_id": ticket.id,
                "destination": row.destination,
                "is_open": state in OPEN_STATES,
                "role": "related",
            }
            if connection.execute(statements.link_ticket(self.engine.dialect.name), link).first() is None:
                return None
            if audit is not None:
                connection.execute(
                    statements.record_action(), statements.audit_values(**audit, escalation_id=escalation_id)
                )
            tickets = _tickets_of(connection, escalation_id)
        return EscalationRecord.of(row, tickets)

    def _join_in_one(
        self,
        escalation_id: int,
        ticket: TicketRef,
        states: Collection[EscalationState],
        audit: Mapping[str, Any] | None,
    ) -> EscalationRecord | None:
        values: dict[str, Any] = {
            "escalation_id": escalation_id,
            "states": [EscalationState(s).value for s in states],
            "ticket_source": ticket.source,
            "ticket_id": ticket.id,
            "linked_at": utcnow(),
        }
        if audit is not None:
            entry = statements.audit_values(**audit, escalation_id=escalation_id)
            values.update({f"a_{name}": value for name, value in entry.items()})
        statement = statements.join_escalation(_OPEN_VALUES, audit is not None)
        with self._connect(write=True) as connection:
            row = connection.execute(statement, values).first()
            if row is None:
                raise KeyError(f"no escalation {escalation_id}")
            if not row.joined:
                return None
            tickets = _tickets_of(connection, escalation_id)
        return EscalationRecord.of(row, tickets)

    def open_new_escalation(
        self, ticket: TicketRef, destination: str, draft: EscalationDraft
    ) -> EscalationRecord | None:
        """A new escalation of ``ticket`` for ``destination`` from ``draft``; None when the ticket has an open
        one for that destination already (``lock_open_escalation`` then finds and locks it). PostgreSQL:
        one statement on the job's own connection, where the lock-or-create takes a transaction of seven
        on a second one; the partial unique index on open links refuses a second open escalation, the
        escalation's row included, so two jobs racing to open one leave one."""
        state = EscalationState(draft.state)
        if state in TERMINAL_STATES:
            raise ValueError(f"a new escalation cannot start {state.value}")
        if self.engine.dialect.name != "postgresql":
            with self.lock_open_escalation(ticket, destination, create=draft) as lock:
                assert lock is not None  # a draft was given
                return lock.record if lock.created else None
        now = utcnow()
        values = {
            "destination": destination,
            "state": state,
            "severity": draft.severity,
            "assessment_id": draft.assessment_id,
            "reason": draft.reason,
            "created_at": now,
            "updated_at": now,
            "state_changed_at": now,
            "ticket_source": ticket.source,
            "ticket_id": ticket.id,
        }
        try:
            with self._connect(write=True) as connection:
                row = connection.execute(statements.open_escalation(), values).one()
        except IntegrityError:
            return None
        return EscalationRecord.of(row, (ticket,))

    def get_or_create_escalation(
        self, ticket: TicketRef, destination: str, draft: EscalationDraft | None = None
    ) -> tuple[EscalationRecord, bool]:
        with self.lock_open_escalation(ticket, destination, create=draft or EscalationDraft()) as lock:
            assert lock is not None
            return lock.record, lock.created

    def transition_escalation(
        self, escalation_id: int, state: EscalationState, *, reason: str | None = None
    ) -> EscalationRecord:
        with self.lock_escalation(escalation_id) as lock:
            lock.transition(state, reason=reason)
            return lock.record

    def open_escalation(self, ticket: TicketRef, destination: str) -> EscalationRecord | None:
        with self._session() as session:
            row = _open_for(session, ticket, destination, lock=False)
            return EscalationRecord.of(row) if row is not None else None

    def escalation_by_jira_key(self, jira_key: str) -> EscalationRecord | None:
        with self._session() as session:
            row = session.scalars(select(Escalation).where(Escalation.jira_key == jira_key)).one_or_none()
            return EscalationRecord.of(row) if row is not None else None

    def escalations_in(self, states: Iterable[EscalationState] = OPEN_STATES) -> list[EscalationRecord]:
        with self._session() as session:
            query = select(Escalation).where(Escalation.state.in_(list(states))).order_by(Escalation.id)
            return [EscalationRecord.of(row) for row in session.scalars(query)]


def _create(
    session: Session, ticket: TicketRef, destination: str, draft: EscalationDraft
) -> tuple[Escalation, bool]:
    state = EscalationState(draft.state)
    if state in TERMINAL_STATES:
        raise ValueError(f"a new escalation cannot start {state.value}")
    row = Escalation(
        destination=destination,
        state=state,
        severity=draft.severity,
        assessment_id=draft.assessment_id,
        reason=draft.reason,
    )
    row.tickets.append(
        EscalationTicket(
            ticket_source=ticket.source,
            ticket_id=ticket.id,
            destination=destination,
            is_open=True,
            role="primary",
        )
    )
    try:
        # A savepoint: on PostgreSQL a concurrent creator's uncommitted row makes this insert wait,
        # then fail on the partial unique index once that creator commits; we then lock theirs.
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        if row in session:
            session.expunge(row)
        existing = _open_for(session, ticket, destination, lock=True)
        if existing is None:
            raise
        return existing, False
    return row, True
