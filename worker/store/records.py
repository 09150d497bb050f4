"""What the Store hands out: frozen snapshots, never live ORM objects bound to a closed session."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row

from worker.store.lifecycle import DeliveryStatus, EscalationState
from worker.store.models import Assessment, AuditEntry, Delivery, Escalation


@dataclass(frozen=True)
class TicketRef:
    """A helpdesk ticket: the helpdesk (``zendesk``) and its id there, kept as text."""

    source: str
    id: str

    @classmethod
    def of(cls, source: str, ticket_id: int | str) -> TicketRef:
        text = str(ticket_id).strip()
        if not source or not text:
            raise ValueError("a ticket needs a source and an id")
        return cls(source, text)

    @classmethod
    def zendesk(cls, ticket_id: int | str) -> TicketRef:
        return cls.of("zendesk", ticket_id)


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    source: str
    delivery_id: str
    kind: str
    subject: str
    status: DeliveryStatus
    attempts: int
    error: str | None
    received_at: datetime
    processed_at: datetime | None

    @classmethod
    def of(cls, row: Delivery) -> DeliveryRecord:
        return cls(
            row.id,
            row.source,
            row.delivery_id,
            row.kind,
            row.subject,
            DeliveryStatus(row.status),
            row.attempts,
            row.error,
            row.received_at,
            row.processed_at,
        )


@dataclass(frozen=True)
class LastAction:
    """The latest audit entry of one action on a ticket (the assessment note, say): when, and its detail."""

    at: datetime
    detail: Mapping[str, Any] | None

    @classmethod
    def of(cls, at: datetime | None, detail: Mapping[str, Any] | None) -> LastAction | None:
        return cls(at, detail) if at is not None else None


@dataclass(frozen=True)
class AssessmentRecord:
    id: int
    ticket: TicketRef
    assessed_at: datetime
    escalate: bool
    destination: str | None
    severity: str | None
    decision: Mapping[str, Any]
    trace: Any
    ruleset_version: str
    matcher: str | None
    # Read by the statement that kept it, when asked: the latest entry of an action on the ticket.
    last_action: LastAction | None = None

    @classmethod
    def of(cls, row: Assessment) -> AssessmentRecord:
        return cls(
            row.id,
            TicketRef(row.ticket_source, row.ticket_id),
            row.assessed_at,
            row.escalate,
            row.destination,
            row.severity,
            row.decision,
            row.trace,
            row.ruleset_version,
            row.matcher,
        )


@dataclass(frozen=True)
class AssessmentStamp:
    """What tells whether an assessment still holds, without its decision and package: the verdict."""

    id: int
    assessed_at: datetime
    ruleset_version: str
    trace: Any
    verdict: str | None
    last_action: LastAction | None = None  # when asked: the latest entry of an action on the ticket


@dataclass(frozen=True)
class EscalationRecord:
    id: int
    destination: str
    state: EscalationState
    severity: str | None
    jira_key: str | None
    assessment_id: int | None
    reason: str | None
    tickets: tuple[TicketRef, ...]
    created_at: datetime
    updated_at: datetime
    state_changed_at: datetime

    @property
    def ticket(self) -> TicketRef:
        """The ticket the escalation started from."""
        return self.tickets[0]

    @property
    def is_open(self) -> bool:
        return self.state not in (EscalationState.CLOSED, EscalationState.DISMISSED)

    @classmethod
    def of(cls, row: Escalation | Row[Any], tickets: tuple[TicketRef, ...] | None = None) -> EscalationRecord:
        """From an ORM row (its ``tickets`` relationship), or a Core row with its ``tickets`` read apart."""
        if tickets is None:
            tickets = tuple(TicketRef(t.ticket_source, t.ticket_id) for t in row.tickets)
        return cls(
            row.id,
            row.destination,
            EscalationState(row.state),
            row.severity,
            row.jira_key,
            row.assessment_id,
            row.reason,
            tickets,
            row.created_at,
            row.updated_at,
            row.state_changed_at,
        )


def escalations_from_rows(rows: Iterable[Row[Any]]) -> dict[int, EscalationRecord]:
    """Escalations from rows of (escalation, ticket_source, ticket_id), one per linked ticket in order (an
    outer join's row with no ticket adds none), keyed by id in the rows' order."""
    first: dict[int, Row[Any]] = {}
    tickets: dict[int, list[TicketRef]] = {}
    for row in rows:
        first.setdefault(row.id, row)
        linked = tickets.setdefault(row.id, [])
        if row.ticket_source is not None:
            linked.append(TicketRef(row.ticket_source, row.ticket_id))
    return {i: EscalationRecord.of(row, tuple(tickets[i])) for i, row in first.items()}


def escalations_from_grouped_rows(rows: Iterable[Row[Any]]) -> dict[int, EscalationRecord]:
    """Escalations from rows of (escalation, ticket_sources, ticket_ids), one per escalation with its
    tickets in two arrays in link order (``statements.escalations_under`` on PostgreSQL), keyed by id in
    the rows' order."""
    return {
        row.id: EscalationRecord.of(row, tuple(map(TicketRef, row.ticket_sources, row.ticket_ids)))
        for row in rows
    }


@dataclass(frozen=True)
class ActionRecord:
    id: int
    at: datetime
    target: str
    action: str
    subject: str
    outcome: str
    actor: str
    escalation_id: int | None
    delivery_id: str | None
    detail: Mapping[str, Any] | None
    error: str | None

    @classmethod
    def of(cls, row: AuditEntry) -> ActionRecord:
        return cls(
            row.id,
            row.at,
            row.target,
            row.action,
            row.subject,
            row.outcome,
            row.actor,
            row.escalation_id,
            row.delivery_id,
            row.detail,
            row.error,
        )
