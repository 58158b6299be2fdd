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
    false,
    text,
)

metadata = MetaData()

schools = Table(
    "schools",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    # Attachments: this school's own quota and retention (NULL: the server's settings).
    Column("storage_quota_bytes", BigInteger, nullable=True),
    Column("retention_days", Integer, nullable=True),
    # IANA zone: the times of CSV exports (realtime/domain/exportlang.py).
    Column("time_zone", String(64), nullable=False, server_default="Asia/Shanghai"),
    # Whether a newly approved guardian sees the guardians' chat from before their approval
    # (migration 0015): by default they see it from then on (issue #16).
    Column("guardian_chat_history", Boolean, nullable=False, server_default=false()),
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
    # The views of its attachments (realtime/actions/uploads.py: attachment_view), or NULL.
    Column("attachments", JSON, nullable=True),
    # User ids the message @mentions (migration 0015), or NULL.
    Column("mentions", JSON, nullable=True),
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
    Column("attachments", JSON, nullable=True),
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
    Column("attachments", JSON, nullable=True),
    Column("answer_attachments", JSON, nullable=True),
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
    # Class ids a dual lesson asked to link whose teachers have not accepted yet (migration 0007).
    Column("pending_links", JSON, nullable=True),
    # What a move keeps (hands, stage, lobby, mutes, locks: LiveSession.kept()), written by the
    # session's node before it answers a change (migration 0016_live_state).
    Column("live_state", JSON, nullable=True),
    Index("ix_live_sessions_class", "class_id"),
    # One running session per class: two concurrent starts cannot both win (migration 0007).
    Index(
        "ux_live_sessions_running",
        "class_id",
        unique=True,
        sqlite_where=text("ended_at IS NULL"),
        postgresql_where=text("ended_at IS NULL"),
    ),
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


# --- polls, attendance, homework (issue #14) --------------------------------------------------

# A poll of a class (session_id NULL) or of a live session (its classrooms in ``classrooms``).
polls = Table(
    "polls",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("class_id", Integer, ForeignKey("classes.id"), nullable=False),
    Column("session_id", Integer, nullable=True),
    Column("classrooms", JSON, nullable=False),  # class ids whose members answer
    Column("author_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("question", Text, nullable=False),
    Column("options", JSON, nullable=False),
    Column("correct", JSON, nullable=False),  # empty: a poll; otherwise a quiz
    Column("anonymous", Boolean, nullable=False),
    Column("audience", String(20), nullable=False),  # students | guardians
    Column("answer_by", String(20), nullable=False),  # person | classroom
    Column("closes_at", Float, nullable=True),
    Column("status", String(20), nullable=False),  # open | closed | published
    Column("created_at", Float, nullable=False),
    Column("closed_at", Float, nullable=True),
    UniqueConstraint("author_id", "client_id", name="uq_polls_client"),
    Index("ix_polls_class", "class_id", "created_at"),
    # The deadline sweep of every node (realtime/actions/poll_deadlines.py).
    Index("ix_polls_due", "status", "closes_at"),
)

# One answer per person (or per classroom), replaced until the poll closes.
poll_answers = Table(
    "poll_answers",
    metadata,
    Column("poll_id", Integer, ForeignKey("polls.id"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("class_id", Integer, nullable=False),
    Column("answer", JSON, nullable=False),
    Column("correct", Boolean, nullable=True),
    Column("answered_at", Float, nullable=False),
    Index("ix_poll_answers_user", "user_id"),
)

# Who was in a live session: presence intervals (merged when read), hands, stage time, and a
# teacher's correction. Written by realtime/actions/attendance.py from the live layer's changes.
attendance = Table(
    "attendance",
    metadata,
    Column("session_id", Integer, ForeignKey("live_sessions.id"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("class_id", Integer, nullable=False),
    Column("role", String(20), nullable=False),
    Column("intervals", JSON, nullable=False),  # [[joined, left or null], ...]
    Column("first_join", Float, nullable=True),
    # Kept with the intervals so that records over a term read no JSON: the closed intervals'
    # total (they never overlap: one presence at a time) and the start of the open one.
    Column("seconds", Float, nullable=False),
    Column("open_since", Float, nullable=True),
    Column("hands", Integer, nullable=False),
    Column("stage_s", Float, nullable=False),
    Column("correction", String(20), nullable=True),
    Column("note", Text, nullable=True),
    Column("corrected_by", Integer, nullable=True),
    Column("corrected_at", Float, nullable=True),
    Index("ix_attendance_class_user", "class_id", "user_id"),
)

homework = Table(
    "homework",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("class_id", Integer, ForeignKey("classes.id"), nullable=False),
    Column("author_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("instructions", Text, nullable=False),
    Column("due_at", Float, nullable=False),
    # Attachment ids once attachments exist (another change); empty until then.
    Column("attachments", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_reminded_at", Float, nullable=True),
    # When the "due soon" reminder went out (migration 0015): set once, by whichever node's
    # sweep wins the conditional UPDATE (realtime/actions/homework_due.py).
    Column("due_notified_at", Float, nullable=True),
    UniqueConstraint("author_id", "client_id", name="uq_homework_client"),
    Index("ix_homework_class", "class_id", "due_at"),
)

homework_submissions = Table(
    "homework_submissions",
    metadata,
    Column("homework_id", Integer, ForeignKey("homework.id"), primary_key=True),
    Column("student_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("body", Text, nullable=False),
    Column("attachments", JSON, nullable=False),
    Column("status", String(20), nullable=False),  # submitted | reviewed | returned
    Column("late", Boolean, nullable=False),
    Column("submitted_at", Float, nullable=False),
    Column("times", Integer, nullable=False),  # how many times submitted
    Column("comment", Text, nullable=True),
    Column("score", Float, nullable=True),
    Column("grade", String(20), nullable=True),
    Column("reviewed_by", Integer, nullable=True),
    Column("reviewed_at", Float, nullable=True),
    Index("ix_homework_submissions_student", "student_id"),
)

# Files sent with messages, notices, questions and answers. An upload is created, receives its
# bytes in chunks (a staging file), is checked and processed (status "ready"), then attached to
# exactly one carrier ("message:12", "notice:3", "question:5", "answer:5") in the carrier's own
# transaction. Its bytes live in the blob store under content hashes (blob, preview, thumb);
# a blob is removed when no upload that is not deleted refers to it.
uploads = Table(
    "uploads",
    metadata,
    Column("id", String(32), primary_key=True),  # random, unguessable
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("owner_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("name", String(200), nullable=False),
    # The declared size while uploading (it counts against the quota), then what is stored.
    Column("size", BigInteger, nullable=False),
    Column("stored_bytes", BigInteger, nullable=False, default=0),
    Column("status", String(20), nullable=False),  # uploading | ready | deleted
    Column("kind", String(20), nullable=True),
    Column("mime", String(120), nullable=True),
    Column("blob", String(64), nullable=True),
    Column("preview", String(64), nullable=True),
    Column("thumb", String(64), nullable=True),
    # The preview and stripped original of a photo are still being made.
    Column("pending", Boolean, nullable=False, default=False),
    Column("meta", JSON, nullable=False),  # width, height, duration_s
    Column("carrier", String(40), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("completed_at", Float, nullable=True),
    Column("attached_at", Float, nullable=True),
    Column("deleted_at", Float, nullable=True),
    Index("ix_uploads_school_status", "school_id", "status"),
    Index("ix_uploads_carrier", "carrier"),
    Index("ix_uploads_blob", "blob"),
    Index("ix_uploads_preview", "preview"),
    Index("ix_uploads_thumb", "thumb"),
)

# Stored files' bytes removed because no file used them any more: one row per content key
# (the SHA-256 in uploads.blob/preview/thumb), ``gen`` counted up at every removal. A file
# committed with a key listed here stores its bytes again before its commit stands
# (realtime/actions/blob_claims.py); rows older than blob_claims.KEEP_S are pruned by the sweep.
blob_removals = Table(
    "blob_removals",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("gen", Integer, nullable=False),
    Column("removed_at", Float, nullable=False),
    Index("ix_blob_removals_removed_at", "removed_at"),
)


# Web Push (realtime/push/): a browser's push subscription, one row per endpoint. The keys are
# the browser's public key and auth secret (RFC 8291), not secrets of ours.
push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("endpoint", String(1000), nullable=False, unique=True),
    Column("p256dh", String(200), nullable=False),
    Column("auth", String(100), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_push_subscriptions_user", "user_id"),
)

# What a person wants pushed and when not: absent row = every kind, no quiet hours.
push_settings = Table(
    "push_settings",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("kinds", JSON, nullable=False),  # the kinds to push (realtime/domain/push.py KINDS)
    # Quiet hours in minutes after midnight, school time; None: no quiet hours.
    Column("quiet_start", Integer, nullable=True),
    Column("quiet_end", Integer, nullable=True),
    Column("updated_at", Float, nullable=False),
)
