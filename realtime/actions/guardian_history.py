"""What of the guardians' chat a guardian sees: from their approval on, unless the school opens
the earlier conversation to them (schools.guardian_chat_history; issue #16). The limit is a
sequence number of the stream: history pages, catch-up and unread counts all start after it,
and an event about a message before it (an edit, a deletion) reaches that guardian only as its
number (policy.may_see_in_chat), live on every node and in catch-up.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import bindparam, case, func, select

from realtime.domain import chat as rules
from realtime.domain.roles import ClassAccess
from realtime.domain.streams import StreamKey, Visibility, parse_stream
from realtime.store.db import DbConnection
from realtime.store.prepared import Prepared
from realtime.store.schema import classes, events, guardian_links, schools

# When a guardian joined a class: their first approval there (the request time for links made
# approved from the start, e.g. by a roster import).
APPROVED_SINCE = func.min(func.coalesce(guardian_links.c.decided_at, guardian_links.c.requested_at))


async def school_opens_history(conn: DbConnection, class_id: int) -> bool:
    """Whether the class's school shows new guardians the guardians' earlier chat."""
    opened = (
        await conn.execute(
            select(schools.c.guardian_chat_history)
            .select_from(classes.join(schools, schools.c.id == classes.c.school_id))
            .where(classes.c.id == class_id)
        )
    ).scalar()
    return bool(opened)


# One statement (a catch-up runs it for each guardians' chat followed): 0 when the school opens
# the earlier chat; else the last event before the guardian's first approval, if any.
# That event is found walking from the newest event back (the primary key's order) to the
# first one before the approval: the cost is the events since then, few for a guardian who
# joined recently.
_OPENED = (
    select(schools.c.guardian_chat_history)
    .select_from(classes.join(schools, schools.c.id == classes.c.school_id))
    .where(classes.c.id == bindparam("class_id"))
    .scalar_subquery()
)
_SINCE = (
    select(APPROVED_SINCE)
    .where(
        guardian_links.c.guardian_id == bindparam("user_id"),
        guardian_links.c.class_id == bindparam("class_id"),
        guardian_links.c.status == "approved",
    )
    .scalar_subquery()
)
_BEFORE = (
    select(events.c.seq)
    .where(events.c.stream == bindparam("stream"), events.c.at < _SINCE)
    .order_by(events.c.seq.desc())
    .limit(1)
    .scalar_subquery()
)
_FLOOR = Prepared(select(case((_OPENED.is_(True), 0), else_=func.coalesce(_BEFORE, 0))))


async def history_floor(conn: DbConnection, stream: StreamKey, access: ClassAccess | None) -> int:
    """The last sequence number of ``stream`` this person does not see (0: they see it all)."""
    if access is None or not rules.history_from_approval(stream, access):
        return 0
    params = {"stream": str(stream), "class_id": stream.id, "user_id": access.user_id}
    return int((await conn.execute(_FLOOR, params)).scalar() or 0)


async def history_floors(
    conn: DbConnection, followed: Mapping[str, Visibility], accesses: Mapping[int, ClassAccess]
) -> dict[str, int]:
    """The floors (above 0) of the guardians' chats among the streams this person follows
    (``accesses``: what they are to each of their classes, access.member_accesses)."""
    out: dict[str, int] = {}
    for key, vis in followed.items():
        if vis is not Visibility.MEMBER or not key.endswith(":guardians"):
            continue
        stream = parse_stream(key)
        if stream.kind != "class":
            continue
        floor = await history_floor(conn, stream, accesses.get(stream.id))
        if floor:
            out[key] = floor
    return out
