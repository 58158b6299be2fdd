"""polls: an index for the deadline sweep (open polls past their time, on every node)

Revision ID: 0015_polls
Revises: 0014
"""

from alembic import op

revision = "0015_polls"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_polls_due", "polls", ["status", "closes_at"])


def downgrade() -> None:
    op.drop_index("ix_polls_due", table_name="polls")
