"""indexes for the per-request look-ups: a guardian's children in a class, a person's
conversations

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every access check of a guardian reads their children in the class; without this SQLite
    # walked every link of the class (10,000 in a big school) for each one.
    with op.batch_alter_table("guardian_links", schema=None) as batch_op:
        batch_op.create_index("ix_links_guardian_class", ["guardian_id", "class_id"], unique=False)
    # Every sync lists the person's conversations (user_a = ? OR user_b = ?): a scan without these.
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index("ix_conversations_user_a", ["user_a"], unique=False)
        batch_op.create_index("ix_conversations_user_b", ["user_b"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_user_b")
        batch_op.drop_index("ix_conversations_user_a")
    with op.batch_alter_table("guardian_links", schema=None) as batch_op:
        batch_op.drop_index("ix_links_guardian_class")
