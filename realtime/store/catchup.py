"""The two statements of a catch-up (``sync``), whatever the number of streams followed.

A reconnecting client is caught up on every stream it follows: where each stream is (its last
seq, and for a chat the reader's read position and unread count) and the events after each of
its cursors. Read one statement per stream and per question, that was a dozen round trips to
PostgreSQL for a guardian, each costing the node as much Python as the database's work; a
storm of 2,000 reconnections paid it 2,000 times. Here it is two statements: one for the
positions of all the streams, one for their events, each a ``UNION ALL`` of one small indexed
query per stream (the same plans as before, run in one round trip). Both databases speak it;
on SQLite a :class:`Prepared` statement goes to the driver directly.

The statements are built once per shape (how many streams, which of them chats) and kept; at
most :data:`CHUNK` streams go in one statement (SQLite allows 500 terms in a compound select),
more streams take more statements.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    Select,
    bindparam,
    case,
    func,
    literal_column,
    null,
    select,
    union_all,
)

from realtime.store.db import DbConnection, StoredEvent, event_of
from realtime.store.prepared import Prepared
from realtime.store.schema import events, messages, read_positions, streams

# Streams per statement.
CHUNK = 32


@dataclass(frozen=True)
class Position:
    """Where a stream is, for one reader: its last seq and, for a chat, the reader's read
    position (as stored, 0 if none) and the messages of others after ``max(read_seq, floor)``
    that are not deleted (``unread``)."""

    last_seq: int
    read_seq: int = 0
    unread: int = 0


async def positions(
    conn: DbConnection, user_id: int, chats: Mapping[str, int], others: Sequence[str]
) -> dict[str, Position]:
    """The position of every stream: ``chats`` (stream -> the reader's history floor, 0 if
    none) with read position and unread count, ``others`` only their last seq."""
    keys = [(k, True) for k in sorted(chats)] + [(k, False) for k in sorted(others)]
    out: dict[str, Position] = {}
    for start in range(0, len(keys), CHUNK):
        part = keys[start : start + CHUNK]
        params: dict[str, Any] = {"user_id": user_id}
        for i, (key, chat) in enumerate(part):
            params[f"s{i}"] = key
            if chat:
                params[f"f{i}"] = chats[key]
        statement = _positions(tuple(chat for _k, chat in part))
        for r in await conn.execute(statement, params):
            key = part[r.i][0]
            out[key] = Position(int(r.last_seq or 0), int(r.read_seq or 0), int(r.unread or 0))
    return out


async def events_after(
    conn: DbConnection, afters: Mapping[str, int], limit: int
) -> dict[str, list[StoredEvent]]:
    """The events after ``afters[stream]`` in each stream, at most ``limit`` of each, in order."""
    keys = sorted(afters)
    out: dict[str, list[StoredEvent]] = {k: [] for k in keys}
    for start in range(0, len(keys), CHUNK):
        part = keys[start : start + CHUNK]
        params: dict[str, Any] = {"limit": limit}
        for i, key in enumerate(part):
            params[f"s{i}"] = key
            params[f"a{i}"] = afters[key]
        for r in await conn.execute(_events_after(len(part)), params):
            out[r.stream].append(event_of(r))
    for batch in out.values():
        # UNION ALL keeps no order of its own.
        batch.sort(key=lambda e: e.seq)
    return out


def unread_messages(stream: Any, after: Any, user_id: Any) -> Select[Any]:
    """How many messages of a chat after a seq are unread by a person: those of others, not
    deleted (each argument a value or an SQL expression)."""
    return (
        select(func.count())
        .select_from(messages)
        .where(
            messages.c.stream == stream,
            messages.c.seq > after,
            messages.c.sender_id != user_id,
            messages.c.deleted_at.is_(None),
        )
    )


@functools.lru_cache(maxsize=256)
def _positions(chats: tuple[bool, ...]) -> Prepared:
    parts = []
    for i, chat in enumerate(chats):
        stream = bindparam(f"s{i}", type_=streams.c.key.type)
        last = select(streams.c.last_seq).where(streams.c.key == stream).scalar_subquery()
        if not chat:
            parts.append(
                select(
                    literal_column(str(i)).label("i"),
                    last.label("last_seq"),
                    null().label("read_seq"),
                    null().label("unread"),
                )
            )
            continue
        read = (
            select(read_positions.c.seq)
            .where(
                read_positions.c.user_id == bindparam("user_id"),
                read_positions.c.stream == stream,
            )
            .scalar_subquery()
        )
        floor: BindParameter[int] = bindparam(f"f{i}")
        after = case((func.coalesce(read, 0) > floor, read), else_=floor)
        unread = unread_messages(stream, after, bindparam("user_id")).scalar_subquery()
        parts.append(
            select(
                literal_column(str(i)).label("i"),
                last.label("last_seq"),
                read.label("read_seq"),
                unread.label("unread"),
            )
        )
    return Prepared(parts[0] if len(parts) == 1 else union_all(*parts))


@functools.lru_cache(maxsize=CHUNK)
def _events_after(n: int) -> Prepared:
    parts = [
        select(
            select(events)
            .where(events.c.stream == bindparam(f"s{i}"), events.c.seq > bindparam(f"a{i}"))
            .order_by(events.c.seq)
            .limit(bindparam("limit"))
            .subquery(f"e{i}")
        )
        for i in range(n)
    ]
    return Prepared(parts[0] if n == 1 else union_all(*parts))
