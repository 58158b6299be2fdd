"""notice tallies and coverage, kept with each receipt change

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The coverage rules of domain/notices.py as they stood at this revision, for existing notices.
_FULFILLED = """(
    (n.kind = 'info' AND r.delivered_at IS NOT NULL)
    OR (n.kind = 'read_required' AND r.read_at IS NOT NULL)
    OR (n.kind = 'confirm_required' AND r.confirmed_at IS NOT NULL)
    OR (n.kind = 'reply_required' AND r.reply IS NOT NULL))"""


def upgrade() -> None:
    op.create_table(
        "notice_tallies",
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("read", sa.Integer(), nullable=False),
        sa.Column("confirmed", sa.Integer(), nullable=False),
        sa.Column("replied", sa.Integer(), nullable=False),
        sa.Column("covered", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"]),
        sa.PrimaryKeyConstraint("notice_id"),
    )
    op.create_table(
        "notice_coverage",
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("covered_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"]),
        sa.ForeignKeyConstraint(["student_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("notice_id", "student_id"),
    )
    with op.batch_alter_table("guardian_links", schema=None) as batch_op:
        batch_op.drop_index("ix_links_class")
        batch_op.create_index("ix_links_class_student", ["class_id", "student_id"], unique=False)

    # Existing notices: coverage from their receipts, then the tallies.
    op.execute(
        f"""
        INSERT INTO notice_coverage (notice_id, student_id, covered_at)
        SELECT n.id, gl.student_id, n.created_at
        FROM notices n
        JOIN receipts r ON r.notice_id = n.id
        JOIN guardian_links gl ON gl.guardian_id = r.user_id AND gl.class_id = n.class_id
        WHERE gl.status = 'approved' AND n.audience IN ('guardians', 'both') AND {_FULFILLED}
        UNION
        SELECT n.id, r.user_id, n.created_at
        FROM notices n
        JOIN receipts r ON r.notice_id = n.id
        JOIN memberships m ON m.class_id = n.class_id AND m.user_id = r.user_id
        WHERE m.role = 'student' AND n.audience IN ('students', 'both') AND {_FULFILLED}
        """
    )
    op.execute(
        """
        INSERT INTO notice_tallies
            (notice_id, recipients, delivered, read, confirmed, replied, covered)
        SELECT n.id,
            (SELECT COUNT(*) FROM receipts r WHERE r.notice_id = n.id),
            (SELECT COUNT(r.delivered_at) FROM receipts r WHERE r.notice_id = n.id),
            (SELECT COUNT(r.read_at) FROM receipts r WHERE r.notice_id = n.id),
            (SELECT COUNT(r.confirmed_at) FROM receipts r WHERE r.notice_id = n.id),
            (SELECT COUNT(r.reply) FROM receipts r WHERE r.notice_id = n.id),
            (SELECT COUNT(*) FROM notice_coverage c WHERE c.notice_id = n.id)
        FROM notices n
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("guardian_links", schema=None) as batch_op:
        batch_op.drop_index("ix_links_class_student")
        batch_op.create_index("ix_links_class", ["class_id"], unique=False)
    op.drop_table("notice_coverage")
    op.drop_table("notice_tallies")
