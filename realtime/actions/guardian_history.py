"""What of the guardians' chat a guardian sees: from their approval on, unless the school opens
the earlier conversation to them (schools.guardian_chat_history; issue #16). The limit is a
sequence number of the stream: history pages, catch-up and unread counts all start after it,
and an event about a message before it (an edit, a deletion) reaches that guardian only as its
number (policy.may_see_in_chat), live on every node and in catch-up.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select

from realtime.actions.access import class_access
from realtime.domain import chat as rules
from realtime.domain.roles import ClassAccess
from realtime.domain.streams import StreamKey, Visibility, parse_stream
from realtime.store.db import DbConnection
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


async def history_floor(conn: DbConnection, stream: StreamKey, access: ClassAccess | None) -> int:
    """The last sequence number of ``stream`` this person does not see (0: they see it all)."""
    if access is None or not rules.history_from_approval(stream, access):
        return 0
    if await school_opens_history(conn, stream.id):
        return 0
    since = (
        await conn.execute(
            select(APPROVED_SINCE).where(
                guardian_links.c.guardian_id == access.user_id,
                guardian_links.c.class_id == stream.id,
                guardian_links.c.status == "approved",
            )
        )
    ).scalar()
    if since is None:
        return 0
    # Walked from the newest event back (the primary key's order) to the first one before the
    # approval: the cost is the events since then, few for a guardian who joined recently.
    floor = (
        await conn.execute(
            select(events.c.seq)
            .where(events.c.stream == str(stream), events.c.at < since)
            .order_by(events.c.seq.desc())
            .limit(1)
        )
    ).scalar()
    return int(floor or 0)


async def history_floors(
    conn: DbConnection, user_id: int, followed: Mapping[str, Visibility]
) -> dict[str, int]:
    """The floors (above 0) of the guardians' chats among the streams this person follows."""
    out: dict[str, int] = {}
    for key, vis in followed.items():
        if vis is not Visibility.MEMBER or not key.endswith(":guardians"):
            continue
        stream = parse_stream(key)
        if stream.kind != "class":
            continue
        floor = await history_floor(conn, stream, await class_access(conn, user_id, stream.id))
        if floor:
            out[key] = floor
    return out
