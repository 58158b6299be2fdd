"""Who has read a message of the guardians' chat: for the class's teachers (issue #16), from the
read positions every guardian's app keeps (chat.read). A guardian who joined after the message
was sent, and cannot see it, is not counted (realtime/actions/guardian_history.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from realtime.actions.access import display_names, require_visible
from realtime.actions.guardian_history import APPROVED_SINCE, school_opens_history
from realtime.domain import policy
from realtime.domain.policy import require
from realtime.errors import not_found
from realtime.hub import Hub
from realtime.schemas import MessageRef
from realtime.store.schema import guardian_links, messages, read_positions


async def read_by(hub: Hub, user_id: int, req: MessageRef) -> dict[str, Any]:
    async with hub.store.read() as conn:
        row = (await conn.execute(select(messages).where(messages.c.id == req.message_id))).first()
        if row is None or row.deleted_at is not None:
            raise not_found("no such message")
        stream, _vis, access, _p = await require_visible(conn, user_id, row.stream)
        require(
            policy.may_see_read_by(stream, access),
            "only the class's teachers see who read a message of the guardians' chat",
        )
        query = (
            select(guardian_links.c.guardian_id)
            .where(guardian_links.c.class_id == stream.id, guardian_links.c.status == "approved")
            .group_by(guardian_links.c.guardian_id)
        )
        if not await school_opens_history(conn, stream.id):
            query = query.having(row.sent_at >= APPROVED_SINCE)
        audience = sorted(r.guardian_id for r in await conn.execute(query))
        seen = {
            r.user_id
            for r in await conn.execute(
                select(read_positions.c.user_id).where(
                    read_positions.c.stream == row.stream,
                    read_positions.c.user_id.in_(audience),
                    read_positions.c.seq >= row.seq,
                )
            )
        }
        names = await display_names(conn, audience)
    people = [{"id": u, "name": names.get(u, "")} for u in audience]
    return {
        "message_id": row.id,
        "read": [p for p in people if p["id"] in seen],
        "unread": [p for p in people if p["id"] not in seen],
    }
