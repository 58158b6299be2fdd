"""Direct writes: a broadcast encoded and framed once, the same bytes written straight to every
recipient's WebSocket transport (python-engineio's aiohttp driver, aiohttp's frame writer and
python-socketio's room bidicts read directly; see the package's docstring)."""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import socketio
from aiohttp import web
from engineio import packet as eio_packet

from realtime.transport.sio_internals.checks import check_internals

log = logging.getLogger(__name__)

OnSlow = Callable[[str], Awaitable[None] | None]


def frame(payload: bytes, binary: bool) -> bytes:
    """One unmasked, final WebSocket frame (server to client)."""
    first = 0x82 if binary else 0x81
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def message_frame(encoded: str | bytes) -> bytes:
    """An encoded Socket.IO packet as the WebSocket frame of an Engine.IO message: msgpack
    bytes go as a binary frame, JSON text as a text frame behind Engine.IO's "4"."""
    if isinstance(encoded, bytes):
        return frame(encoded, binary=True)
    return frame(("4" + encoded).encode(), binary=False)


class DirectSockets:
    """Knows the aiohttp WebSocket of every Engine.IO connection that uses one."""

    def __init__(self, sio: socketio.AsyncServer, buffer_limit: int, on_slow: OnSlow) -> None:
        check_internals()
        self.sio = sio
        self.eio = sio.eio
        self.buffer_limit = buffer_limit
        self.on_slow = on_slow
        self.sockets: dict[str, web.WebSocketResponse] = {}
        # Connections that passed every check of ``_transport`` once (upgraded to WebSocket):
        # their transport and aiohttp's frame writer, so that a broadcast checks only what
        # can change from one message to the next (closing, the send buffer).
        self._ready: dict[str, tuple[Any, Any]] = {}
        self.slow_disconnects = 0
        self._pending: list[Awaitable[None]] = []
        registry = self.sockets
        ready = self._ready
        driver = self.eio._async["websocket"]

        class RecordingWebSocket(driver):  # type: ignore[misc,valid-type]
            """engineio's aiohttp driver, recording each socket and without permessage-deflate.

            Compression is off, as in the Node.js Socket.IO server: a compressor and a
            decompressor per connection cost about 160 KiB of memory each connection, and
            compressing ~100-byte events per recipient costs more CPU than it saves bytes.
            """

            async def __call__(self, environ: dict[str, Any]) -> Any:
                eio_socket = self.handler.__self__
                request = environ["aiohttp.request"]
                self._sock = web.WebSocketResponse(
                    max_msg_size=self.server.max_http_buffer_size, compress=False
                )
                await self._sock.prepare(request)
                self.environ = environ
                registry[eio_socket.sid] = self._sock
                try:
                    await self.handler(self)
                finally:
                    registry.pop(eio_socket.sid, None)
                    ready.pop(eio_socket.sid, None)
                return self._sock

        self.eio._async = {**self.eio._async, "websocket": RecordingWebSocket}

    def encode(self, event: str, data: Any) -> tuple[bytes, Any]:
        """The event as a WebSocket frame, and as the Engine.IO packet for other transports."""
        pkt = self.sio.packet_class(socketio.packet.EVENT, namespace="/", data=[event, data])
        encoded = pkt.encode()
        if isinstance(encoded, list):  # binary attachments: not a broadcast we frame ourselves
            raise ValueError("binary attachments are not framed directly")
        return message_frame(encoded), eio_packet.Packet(eio_packet.MESSAGE, encoded)

    def participants(self, rooms: Iterable[str], skip: set[str] | None = None) -> list[str]:
        """The Engine.IO ids of the connections in these rooms, but for the Socket.IO ids in
        ``skip``."""
        ns = self.sio.manager.rooms.get("/", {})
        out: list[str] = []
        for room in rooms:
            members = ns.get(room)
            if not members:
                continue
            if skip:
                out.extend(eio for sid, eio in members._fwdm.items() if sid not in skip)
            else:
                out.extend(members._fwdm.values())
        return out

    def connections(self, room: str, sids: set[str]) -> list[str]:
        """The Engine.IO ids of those of the Socket.IO ids ``sids`` that are in ``room``."""
        members = self.sio.manager.rooms.get("/", {}).get(room)
        if not members:
            return []
        fwd = members._fwdm
        return [fwd[sid] for sid in sids if sid in fwd]

    def _transport(self, eio_sid: str) -> Any:
        """The transport to write this connection's frames to, ``None`` for Engine.IO's queue
        (long-polling, or an upgrade under way), or ``False`` when the connection is gone or
        was just dropped for not reading."""
        ws = self.sockets.get(eio_sid)
        writer = ws._writer if ws is not None else None
        if writer is None or writer.transport is None:
            return None
        transport = writer.transport
        if transport.is_closing() or writer._closing:
            return False
        s = self.eio.sockets.get(eio_sid)
        if s is None or not s.upgraded or s.upgrading:
            return None
        if transport.get_write_buffer_size() > self.buffer_limit:
            # A client that stopped reading: drop it rather than hold memory for it.
            # It catches up on everything when it reconnects.
            self.slow_disconnects += 1
            transport.abort()
            result = self.on_slow(eio_sid)
            if result is not None:
                self._pending.append(result)
            return False
        self._ready[eio_sid] = (transport, writer)
        return transport

    async def _settle(self) -> None:
        while self._pending:
            await self._pending.pop()

    async def write(self, wire: bytes, eio_pkt: Any, targets: Iterable[str]) -> int:
        """Write one framed event to every target (Engine.IO ids); returns how many got it."""
        sent = 0
        fallback: list[str] = []
        ready = self._ready
        limit = self.buffer_limit
        for eio_sid in targets:
            # The common case inline: a connection on WebSocket that reads what it is sent.
            entry = ready.get(eio_sid)
            if entry is not None:
                transport, writer = entry
                if (
                    not (transport.is_closing() or writer._closing)
                    and transport.get_write_buffer_size() <= limit
                ):
                    transport.write(wire)
                    sent += 1
                    continue
            transport = self._transport(eio_sid)
            if transport:
                transport.write(wire)
                sent += 1
            elif transport is None:
                fallback.append(eio_sid)
        await self._settle()
        eio_sockets = self.eio.sockets
        for eio_sid in fallback:
            s = eio_sockets.get(eio_sid)
            if s is not None:
                # A binary packet caches its encoding per transport: one packet per recipient.
                pkt = (
                    eio_packet.Packet(eio_pkt.packet_type, eio_pkt.data)
                    if eio_pkt.binary
                    else eio_pkt
                )
                await s.send(pkt)
                sent += 1
        return sent

    async def write_one(self, eio_sid: str, encoded: str | bytes) -> bool:
        """Write one encoded Socket.IO packet (an ack, say) to one connection's WebSocket.

        False when the connection is not on a WebSocket yet: the caller queues it instead.
        """
        transport = self._transport(eio_sid)
        if transport is None:
            return False
        if transport:
            transport.write(message_frame(encoded))
        await self._settle()
        return True
