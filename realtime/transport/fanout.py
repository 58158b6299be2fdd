"""Delivery of bus messages to this node's connections.

This is the broadcast path: the one place that turns an event into bytes for many sockets, so it
can be replaced by a faster one without touching the domain.
"""

from __future__ import annotations

from typing import Any

import socketio
from engineio import packet as eio_packet

from realtime.domain.streams import Visibility, room_name
from realtime.metrics import Metrics


class SocketServer(socketio.AsyncServer):
    """The Socket.IO server, safe for binary (msgpack) broadcasts to mixed transports.

    python-socketio encodes a broadcast once and hands the same Engine.IO packet to every
    recipient; an Engine.IO packet caches its first encoding whatever the transport asked for
    (bytes for WebSocket, base64 text for long-polling). With the msgpack serializer every packet
    is binary, so the first recipient decided what all others got: a polling client after a
    WebSocket one had its poll fail (str + bytes), a WebSocket client after a polling one got
    base64 text. A binary packet therefore goes out as its own Engine.IO packet per recipient;
    the msgpack encoding is still done once, and text (JSON) packets are shared as before.
    """

    async def _send_eio_packet(self, eio_sid: str, eio_pkt: Any) -> None:
        if eio_pkt.binary:
            eio_pkt = eio_packet.Packet(eio_pkt.packet_type, eio_pkt.data)
        await super()._send_eio_packet(eio_sid, eio_pkt)


class Fanout:
    def __init__(self, sio: socketio.AsyncServer, metrics: Metrics) -> None:
        self.sio = sio
        self.metrics = metrics

    async def deliver_events(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            stream = ev["stream"]
            head = {"stream": stream, "seq": ev["seq"], "type": ev["type"], "at": ev["at"]}
            member_room = room_name(stream, Visibility.MEMBER)
            staff_room = room_name(stream, Visibility.STAFF)
            if ev.get("staff_data") is None:
                await self.sio.emit(
                    "event", {**head, "data": ev["data"]}, to=[member_room, staff_room]
                )
            else:
                await self.sio.emit("event", {**head, "data": ev["staff_data"]}, to=staff_room)
                await self.sio.emit("event", {**head, "data": ev["data"]}, to=member_room)
            self.metrics.deliveries.inc()

    async def deliver_ephemeral(
        self, rooms: list[str], event: str, data: dict[str, Any], skip_sids: list[str]
    ) -> None:
        await self.sio.emit(event, data, to=rooms, skip_sid=skip_sids or None)
