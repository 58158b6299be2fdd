"""a school sets itself up: its time zone, school years, archived classes; the phone given
with a link request

Revision ID: 0014
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schools") as batch:
        batch.add_column(
            sa.Column(
                "time_zone", sa.String(length=64), nullable=False, server_default="Asia/Shanghai"
            )
        )
    op.create_table(
        "school_years",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("archived_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("school_id", "name", name="uq_school_year_name"),
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its reference in place. A batch (copy the table, drop the
        # old one) would fail on every existing database: its rows reference classes.
        op.execute(
            "ALTER TABLE classes ADD COLUMN school_year_id INTEGER "
            "CONSTRAINT fk_classes_school_year REFERENCES school_years (id)"
        )
    else:
        op.add_column("classes", sa.Column("school_year_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_classes_school_year", "classes", "school_years", ["school_year_id"], ["id"]
        )
    op.add_column("classes", sa.Column("archived_at", sa.Float(), nullable=True))
    with op.batch_alter_table("guardian_links") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("guardian_links") as batch:
        batch.drop_column("phone")
    with op.batch_alter_table("classes") as batch:
        batch.drop_constraint("fk_classes_school_year", type_="foreignkey")
        batch.drop_column("archived_at")
        batch.drop_column("school_year_id")
    op.drop_table("school_years")
    with op.batch_alter_table("schools") as batch:
        batch.drop_column("time_zone")
