"""A poll as stored and as shown: loading its row, its two views, telling its streams.

Shared by the poll actions (realtime/actions/polls.py) and the deadline closer
(realtime/actions/poll_deadlines.py), which must announce a close exactly as a teacher's does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from realtime.domain import polls as rules
from realtime.domain.polls import PollStatus
from realtime.domain.streams import notice_stream
from realtime.errors import not_found
from realtime.hub import Hub
from realtime.store.db import DbConnection, StoredEvent
from realtime.store.prepared import Prepared
from realtime.store.rows import PollRow, typed_or_none
from realtime.store.schema import polls

# Built once: read on every poll.get and close.
_POLL = Prepared(select(polls).where(polls.c.id == bindparam("poll_id")))
# The same row locked until the transaction ends (PostgreSQL; SQLite runs one writer anyway):
# a teacher's close or publish and a deadline's close never both announce the same change.
_POLL_LOCKED = Prepared(select(polls).where(polls.c.id == bindparam("poll_id")).with_for_update())
# An answer holds a shared lock on its poll: answers run side by side, but a close (FOR UPDATE
# or UPDATE) waits for the answers in flight, and an answer after it sees the poll closed. So an
# acknowledged answer is always in the results published.
POLL_SHARED = Prepared(
    select(polls).where(polls.c.id == bindparam("poll_id")).with_for_update(read=True)
)


def poll_view(row: PollRow, now: float, *, staff: bool) -> dict[str, Any]:
    """The poll as its staff (with the correct answer) or its participants see it."""
    view = {
        "id": row.id,
        "class_id": row.class_id,
        "session_id": row.session_id,
        "classrooms": list(row.classrooms),
        "author_id": row.author_id,
        "kind": row.kind,
        "question": row.question,
        "options": list(row.options),
        "quiz": bool(row.correct),
        "anonymous": row.anonymous,
        "audience": row.audience,
        "answer_by": row.answer_by,
        "closes_at": row.closes_at,
        "status": rules.effective_status(PollStatus(row.status), row.closes_at, now).value,
        "created_at": row.created_at,
        "closed_at": row.closed_at,
    }
    if staff or row.status == PollStatus.PUBLISHED:
        view["correct"] = list(row.correct)
    return view


async def load(conn: DbConnection, poll_id: int, *, lock: bool = False) -> PollRow:
    query = _POLL_LOCKED if lock else _POLL
    row = typed_or_none(PollRow, (await conn.execute(query, {"poll_id": poll_id})).first())
    if row is None:
        raise not_found("no such poll")
    return row


async def announce(
    hub: Hub,
    conn: DbConnection,
    poll: PollRow,
    type_: str,
    data: dict[str, Any],
    staff: dict[str, Any],
) -> list[StoredEvent]:
    """One event in the poll's stream of every classroom that answers it. The staff of the
    poll's own class see ``staff``; a linked classroom's teachers (a dual lesson) see what its
    students see: they may answer for the classroom, so never the correct answer before it is
    published."""
    return [
        await hub.store.append(
            conn,
            str(notice_stream(cid, poll.audience)),
            type_,
            data,
            staff if cid == poll.class_id else data,
        )
        for cid in poll.classrooms
    ]
