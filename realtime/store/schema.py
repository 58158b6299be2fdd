"""Tables. Changes here need a migration in store/migrations/versions."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

schools = Table(
    "schools",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    # IANA zone: the times of CSV exports (realtime/domain/exportlang.py).
    Column("time_zone", String(64), nullable=False, server_default="Asia/Shanghai"),
)

# A school year ("2026-2027"): classes belong to one; archived ones are read-only history.
school_years = Table(
    "school_years",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("name", String(40), nullable=False),
    Column("archived_at", Float, nullable=True),
    UniqueConstraint("school_id", "name", name="uq_school_year_name"),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("username", String(80), nullable=False, unique=True),
    Column("display_name", String(120), nullable=False),
    Column("password_hash", String(200), nullable=True),
    Column("phone", String(40), nullable=True),
    Column("school_admin", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)

classes = Table(
    "classes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("join_code", String(20), nullable=False, unique=True),
    Column("school_year_id", Integer, ForeignKey("school_years.id"), nullable=True),
    Column("archived_at", Float, nullable=True),
)

memberships = Table(
    "memberships",
    metadata,
    Column("class_id", Integer, ForeignKey("classes.id"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("role", String(20), primary_key=True),
    Index("ix_memberships_user", "user_id"),
)

# A guardian asks to be linked to a child; a teacher approves or rejects.
guardian_links = Table(
    "guardian_links",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("class_id", Integer, ForeignKey("classes.id"), nullable=False),
    Column("guardian_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("student_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("relationship", String(40), nullable=False, default=""),
    # The phone number the guardian gave with the request, for the teacher to vet it.
    Column("phone", String(40), nullable=True),
    Column("status", String(20), nullable=False),  # pending | approved | rejected
    Column("requested_at", Float, nullable=False),
    Column("decided_by", Integer, nullable=True),
    Column("decided_at", Float, nullable=True),
    UniqueConstraint("guardian_id", "student_id", name="uq_guardian_student"),
    # By class, and a student's guardians in it (a page of a notice's roll-up).
    Index("ix_links_class_student", "class_id", "student_id"),
    # A guardian's children in a class: every access check of a guardian.
    Index("ix_links_guardian_class", "guardian_id", "class_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

# One row per stream: the last sequence number given out. Incremented inside the writing
# transaction, so ids in a stream become visible in the order they are assigned.
streams = Table(
    "streams",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("stream", String(80), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("type", String(40), nullable=False),
    Column("at", Float, nullable=False),
    # What members see (NULL: members do not see this event) and, if different, what staff see.
    Column("data", JSON, nullable=True),
    Column("staff_data", JSON, nullable=True),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("stream", String(80), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("sender_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("sent_at", Float, nullable=False),
    Column("edited_at", Float, nullable=True),
    Column("deleted_at", Float, nullable=True),
    Column("deleted_by", Integer, nullable=True),
    UniqueConstraint("sender_id", "client_id", name="uq_messages_client"),
    Index("ix_messages_stream_seq", "stream", "seq"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("class_id", Integer, ForeignKey("classes.id"), nullable=False),
    Column("user_a", Integer, ForeignKey("users.id"), nullable=False),  # the lower user id
    Column("user_b", Integer, ForeignKey("users.id"), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("class_id", "user_a", "user_b", name="uq_conversation_pair"),
    # A person's conversations (user_a = ? OR user_b = ?), at every sync.
    Index("ix_conversations_user_a", "user_a"),
    Index("ix_conversations_user_b", "user_b"),
)

read_positions = Table(
    "read_positions",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("stream", String(80), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

mutes = Table(
    "mutes",
    metadata,
    Column("class_id", Integer, ForeignKey("classes.id"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("until", Float, nullable=False),
    Column("by", Integer, nullable=False),
)

notices = Table(
    "notices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("class_id", Integer, ForeignKey("classes.id"), nullable=False),
    Column("author_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("audience", String(20), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("choices", JSON, nullable=False),
    Column("deadline", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("last_reminded_at", Float, nullable=True),
    UniqueConstraint("author_id", "client_id", name="uq_notices_client"),
    Index("ix_notices_class", "class_id"),
)

receipts = Table(
    "receipts",
    metadata,
    Column("notice_id", Integer, ForeignKey("notices.id"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("delivered_at", Float, nullable=True),
    Column("read_at", Float, nullable=True),
    Column("confirmed_at", Float, nullable=True),
    Column("reply", String(100), nullable=True),
    Column("replied_at", Float, nullable=True),
)

# Per notice: how many recipients reached each step, and how many students are covered. Kept in
# the transaction that changes a receipt (receipts only move forward, so the counts only grow),
# so neither a roll-up nor the notice list counts receipt rows.
notice_tallies = Table(
    "notice_tallies",
    metadata,
    Column("notice_id", Integer, ForeignKey("notices.id"), primary_key=True),
    Column("recipients", Integer, nullable=False),
    Column("delivered", Integer, nullable=False),
    Column("read", Integer, nullable=False),
    Column("confirmed", Integer, nullable=False),
    Column("replied", Integer, nullable=False),
    Column("covered", Integer, nullable=False),
)

# One row per student a notice covers (domain/notices.py: who covers whom), added when the
# receipt that covers them is fulfilled, or when a guardian who fulfilled it is linked later.
# Never removed: receipts only move forward, and students and approved links stay.
notice_coverage = Table(
    "notice_coverage",
    metadata,
    Column("notice_id", Integer, ForeignKey("notices.id"), primary_key=True),
    Column("student_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("covered_at", Float, nullable=False),
)

questions = Table(
    "questions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("class_id", Integer, ForeignKey("classes.id"), nullable=False),
    # NULL: the class board; otherwise the live session the question was asked in.
    Column("session_id", Integer, nullable=True),
    Column("asker_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("anonymous", Boolean, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("answer", Text, nullable=True),
    Column("answered_by", Integer, nullable=True),
    Column("votes", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("asker_id", "client_id", name="uq_questions_client"),
    Index("ix_questions_class", "class_id", "session_id"),
)

question_votes = Table(
    "question_votes",
    metadata,
    Column("question_id", Integer, ForeignKey("questions.id"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
)

# Live sessions (lessons, meetings, dual-teacher lessons). Their live state (participants, hands,
# stage) is held in memory by the node that runs the media; this row is what outlives them.
live_sessions = Table(
    "live_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("class_id", Integer, ForeignKey("classes.id"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("title", String(200), nullable=False),
    Column("host_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("linked", JSON, nullable=False),  # class ids of a dual lesson's other classrooms
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    # The node whose memory holds the session: it ends its own sessions after a restart.
    Column("node", String(120), nullable=True),
    Index("ix_live_sessions_class", "class_id"),
)

# Who did what, written in the same transaction as the action (realtime/actions/audit.py).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("at", Float, nullable=False),
    Column("actor_id", Integer, ForeignKey("users.id"), nullable=True),  # None: the console
    Column("action", String(40), nullable=False),
    Column("class_id", Integer, nullable=True),
    Column("target", String(80), nullable=True),  # "user:12", "message:5", "link:3", ...
    Column("detail", JSON, nullable=False),
    Index("ix_audit_school", "school_id", "id"),
)
