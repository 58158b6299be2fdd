"""Catch-up: which streams a person follows, and every event after the ids they last saw."""

from __future__ import annotations

from typing import Any

from realtime.actions.access import class_access, followed_streams, stream_visibility
from realtime.actions.chat import list_conversations, read_seqs, unread_count
from realtime.actions.guardian_history import history_floor
from realtime.domain.streams import Visibility, parse_stream
from realtime.errors import HomeroomError
from realtime.hub import Hub


async def follows(hub: Hub, user_id: int, extra: list[str]) -> dict[str, Visibility]:
    """The streams this person follows: their own, plus any extra they asked for and may see."""
    async with hub.store.read() as conn:
        out = await followed_streams(conn, user_id)
        for key in extra:
            if key in out:
                continue
            try:
                vis, _a, _p = await stream_visibility(conn, user_id, parse_stream(key))
            except HomeroomError:
                continue
            if vis > Visibility.NONE:
                out[key] = vis
    return out


async def catch_up(
    hub: Hub, user_id: int, followed: dict[str, Visibility], cursors: dict[str, int]
) -> dict[str, Any]:
    """Events after each cursor, in order per stream; streams without a cursor start now."""
    limit = hub.settings.catchup_page_max
    streams: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    more: list[str] = []
    async with hub.store.read() as conn:
        last = await hub.store.last_seqs(conn, sorted(followed))
        reads = await read_seqs(conn, user_id)
        for key in sorted(followed):
            vis = followed[key]
            entry: dict[str, Any] = {
                "stream": key,
                "visibility": "staff" if vis is Visibility.STAFF else "member",
                "last_seq": last[key],
            }
            floor = 0
            if key.endswith(":guardians") and key.startswith("class:"):
                stream = parse_stream(key)
                assert stream.class_id is not None
                access = await class_access(conn, user_id, stream.class_id)
                floor = await history_floor(conn, stream, access)
            if key.startswith(("class:", "conv:")):
                read_seq = max(reads.get(key, 0), floor)
                entry["read_seq"] = read_seq
                entry["unread"] = await unread_count(conn, user_id, key, read_seq)
            streams.append(entry)
            if key not in cursors:
                continue
            # Nothing from before a guardian's approval, whatever cursor they send.
            batch = await hub.store.events_after(conn, key, max(cursors[key], floor), limit)
            for ev in batch:
                wire = ev.for_staff() if vis is Visibility.STAFF else ev.for_member()
                if wire is not None:
                    events.append(wire)
            if len(batch) == limit:
                more.append(key)
        conversations = await list_conversations(conn, user_id)
    return {"streams": streams, "events": events, "more": more, "conversations": conversations}
