"""Initial schema: deliveries, assessments, escalations with their tickets, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from the models: a migration must keep meaning what it
# meant when it was written, whatever the models become.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=20)


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            _enum("delivery_status", "received", "processing", "processed", "failed"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("processed_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("source", "delivery_id", name=op.f("uq_deliveries_source_delivery_id")),
    )
    op.create_table(
        "assessments",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("ticket_source", sa.String(length=16), nullable=False),
        sa.Column("ticket_id", sa.String(length=64), nullable=False),
        sa.Column("assessed_at", TIMESTAMP, nullable=False),
        sa.Column("escalate", sa.Boolean(), nullable=False),
        sa.Column("destination", sa.String(length=20), nullable=True),
        sa.Column("severity", sa.String(length=10), nullable=True),
        sa.Column("decision", JSON, nullable=False),
        sa.Column("trace", JSON, nullable=True),
        sa.Column("ruleset_version", sa.String(length=64), nullable=False),
        sa.Column("matcher", sa.String(length=64), nullable=True),
        sa.Column("delivery_ref", BIG_ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_ref"],
            ["deliveries.id"],
            name=op.f("fk_assessments_delivery_ref_deliveries"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessments")),
    )
    op.create_index(
        op.f("ix_assessments_ticket_source_ticket_id_assessed_at"),
        "assessments",
        ["ticket_source", "ticket_id", "assessed_at"],
    )
    op.create_table(
        "escalations",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("destination", sa.String(length=20), nullable=False),
        sa.Column(
            "state",
            _enum(
                "escalation_state",
                "suggested",
                "created",
                "acknowledged",
                "resolved",
                "customer_updated",
                "closed",
                "dismissed",
            ),
            nullable=False,
        ),
        sa.Column("severity", sa.String(length=10), nullable=True),
        sa.Column("jira_key", sa.String(length=64), nullable=True),
        sa.Column("assessment_id", BIG_ID, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("state_changed_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["assessment_id"],
            ["assessments.id"],
            name=op.f("fk_escalations_assessment_id_assessments"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalations")),
        sa.UniqueConstraint("jira_key", name=op.f("uq_escalations_jira_key")),
    )
    op.create_index(op.f("ix_escalations_state"), "escalations", ["state"])
    op.create_table(
        "escalation_tickets",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("escalation_id", BIG_ID, nullable=False),
        sa.Column("ticket_source", sa.String(length=16), nullable=False),
        sa.Column("ticket_id", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=20), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("linked_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["escalation_id"],
            ["escalations.id"],
            name=op.f("fk_escalation_tickets_escalation_id_escalations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_tickets")),
        sa.UniqueConstraint(
            "escalation_id",
            "ticket_source",
            "ticket_id",
            name=op.f("uq_escalation_tickets_escalation_id_ticket_source_ticket_id"),
        ),
    )
    # At most one open escalation per ticket and destination; closed ones no longer count.
    op.create_index(
        "uq_escalation_tickets_open_per_destination",
        "escalation_tickets",
        ["ticket_source", "ticket_id", "destination"],
        unique=True,
        postgresql_where=sa.text("is_open"),
        sqlite_where=sa.text("is_open"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("escalation_id", BIG_ID, nullable=True),
        sa.Column("delivery_id", sa.String(length=200), nullable=True),
        sa.Column("detail", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["escalation_id"],
            ["escalations.id"],
            name=op.f("fk_audit_log_escalation_id_escalations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_target_subject"), "audit_log", ["target", "subject"])
    op.create_index(op.f("ix_audit_log_escalation_id"), "audit_log", ["escalation_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("escalation_tickets")
    op.drop_table("escalations")
    op.drop_table("assessments")
    op.drop_table("deliveries")
