"""Assessments looked up by their delivery.

Deleting a delivery sets ``assessments.delivery_ref`` to NULL where it pointed there; without an index the
database finds those rows by reading the whole table, once per delivery deleted. `escalate db prune`
deletes deliveries by the thousand: 22 s for 17,000 of them at 20,000 assessments on PostgreSQL, growing
with the product of the two tables.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_assessments_delivery_ref"), "assessments", ["delivery_ref"])


def downgrade() -> None:
    op.drop_index(op.f("ix_assessments_delivery_ref"), table_name="assessments")
