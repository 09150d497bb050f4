"""The tables of issue 6: the symptom index, its bookkeeping, and what follow-through tracks per escalation.

Registered on the same ``Base`` as the rest of the store (migration 0002 builds them); the Store reaches
them through ``worker.store.followup.FollowupVerbs``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from worker.store.models import Base, BigId, Json, UTCDateTime, utcnow


class SymptomRow(Base):
    """One recent helpdesk ticket as the symptom index keeps it: what the rules read of a history ticket,
    and its embedding (float32 bytes of the named matcher; null for a matcher without vectors)."""

    __tablename__ = "symptom_index"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    organization_id: Mapped[str | None] = mapped_column(String(64))
    requester_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(16))
    tags: Mapped[list[str] | None] = mapped_column(Json)
    custom_fields: Mapped[dict[str, Any] | None] = mapped_column(Json)
    subject: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    # sha256 of the indexed text: an unchanged ticket is not embedded again.
    text_hash: Mapped[str] = mapped_column(String(64))
    matcher: Mapped[str] = mapped_column(String(64))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When we last wrote the row: what each process's in-memory copy syncs by.
    indexed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("source", "ticket_id"),
        Index(None, "indexed_at"),
        Index(None, "created_at"),
    )


class IndexState(Base):
    """Small named values the index keeps: the incremental export's cursor, how far back it is filled."""

    __tablename__ = "symptom_index_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(Json)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class EscalationTracking(Base):
    """What follow-through and the rollup know about one escalation beyond its lifecycle state."""

    __tablename__ = "escalation_tracking"

    escalation_id: Mapped[int] = mapped_column(
        ForeignKey("escalations.id", ondelete="CASCADE"), primary_key=True
    )
    # The last time the linked issue moved (status change, engineering comment), and what moved.
    last_movement_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_movement: Mapped[str | None] = mapped_column(String(200))
    jira_status: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set while the escalation is stalled (POLICY.md §7): since when nothing moved, intervals missed.
    stalled_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    missed_intervals: Mapped[int] = mapped_column(Integer, default=0)
    rollup: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # A regression: the resolved escalation this one reopened or follows.
    regression_of: Mapped[int | None] = mapped_column(ForeignKey("escalations.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
