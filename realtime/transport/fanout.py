"""Delivery of bus messages to this node's connections.

This is the broadcast path: the one place that turns an event into bytes for many sockets. Each
event is encoded and framed once per form (member, staff) and the same bytes are written to every
follower's WebSocket transport (``sio_internals.DirectSockets``); connections still on
long-polling get the packet through Engine.IO's queue. The domain does not know this module exists.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import socketio

from realtime.domain.streams import Visibility, room_name
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

    async def deliver_events(self, events: list[dict[str, Any]]) -> None:
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
            for body, rooms in forms:
                targets = direct.participants(rooms)
                if not targets:
                    continue
                wire, eio_pkt = direct.encode("event", body)
                sent = await direct.write(wire, eio_pkt, targets)
                self.metrics.deliveries.inc(sent)

    async def deliver_ephemeral(
        self, rooms: list[str], event: str, data: dict[str, Any], skip_sids: list[str]
    ) -> None:
        targets = self.direct.participants(rooms, set(skip_sids) if skip_sids else None)
        if targets:
            wire, eio_pkt = self.direct.encode(event, data)
            await self.direct.write(wire, eio_pkt, targets)
