"""the app people live in: homework due reminders sent once, a school's guardian chat history
setting, @mentions kept with a message

Revision ID: 0015_app16
Revises: 0015_polls
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_app16"
down_revision = "0015_polls"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch copy): every existing row keeps its references on SQLite.
    op.add_column("homework", sa.Column("due_notified_at", sa.Float(), nullable=True))
    op.add_column(
        "schools",
        sa.Column("guardian_chat_history", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("messages", sa.Column("mentions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("mentions")
    with op.batch_alter_table("schools") as batch:
        batch.drop_column("guardian_chat_history")
    with op.batch_alter_table("homework") as batch:
        batch.drop_column("due_notified_at")
