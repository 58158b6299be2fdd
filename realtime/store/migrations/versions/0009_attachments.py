"""attachments: uploads, the attachments of messages, notices and questions, school storage

Revision ID: 0009
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schools", schema=None) as b:
        b.add_column(sa.Column("storage_quota_bytes", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("messages", schema=None) as b:
        b.add_column(sa.Column("attachments", sa.JSON(), nullable=True))
    with op.batch_alter_table("notices", schema=None) as b:
        b.add_column(sa.Column("attachments", sa.JSON(), nullable=True))
    with op.batch_alter_table("questions", schema=None) as b:
        b.add_column(sa.Column("attachments", sa.JSON(), nullable=True))
        b.add_column(sa.Column("answer_attachments", sa.JSON(), nullable=True))
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("school_id", sa.Integer(), sa.ForeignKey("schools.id"), nullable=False),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(20), nullable=True),
        sa.Column("mime", sa.String(120), nullable=True),
        sa.Column("blob", sa.String(64), nullable=True),
        sa.Column("preview", sa.String(64), nullable=True),
        sa.Column("thumb", sa.String(64), nullable=True),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("carrier", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.Column("attached_at", sa.Float(), nullable=True),
        sa.Column("deleted_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_uploads_school_status", "uploads", ["school_id", "status"])
    op.create_index("ix_uploads_carrier", "uploads", ["carrier"])
    op.create_index("ix_uploads_blob", "uploads", ["blob"])
    op.create_index("ix_uploads_preview", "uploads", ["preview"])
    op.create_index("ix_uploads_thumb", "uploads", ["thumb"])


def downgrade() -> None:
    op.drop_table("uploads")
    with op.batch_alter_table("questions", schema=None) as b:
        b.drop_column("answer_attachments")
        b.drop_column("attachments")
    with op.batch_alter_table("notices", schema=None) as b:
        b.drop_column("attachments")
    with op.batch_alter_table("messages", schema=None) as b:
        b.drop_column("attachments")
    with op.batch_alter_table("schools", schema=None) as b:
        b.drop_column("retention_days")
        b.drop_column("storage_quota_bytes")
