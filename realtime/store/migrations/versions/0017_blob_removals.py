"""bytes of stored files removed, per content key (the dedup race, issue #15)

Revision ID: 0017_blob_removals
Revises: 0016_live_state
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_blob_removals"
down_revision = "0016_live_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # realtime/actions/blob_claims.py: a file committed with a key listed here stores its bytes
    # again before its commit stands.
    op.create_table(
        "blob_removals",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("gen", sa.Integer(), nullable=False),
        sa.Column("removed_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_blob_removals_removed_at", "blob_removals", ["removed_at"])


def downgrade() -> None:
    op.drop_index("ix_blob_removals_removed_at", table_name="blob_removals")
    op.drop_table("blob_removals")
