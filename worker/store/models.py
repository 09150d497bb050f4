"""The tables. Changing one means writing a migration (worker/migrations/); a test checks they agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from worker.store.lifecycle import DeliveryStatus, EscalationState

# Named constraints, so later migrations can drop or alter them by name on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the backend keeps (SQLite keeps naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return (
            value.astimezone(UTC) if dialect.name != "sqlite" else value.astimezone(UTC).replace(tzinfo=None)
        )

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Portable id column: BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY
# is the autoincrementing rowid).
BigId = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _enum(enum_cls: type, name: str) -> Enum:
    # Not a native PostgreSQL enum: a VARCHAR with a CHECK constraint, so adding a state is an
    # ordinary migration on both backends.
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Delivery(Base):
    """One webhook delivery, unique per sender and delivery id: the durable dedupe and job ledger."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(64))
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus, "delivery_status"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("source", "delivery_id"),)


class Assessment(Base):
    """One evaluation of a ticket: the decision, its trace, and what produced it."""

    __tablename__ = "assessments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_source: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    assessed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    escalate: Mapped[bool] = mapped_column(Boolean)
    destination: Mapped[str | None] = mapped_column(String(20))
    severity: Mapped[str | None] = mapped_column(String(10))
    decision: Mapped[dict[str, Any]] = mapped_column(Json)
    trace: Mapped[Any | None] = mapped_column(Json)
    ruleset_version: Mapped[str] = mapped_column(String(64))
    matcher: Mapped[str | None] = mapped_column(String(64))
    delivery_ref: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="SET NULL"))

    # By delivery (migration 0004): deleting a delivery clears the references to it.
    __table_args__ = (Index(None, "ticket_source", "ticket_id", "assessed_at"), Index(None, "delivery_ref"))


class Escalation(Base):
    """One hand-off of one or more tickets to a destination, usually one Jira issue."""

    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    destination: Mapped[str] = mapped_column(String(20))
    state: Mapped[EscalationState] = mapped_column(_enum(EscalationState, "escalation_state"))
    severity: Mapped[str | None] = mapped_column(String(10))
    jira_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    assessment_id: Mapped[int | None] = mapped_column(ForeignKey("assessments.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Loaded with the escalations in one more query per result (selectin), not one per escalation: every
    # EscalationRecord carries its tickets, and lists of escalations are read on each assessment.
    tickets: Mapped[list[EscalationTicket]] = relationship(
        back_populates="escalation",
        cascade="all, delete-orphan",
        order_by="EscalationTicket.id",
        lazy="selectin",
    )

    __table_args__ = (Index(None, "state"),)


class EscalationTicket(Base):
    """A ticket under an escalation. The first is the one it started from; others join later.

    ``destination`` and ``is_open`` copy the escalation's, so the database itself can refuse a
    second open escalation for the same ticket and destination (the partial unique index below)
    while allowing a new one once the previous is closed or dismissed. Only the Store writes them.
    """

    __tablename__ = "escalation_tickets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id", ondelete="CASCADE"))
    ticket_source: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(20))
    is_open: Mapped[bool] = mapped_column(Boolean)
    role: Mapped[str] = mapped_column(String(16), default="primary")
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    escalation: Mapped[Escalation] = relationship(back_populates="tickets")

    __table_args__ = (
        UniqueConstraint("escalation_id", "ticket_source", "ticket_id"),
        # Which escalations a ticket is under, in any state: every assessment asks (migration 0003).
        Index(None, "ticket_source", "ticket_id"),
        Index(
            "uq_escalation_tickets_open_per_destination",
            "ticket_source",
            "ticket_id",
            "destination",
            unique=True,
            postgresql_where=text("is_open"),
            sqlite_where=text("is_open"),
        ),
    )


class AuditEntry(Base):
    """One action taken on Zendesk or Jira, successful or not: what, on what, why, with what result."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    target: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    escalation_id: Mapped[int | None] = mapped_column(ForeignKey("escalations.id", ondelete="SET NULL"))
    delivery_id: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "target", "subject"), Index(None, "escalation_id"))
