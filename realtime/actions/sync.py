"""Catch-up: which streams a person follows, and every event after the ids they last saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from realtime.actions.access import followed_streams, stream_visibility
from realtime.actions.chat import list_conversations, read_seqs, unread_count
from realtime.actions.guardian_history import history_floors
from realtime.domain import policy
from realtime.domain.streams import Visibility, hidden_form, parse_stream
from realtime.errors import HomeroomError
from realtime.hub import Hub


@dataclass(frozen=True)
class Following:
    """What one person follows: each stream at its visibility, and the history floor of those
    they see only from a point on (a guardian approved later, in the guardians' chat)."""

    streams: dict[str, Visibility]
    floors: dict[str, int] = field(default_factory=dict)


async def follows(hub: Hub, user_id: int, extra: list[str]) -> Following:
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
        floors = await history_floors(conn, user_id, out)
    return Following(out, floors)


async def catch_up(
    hub: Hub, user_id: int, following: Following, cursors: dict[str, int]
) -> dict[str, Any]:
    """Events after each cursor, in order per stream; streams without a cursor start now."""
    followed, floors = following.streams, following.floors
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
            floor = floors.get(key, 0)
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
                if not policy.may_see_in_chat(ev.seq, ev.data, floor):
                    # An edit or deletion of a message from before their approval: its number.
                    events.append(hidden_form(ev.stream, ev.seq, ev.at))
                    continue
                wire = ev.for_staff() if vis is Visibility.STAFF else ev.for_member()
                if wire is not None:
                    events.append(wire)
            if len(batch) == limit:
                more.append(key)
        conversations = await list_conversations(conn, user_id)
    return {"streams": streams, "events": events, "more": more, "conversations": conversations}
