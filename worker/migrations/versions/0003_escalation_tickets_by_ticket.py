"""Escalation links looked up by ticket, in any state.

Every assessment asks which escalations a ticket and its same-symptom tickets are under
(``Store.escalations_of_tickets``); only open links had an index (the partial unique one), so the question
was a sequential scan of every link ever made: 14 ms a call at 100,000 links on PostgreSQL, growing with
the table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_escalation_tickets_ticket_source_ticket_id"),
        "escalation_tickets",
        ["ticket_source", "ticket_id"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_escalation_tickets_ticket_source_ticket_id"), table_name="escalation_tickets")
