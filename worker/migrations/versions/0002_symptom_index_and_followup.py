"""Symptom index, its named state, and per-escalation tracking (issue 6).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here, as in 0001: a migration keeps meaning what it meant when it was written.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "symptom_index",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("ticket_id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=True),
        sa.Column("requester_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("tags", JSON, nullable=True),
        sa.Column("custom_fields", JSON, nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("matcher", sa.String(length=64), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=True),
        sa.Column("indexed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_symptom_index")),
        sa.UniqueConstraint("source", "ticket_id", name=op.f("uq_symptom_index_source_ticket_id")),
    )
    op.create_index(op.f("ix_symptom_index_indexed_at"), "symptom_index", ["indexed_at"])
    op.create_index(op.f("ix_symptom_index_created_at"), "symptom_index", ["created_at"])
    op.create_table(
        "symptom_index_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", JSON, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_symptom_index_state")),
    )
    op.create_table(
        "escalation_tracking",
        sa.Column("escalation_id", BIG_ID, nullable=False),
        sa.Column("last_movement_at", TIMESTAMP, nullable=True),
        sa.Column("last_movement", sa.String(length=200), nullable=True),
        sa.Column("jira_status", sa.String(length=64), nullable=True),
        sa.Column("resolved_at", TIMESTAMP, nullable=True),
        sa.Column("stalled_since", TIMESTAMP, nullable=True),
        sa.Column("missed_intervals", sa.Integer(), nullable=False),
        sa.Column("rollup", JSON, nullable=True),
        sa.Column("regression_of", BIG_ID, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["escalation_id"],
            ["escalations.id"],
            name=op.f("fk_escalation_tracking_escalation_id_escalations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["regression_of"],
            ["escalations.id"],
            name=op.f("fk_escalation_tracking_regression_of_escalations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("escalation_id", name=op.f("pk_escalation_tracking")),
    )


def downgrade() -> None:
    op.drop_table("escalation_tracking")
    op.drop_table("symptom_index_state")
    op.drop_index(op.f("ix_symptom_index_created_at"), table_name="symptom_index")
    op.drop_index(op.f("ix_symptom_index_indexed_at"), table_name="symptom_index")
    op.drop_table("symptom_index")
