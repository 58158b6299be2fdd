"""Catch-up: which streams a person follows, and every event after the ids they last saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from realtime.actions.access import followed_streams, member_accesses, stream_visibility
from realtime.actions.chat import list_conversations
from realtime.actions.guardian_history import history_floors
from realtime.domain import policy
from realtime.domain.streams import Visibility, hidden_form, parse_stream
from realtime.errors import HomeroomError
from realtime.hub import Hub
from realtime.store import catchup


@dataclass(frozen=True)
class Following:
    """What one person follows: each stream at its visibility, and the history floor of those
    they see only from a point on (a guardian approved later, in the guardians' chat)."""

    streams: dict[str, Visibility]
    floors: dict[str, int] = field(default_factory=dict)


async def follows(hub: Hub, user_id: int, extra: list[str]) -> Following:
    """The streams this person follows: their own, plus any extra they asked for and may see."""
    async with hub.store.read() as conn:
        accesses = await member_accesses(conn, user_id)
        out = await followed_streams(conn, user_id, accesses)
        for key in extra:
            if key in out:
                continue
            try:
                vis, _a, _p = await stream_visibility(conn, user_id, parse_stream(key))
            except HomeroomError:
                continue
            if vis > Visibility.NONE:
                out[key] = vis
        floors = await history_floors(conn, out, accesses)
    return Following(out, floors)


async def catch_up(
    hub: Hub, user_id: int, following: Following, cursors: dict[str, int]
) -> dict[str, Any]:
    """Events after each cursor, in order per stream; streams without a cursor start now.

    Whatever the number of streams: one statement for where they all are, one for their
    events (store/catchup.py), one for the conversations."""
    followed, floors = following.streams, following.floors
    limit = hub.settings.catchup_page_max
    streams: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    more: list[str] = []
    chats = {k: floors.get(k, 0) for k in followed if k.startswith(("class:", "conv:"))}
    # Nothing from before a guardian's approval, whatever cursor they send.
    afters = {k: max(c, floors.get(k, 0)) for k, c in cursors.items() if k in followed}
    async with hub.store.read() as conn:
        others = [k for k in followed if k not in chats]
        where = await catchup.positions(conn, user_id, chats, others)
        batches = await catchup.events_after(conn, afters, limit)
        conversations = await list_conversations(conn, user_id)
    for key in sorted(followed):
        vis = followed[key]
        at = where[key]
        entry: dict[str, Any] = {
            "stream": key,
            "visibility": "staff" if vis is Visibility.STAFF else "member",
            "last_seq": at.last_seq,
        }
        floor = floors.get(key, 0)
        if key in chats:
            entry["read_seq"] = max(at.read_seq, floor)
            entry["unread"] = at.unread
        streams.append(entry)
        batch = batches.get(key)
        if batch is None:
            continue
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
    return {"streams": streams, "events": events, "more": more, "conversations": conversations}
