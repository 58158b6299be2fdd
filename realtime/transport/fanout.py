"""Delivery of bus messages to this node's connections.

This is the broadcast path: the one place that turns an event into bytes for many sockets. Each
event is encoded and framed once per form (member, staff) and the same bytes are written to every
follower's WebSocket transport (``sio_internals.DirectSockets``); connections still on
long-polling get the packet through Engine.IO's queue. The domain does not know this module exists.

One exception to "the same bytes for everyone in a room": a connection that sees a stream only
from a point on (a guardian approved after the families' earlier conversation) gets an event about
a message before that point (an edit, a deletion) as its number alone, ``policy.may_see_in_chat``
deciding per connection. Every node does it for its own connections, whichever path (bus or
follower) brings the event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import socketio

from realtime.domain import policy
from realtime.domain.streams import Visibility, hidden_form, room_name
from realtime.metrics import Metrics
from realtime.transport.sio_internals import DirectSockets, SocketServer

log = logging.getLogger(__name__)

# Requests of one connection in progress at once (waiting for the store or for the disk); the
# connection's next request is read only when fewer are. Each costs a task and its payload.
MAX_PIPELINED = 16


def _forget(pipelined: dict[str, set[asyncio.Task[None]]], eio_sid: str, task: Any) -> None:
    pending = pipelined.get(eio_sid)
    if pending is not None:
        pending.discard(task)
        if not pending:
            del pipelined[eio_sid]


class HistoryFloors:
    """Per connection, the streams it sees only after a sequence number (its history floor).

    Memory: one entry per (connection, stream) with a floor above 0 — a guardian approved later
    than the guardians' chat began, in that chat only; nothing for anyone else."""

    def __init__(self) -> None:
        self._by_stream: dict[str, dict[str, int]] = {}
        self._by_sid: dict[str, dict[str, int]] = {}

    def set(self, sid: str, floors: Mapping[str, int]) -> None:
        """The connection's floors from now on (replacing what it had)."""
        self.forget(sid)
        mine = {stream: floor for stream, floor in floors.items() if floor > 0}
        if not mine:
            return
        self._by_sid[sid] = mine
        for stream, floor in mine.items():
            self._by_stream.setdefault(stream, {})[sid] = floor

    def forget(self, sid: str) -> None:
        for stream in self._by_sid.pop(sid, {}):
            of_stream = self._by_stream.get(stream)
            if of_stream is not None:
                of_stream.pop(sid, None)
                if not of_stream:
                    del self._by_stream[stream]

    def of_stream(self, stream: str) -> Mapping[str, int]:
        """Connection id → floor, for the connections with a floor in this stream."""
        return self._by_stream.get(stream, {})


class Fanout:
    def __init__(self, sio: socketio.AsyncServer, metrics: Metrics, buffer_limit: int) -> None:
        self.sio = sio
        self.metrics = metrics
        self.direct = DirectSockets(sio, buffer_limit, self._on_slow)
        if isinstance(sio, SocketServer):
            sio.direct = self.direct

    def _on_slow(self, eio_sid: str) -> None:
        log.warning("disconnected %s: it stopped reading (send buffer over the limit)", eio_sid)
        self.metrics.slow_disconnects.inc()

    async def deliver_events(
        self, events: list[dict[str, Any]], floors: HistoryFloors | None = None
    ) -> None:
        direct = self.direct
        for ev in events:
            stream = ev["stream"]
            head = {"stream": stream, "seq": ev["seq"], "type": ev["type"], "at": ev["at"]}
            member_room = room_name(stream, Visibility.MEMBER)
            staff_room = room_name(stream, Visibility.STAFF)
            forms: list[tuple[dict[str, Any], tuple[str, ...]]]
            if ev.get("staff_data") is None:
                forms = [({**head, "data": ev["data"]}, (member_room, staff_room))]
            else:
                forms = [({**head, "data": ev["staff_data"]}, (staff_room,))]
                if ev["data"] is not None:
                    forms.append(({**head, "data": ev["data"]}, (member_room,)))
            # Connections that may not see this event (only ever a few, and only in a
            # guardians' chat) get its number alone; the others the same bytes as ever.
            hidden: set[str] | None = None
            if floors is not None:
                of_stream = floors.of_stream(stream)
                if of_stream:
                    data = ev["data"]
                    hidden = {
                        sid
                        for sid, floor in of_stream.items()
                        if not policy.may_see_in_chat(ev["seq"], data, floor)
                    } or None
            for body, rooms in forms:
                targets = direct.participants(rooms, hidden)
                if not targets:
                    continue
                wire, eio_pkt = direct.encode("event", body)
                sent = await direct.write(wire, eio_pkt, targets)
                self.metrics.deliveries.inc(sent)
            if hidden:
                targets = direct.connections(member_room, hidden)
                if targets:
                    wire, eio_pkt = direct.encode("event", hidden_form(stream, ev["seq"], ev["at"]))
                    self.metrics.deliveries.inc(await direct.write(wire, eio_pkt, targets))

    async def deliver_ephemeral(
        self, rooms: list[str], event: str, data: dict[str, Any], skip_sids: list[str]
    ) -> None:
        targets = self.direct.participants(rooms, set(skip_sids) if skip_sids else None)
        if targets:
            wire, eio_pkt = self.direct.encode(event, data)
            await self.direct.write(wire, eio_pkt, targets)
