"""one running live session per class; classrooms a dual lesson asked to link

Revision ID: 0007
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0008"
branch_labels = None
depends_on = None

RUNNING = sa.text("ended_at IS NULL")


def upgrade() -> None:
    # Two concurrent starts could both succeed before: end all but the newest running session of
    # a class, so the unique index below can be built.
    op.execute(
        "UPDATE live_sessions SET ended_at = started_at WHERE ended_at IS NULL AND id NOT IN "
        "(SELECT MAX(id) FROM live_sessions WHERE ended_at IS NULL GROUP BY class_id)"
    )
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        # Class ids a dual lesson asked to link that no teacher of theirs has accepted yet.
        batch_op.add_column(sa.Column("pending_links", sa.JSON(), nullable=True))
    op.create_index(
        "ux_live_sessions_running",
        "live_sessions",
        ["class_id"],
        unique=True,
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )


def downgrade() -> None:
    op.drop_index("ux_live_sessions_running", table_name="live_sessions")
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.drop_column("pending_links")
