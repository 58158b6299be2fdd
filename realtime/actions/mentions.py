"""@mentions: a message names people of its chat, and each of them is told in their own stream
(event ``chat.mentioned``: a toast in the app, a push of kind "mention"), wherever they are."""

from __future__ import annotations

from realtime.actions.access import stream_visibility
from realtime.domain import chat as rules
from realtime.domain.streams import StreamKey, Visibility, user_stream
from realtime.errors import bad_request
from realtime.hub import Hub
from realtime.store.db import DbConnection


async def check(conn: DbConnection, stream: StreamKey, sender_id: int, ids: list[int]) -> list[int]:
    """The people to tell; bad_request if one of them cannot read this chat."""
    people = rules.mentioned(ids, sender_id)
    for uid in people:
        vis, _a, _p = await stream_visibility(conn, uid, stream)
        if vis is Visibility.NONE:
            raise bad_request("you can mention only people who are in this chat")
    return people


async def tell(hub: Hub, conn: DbConnection, people: list[int], message: dict[str, object]) -> None:
    """Record a ``chat.mentioned`` event for each person (who wrote, where; not the text)."""
    data = {
        "stream": message["stream"],
        "message_id": message["id"],
        "seq": message["seq"],
        "sender_id": message["sender_id"],
        "sender_name": message["sender_name"],
    }
    for uid in people:
        await hub.store.append(conn, str(user_stream(uid)), "chat.mentioned", data)
