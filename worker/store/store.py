"""The Store: every read and write of our own state goes through its verbs.

One short transaction per verb; callers never see a session. The escalation verbs live in
``escalations.py`` and are mixed in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, event, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.store import migrate, statements
from worker.store.engine import immediate, make_engine
from worker.store.escalations import EscalationVerbs
from worker.store.followup import FollowupVerbs  # issue 6: symptom index, tracking, ledger
from worker.store.lifecycle import DeliveryStatus
from worker.store.models import Delivery, utcnow
from worker.store.records import (
    ActionRecord,
    AssessmentRecord,
    AssessmentStamp,
    DeliveryRecord,
    LastAction,
    TicketRef,
)


def _refuse_writes(session: Session, *_args: Any) -> None:
    raise RuntimeError("a read-only store session tried to write: use _session(write=True)")


class _ReadSession(Session):
    """A session that refuses to flush: the reads, which PostgreSQL runs without a transaction."""


event.listen(_ReadSession, "before_flush", _refuse_writes)


class Store(EscalationVerbs, FollowupVerbs):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._reads: sessionmaker[Session] = self._sessions
        self._single_writes = self._sessions
        self._autocommit: Engine | None = None
        # The connection a job holds for its reads and one-statement writes (``pinned``), per thread.
        self._pinned: ContextVar[Connection | None] = ContextVar(f"escalate_store_{id(self)}", default=None)
        if engine.dialect.name == "postgresql":
            # Reads without BEGIN and COMMIT: under READ COMMITTED every statement takes its own snapshot
            # even inside a transaction, so autocommit changes nothing a read sees, and saves two of its
            # three round trips (an assessment makes some thirty reads). SQLite's BEGIN costs no round trip.
            self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
            self._reads = sessionmaker(self._autocommit, class_=_ReadSession, expire_on_commit=False)
            # A write that is one statement (an INSERT, an upsert, an UPDATE by key) is atomic without
            # a transaction around it: one round trip instead of three.
            self._single_writes = sessionmaker(self._autocommit, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, **engine_kwargs: Any) -> Store:
        return cls(make_engine(url, **engine_kwargs))

    @contextmanager
    def _session(self, *, write: bool = False, single: bool = False) -> Iterator[Session]:
        """One transaction. ``write``: it will write, so on SQLite it takes the write lock up front.

        A deferred SQLite transaction that reads and then writes fails at once ("database is
        locked") when another connection committed in between; taking the lock first makes it wait
        its turn instead (busy timeout). PostgreSQL is unaffected.

        ``single``: the block is exactly one writing statement (one flush of one row, one upsert, one
        UPDATE by key), which PostgreSQL runs without BEGIN and COMMIT. Never for read-then-write.
        """
        pinned = self._fit_pinned() if single or not write else None
        if pinned is not None:
            kind = Session if write else _ReadSession
            with kind(bind=pinned, expire_on_commit=False) as session, session.begin():
                yield session
            return
        if not write:
            with self._reads.begin() as session:
                yield session
            return
        with immediate(), (self._single_writes if single else self._sessions).begin() as session:
            yield session

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Within this block (a job), this thread's reads and one-statement writes share one connection.

        On PostgreSQL that is one pool checkout and one liveness ping for the whole job instead of one
        for each of its dozen-odd statements. The connection runs in autocommit, so holding it across the
        job's Zendesk and Jira calls holds no transaction and no lock. Blocks that read then write still
        take a connection of their own, with their own transaction. SQLite keeps one connection per
        verb: a connection held there would keep its read snapshot.
        """
        if self._autocommit is None or self._pinned.get() is not None:
            yield
            return
        token = self._pinned.set(self._autocommit.connect())
        try:
            yield
        finally:
            connection = self._pinned.get()
            self._pinned.reset(token)
            if connection is not None:
                _close(connection)

    def _fit_pinned(self) -> Connection | None:
        """This thread's pinned connection, if any, able to run a statement. One the server dropped (a
        restart, a failover) or the job's timeout left waiting for a query's answer (the timeout is raised
        inside the job, between psycopg's send and receive too) is replaced: left in place, every later
        statement of the job would fail alike, its failure record included."""
        pinned = self._pinned.get()
        if pinned is not None and _unfit(pinned):
            assert self._autocommit is not None  # only PostgreSQL's connections are pinned
            _close(pinned)
            pinned = self._autocommit.connect()
            self._pinned.set(pinned)
        return pinned

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[Connection]:
        """A connection for one Core statement, a read or a one-statement write, without the ORM's
        unit of work: the job's pinned connection, else one from the pool (autocommit on PostgreSQL;
        on SQLite a transaction, which a write begins IMMEDIATE)."""
        pinned = self._fit_pinned()
        if pinned is not None:
            yield pinned
        elif self._autocommit is not None:
            with self._autocommit.connect() as connection:
                yield connection
        elif write:
            with immediate(), self.engine.begin() as connection:
                yield connection
        else:
            with self.engine.connect() as connection:
                yield connection

    # -- the database itself ------------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (alembic, worker/migrations/)."""
        migrate.upgrade(self.engine, revision)

    def ping(self) -> None:
        """Raises when the database cannot answer: for /readyz."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()

    # -- deliveries ---------------------------------------------------------------------------

    def record_delivery(
        self,
        source: str,
        delivery_id: str,
        *,
        kind: str,
        subject: str,
        status: DeliveryStatus = DeliveryStatus.RECEIVED,
    ) -> bool:
        """Record a delivery; False when it was already recorded (the unique constraint decides)."""
        try:
            with self._session(write=True) as session:
                session.add(
                    Delivery(
                        source=source,
                        delivery_id=delivery_id,
                        kind=kind,
                        subject=subject,
                        status=status,
                        attempts=0,
                    )
                )
        except IntegrityError:
            if self.get_delivery(source, delivery_id) is None:
                raise
            return False
        return True

    def start_delivery(self, source: str, delivery_id: str, *, kind: str, subject: str) -> bool:
        """Mark a delivery as being processed, recording it if needed; False when already processed.

        This is what makes a job idempotent across RQ's at-least-once execution and redeliveries
        that arrive after the intake's dedupe mark expired. One upsert: the conflicting row is locked
        by it, so two runs of one delivery cannot both find it unprocessed and go on unseen.
        """
        stmt = statements.start_delivery(self.engine.dialect.name)
        values = {"source": source, "delivery_id": delivery_id, "kind": kind, "subject": subject}
        with self._connect(write=True) as connection:
            return connection.execute(stmt, values).first() is not None

    def finish_delivery(
        self, source: str, delivery_id: str, status: DeliveryStatus, *, error: str | None = None
    ) -> None:
        status = DeliveryStatus(status)
        values: dict[str, Any] = {"d_source": source, "d_id": delivery_id, "d_status": status}
        values["d_error"] = error
        processed = status is DeliveryStatus.PROCESSED
        if processed:
            values["d_at"] = utcnow()
        with self._connect(write=True) as connection:
            connection.execute(statements.finish_delivery(processed), values)

    def forget_delivery(self, source: str, delivery_id: str) -> None:
        """Remove a delivery that was recorded but could not be queued, so the sender's retry counts."""
        with self._session(write=True) as session:
            row = _delivery(session, source, delivery_id)
            if row is not None:
                session.delete(row)

    def get_delivery(self, source: str, delivery_id: str) -> DeliveryRecord | None:
        with self._session() as session:
            row = _delivery(session, source, delivery_id)
            return DeliveryRecord.of(row) if row is not None else None

    # -- assessments --------------------------------------------------------------------------

    def record_assessment(
        self,
        ticket: TicketRef,
        decision: Mapping[str, Any],
        *,
        ruleset_version: str,
        matcher: str | None = None,
        trace: Any = None,
        delivery: tuple[str, str] | None = None,
        last_action: str | None = None,
    ) -> AssessmentRecord:
        """Keep one evaluation of a ticket. ``decision`` is the Decision JSON (DESIGN.md); the columns
        copied out of it are there for queries, the JSON stays the truth. ``last_action``: the record
        carries the latest audit entry of that action on the ticket, read by the same statement."""
        values: dict[str, Any] = {
            "ticket_source": ticket.source,
            "ticket_id": ticket.id,
            "escalate": bool(decision.get("escalate")),
            "destination": decision.get("destination"),
            "severity": decision.get("severity"),
            "decision": dict(decision),
            "trace": trace,
            "ruleset_version": ruleset_version,
            "matcher": matcher,
        }
        if delivery is not None:  # looked up by the INSERT itself: one statement
            values["d_source"], values["d_id"] = delivery
        if last_action is not None:
            values.update(_action_binds(ticket, last_action))
        # Not the whole row back: the decision is what was just sent, and reading it again costs a parse.
        statement = statements.record_assessment(delivery is not None, last_action is not None)
        with self._connect(write=True) as connection:
            row = connection.execute(statement, values).one()
        return AssessmentRecord(
            row[0],
            ticket,
            row[1],
            values["escalate"],
            values["destination"],
            values["severity"],
            values["decision"],
            trace,
            ruleset_version,
            matcher,
            LastAction.of(*row[2:]) if last_action is not None else None,
        )

    def latest_assessment(self, ticket: TicketRef) -> AssessmentRecord | None:
        found = self.assessments(ticket, limit=1)
        return found[0] if found else None

    def assessment_stamp(
        self, ticket: TicketRef, *, last_action: str | None = None
    ) -> AssessmentStamp | None:
        """The ticket's latest assessment, without its decision but for the verdict: what a repeated
        event checks before judging again (a decision with its package is many kilobytes of JSON).
        ``last_action``: with the latest audit entry of that action on the ticket, in the same statement."""
        values = {"source": ticket.source, "ticket": ticket.id}
        if last_action is not None:
            values.update(_action_binds(ticket, last_action))
        with self._connect() as connection:
            row = connection.execute(statements.assessment_stamp(last_action is not None), values).first()
        if row is None:
            return None
        return AssessmentStamp(*row[:5], LastAction.of(*row[5:]) if last_action is not None else None)

    def assessments(self, ticket: TicketRef, *, limit: int = 20) -> list[AssessmentRecord]:
        """The ticket's assessments, newest first."""
        table = statements.ASSESSMENTS
        query = (
            select(table)
            .where(table.c.ticket_source == ticket.source, table.c.ticket_id == ticket.id)
            .order_by(table.c.assessed_at.desc(), table.c.id.desc())
            .limit(limit)
        )
        with self._connect() as connection:
            return [AssessmentRecord.of(row) for row in connection.execute(query)]

    # -- audit log ----------------------------------------------------------------------------

    def record_action(self, target: str, action: str, subject: str, **fields: Any) -> ActionRecord:
        """Audit one action on Zendesk or Jira (``target``), e.g. ``add_internal_note`` on ticket 42.
        ``fields``: the rest of the entry, as ``statements.audit_values`` takes them (outcome, actor,
        escalation_id, delivery_id, detail, error)."""
        values = statements.audit_values(target, action, subject, **fields)
        with self._connect(write=True) as connection:
            return ActionRecord.of(connection.execute(statements.record_action(), values).one())

    def actions(
        self,
        *,
        target: str | None = None,
        subject: str | None = None,
        escalation_id: int | None = None,
        action: str | None = None,
        delivery_id: str | None = None,
        limit: int = 100,
    ) -> list[ActionRecord]:
        """Audited actions, newest first, optionally narrowed to a target, subject, escalation, action or
        delivery."""
        given = {
            "target": target,
            "subject": subject,
            "escalation_id": escalation_id,
            "action": action,
            "delivery_id": delivery_id,
        }
        values = {name: value for name, value in given.items() if value is not None}
        query = statements.audit_entries(tuple(values))
        with self._connect() as connection:
            return [ActionRecord.of(row) for row in connection.execute(query, {**values, "limit": limit})]


# libpq's PQTRANS_ACTIVE (psycopg's TransactionStatus.ACTIVE): a command was sent and its answer not read.
_COMMAND_IN_PROGRESS = 1


def _unfit(connection: Connection) -> bool:
    """Whether a job's pinned connection cannot run a statement: invalidated (the server dropped it), or
    still busy with a query whose answer was never read."""
    if connection.invalidated:
        return True
    pgconn = getattr(connection.connection.dbapi_connection, "pgconn", None)  # psycopg's libpq connection
    return pgconn is not None and pgconn.transaction_status == _COMMAND_IN_PROGRESS


def _close(connection: Connection) -> None:
    """Give a pinned connection back; one that cannot be reset (busy with an unread answer: the reset's
    ROLLBACK would raise) is dropped instead."""
    if _unfit(connection) and not connection.invalidated:
        connection.invalidate()
    connection.close()


def _action_binds(ticket: TicketRef, action: str) -> dict[str, str]:
    """The parameters of ``statements.latest_action``."""
    return {"a_target": ticket.source, "a_subject": ticket.id, "a_action": action}


def _delivery(session: Session, source: str, delivery_id: str) -> Delivery | None:
    query = select(Delivery).where(Delivery.source == source, Delivery.delivery_id == delivery_id)
    return session.scalars(query).one_or_none()
