"""The Socket.IO server's and the room manager's overrides of python-socketio's private methods
(acks written directly, a request scope around each handler, one Engine.IO packet per binary
recipient; an index of each connection's rooms)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import socketio
from engineio import packet as eio_packet

from realtime.transport.sio_internals.direct import DirectSockets


class SocketServer(socketio.AsyncServer):
    """The Socket.IO server, safe for binary (msgpack) broadcasts to mixed transports.

    python-socketio encodes a broadcast once and hands the same Engine.IO packet to every
    recipient; an Engine.IO packet caches its first encoding whatever the transport asked for
    (bytes for WebSocket, base64 text for long-polling). With the msgpack serializer every packet
    is binary, so the first recipient decided what all others got. A binary packet therefore
    goes out as its own Engine.IO packet per recipient; text (JSON) packets are shared.
    """

    direct: DirectSockets | None = None
    # Wraps the handling of each client event, its ack included (Hub.acks_first).
    request_scope: Callable[[], AbstractAsyncContextManager[None]] | None = None

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any
    ) -> None:
        if self.request_scope is None:
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
            return
        async with self.request_scope():
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)

    async def _send_eio_packet(self, eio_sid: str, eio_pkt: Any) -> None:
        if eio_pkt.binary:
            eio_pkt = eio_packet.Packet(eio_pkt.packet_type, eio_pkt.data)
        await super()._send_eio_packet(eio_sid, eio_pkt)

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        """One packet to one connection (acks, mostly): framed and written straight to its
        WebSocket like a broadcast, not queued for a writer task to wake up and send."""
        encoded = pkt.encode()
        if isinstance(encoded, list):  # binary attachments: the stock path
            for part in encoded:
                await self.eio.send(eio_sid, part)
        elif self.direct is None or not await self.direct.write_one(eio_sid, encoded):
            await self.eio.send(eio_sid, encoded)


class IndexedManager(socketio.AsyncManager):
    """python-socketio's room manager, with an index of every connection's rooms.

    The stock manager finds the rooms of a connection that leaves by scanning every room of the
    namespace, and each connection has a room of its own: n connections leaving at once (a
    school's Wi-Fi dropping, a load balancer draining a node) cost n x n steps — measured at
    minutes of a busy event loop for 10,000. With the index a disconnect costs the number of its
    own rooms.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rooms_of: dict[tuple[str, str], set[Any]] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        for room in self._rooms_of.pop((namespace, sid), set()):
            super().basic_leave_room(sid, namespace, room)
        # What the stock method does after leaving the rooms.
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [r for r in self._rooms_of.get((namespace, sid), ()) if r is not None]
