"""Typed rows of the hot tables: what an action reads of a message, notice, receipt, question,
poll, poll answer or upload.

SQLAlchemy's rows are typed ``Any``, so a misspelt column was found only when the line ran.
These small frozen structs (msgspec: about 0.2 µs to build, no ``__dict__``) carry one row of
``select(table)``, field for field in the table's column order; ``check_rows()`` (run by the
tests) holds each to its table, so a migration that adds a column must add the field too.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from sqlalchemy import Table

from realtime.store.schema import (
    messages,
    notices,
    poll_answers,
    polls,
    questions,
    receipts,
    uploads,
)


class MessageRow(msgspec.Struct, frozen=True, gc=False):
    id: int
    stream: str
    seq: int
    sender_id: int
    client_id: str
    body: str
    sent_at: float
    edited_at: float | None
    deleted_at: float | None
    deleted_by: int | None
    attachments: list[dict[str, Any]] | None
    mentions: list[int] | None


class NoticeRow(msgspec.Struct, frozen=True, gc=False):
    id: int
    class_id: int
    author_id: int
    client_id: str
    audience: str
    kind: str
    title: str
    body: str
    choices: list[str]
    deadline: float | None
    created_at: float
    last_reminded_at: float | None
    attachments: list[dict[str, Any]] | None


class ReceiptRow(msgspec.Struct, frozen=True, gc=False):
    notice_id: int
    user_id: int
    delivered_at: float | None
    read_at: float | None
    confirmed_at: float | None
    reply: str | None
    replied_at: float | None


class QuestionRow(msgspec.Struct, frozen=True, gc=False):
    id: int
    class_id: int
    session_id: int | None
    asker_id: int
    client_id: str
    anonymous: bool
    body: str
    status: str
    answer: str | None
    answered_by: int | None
    votes: int
    created_at: float
    updated_at: float
    attachments: list[dict[str, Any]] | None
    answer_attachments: list[dict[str, Any]] | None


class PollRow(msgspec.Struct, frozen=True, gc=False):
    """Read on every answer (a class of 500 answers in a few seconds) and every counts push."""

    id: int
    class_id: int
    session_id: int | None
    classrooms: list[int]
    author_id: int
    client_id: str
    kind: str
    question: str
    options: list[str]
    correct: list[str]
    anonymous: bool
    audience: str
    answer_by: str
    closes_at: float | None
    status: str
    created_at: float
    closed_at: float | None


class PollAnswerRow(msgspec.Struct, frozen=True, gc=False):
    poll_id: int
    user_id: int
    class_id: int
    answer: list[str]
    correct: bool | None
    answered_at: float


class UploadRow(msgspec.Struct, frozen=True, gc=False):
    """Read on every chunk's status, every attachment and every download link."""

    id: str
    school_id: int
    owner_id: int
    name: str
    size: int
    stored_bytes: int
    status: str
    kind: str | None
    mime: str | None
    blob: str | None
    preview: str | None
    thumb: str | None
    pending: bool
    meta: dict[str, Any]
    carrier: str | None
    created_at: float
    completed_at: float | None
    attached_at: float | None
    deleted_at: float | None


TABLES: dict[type[msgspec.Struct], Table] = {
    MessageRow: messages,
    NoticeRow: notices,
    ReceiptRow: receipts,
    QuestionRow: questions,
    PollRow: polls,
    PollAnswerRow: poll_answers,
    UploadRow: uploads,
}

R = TypeVar("R", bound=msgspec.Struct)


def typed(kind: type[R], row: Any) -> R:
    """One row of ``select(table)`` as its struct."""
    return kind(*row)


def typed_or_none(kind: type[R], row: Any) -> R | None:
    return None if row is None else kind(*row)


def typed_all(kind: type[R], rows: Any) -> list[R]:
    return [kind(*r) for r in rows]


def check_rows() -> None:
    """Every struct names its table's columns, in order."""
    for kind, table in TABLES.items():
        fields = tuple(kind.__struct_fields__)
        columns = tuple(c.key for c in table.columns)
        if fields != columns:
            raise AssertionError(f"{kind.__name__} has {fields}; {table.name} has {columns}")
