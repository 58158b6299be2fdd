"""what a moved live session keeps: hands, stage, lobby, mutes, locks

Revision ID: 0016_live_state
Revises: 0015_app16
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_live_state"
down_revision = "0015_app16"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        # LiveSession.kept(), written by the session's node as it changes (realtime/domain/live.py).
        batch_op.add_column(sa.Column("live_state", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.drop_column("live_state")
