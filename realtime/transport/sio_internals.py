"""Every touch of python-socketio's, python-engineio's, aiohttp's and bidict's private internals.

The broadcast and ack path needs four things these libraries do not offer publicly:

* **Direct writes** (:class:`DirectSockets`). The stock path queues a packet per recipient, wakes
  one writer task per connection and frames each message separately. A broadcast is encoded and
  framed once here and the same bytes are written straight to every recipient's transport: no
  task, no await. It reads engineio's ``AsyncServer._async['websocket']`` (the aiohttp driver,
  subclassed to record each connection's ``WebSocketResponse`` and to refuse permessage-deflate),
  ``AsyncServer.sockets`` and each socket's ``upgraded``/``upgrading``, and aiohttp's
  ``WebSocketResponse._writer`` with the writer's ``transport`` and ``_closing``.
* **Room members** (:meth:`DirectSockets.participants`): python-socketio keeps a room as a
  ``bidict`` of Socket.IO id to Engine.IO id; its forward dict ``_fwdm`` is read directly.
* **Acks and request scope** (:class:`SocketServer`): overrides of ``AsyncServer._send_packet``
  (an ack is written like a broadcast), ``_send_eio_packet`` (a binary packet per recipient) and
  ``_handle_event_internal`` (the hub's request scope around a handler and its ack).
* **The room index** (:class:`IndexedManager`): overrides of the manager's ``basic_*`` methods,
  reproducing what the stock ``basic_disconnect`` does to ``callbacks`` and ``pending_*``.

The four libraries are pinned exactly in pyproject.toml. :func:`check_internals` (run by the app
factory, cached) checks the installed versions and every name and signature used here, from
signatures and compiled code (no source needed), and names what changed.
``tests/test_sio_internals.py`` compares the bytes written here with the libraries' own path.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import struct
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp.http_websocket
import bidict
import engineio
import engineio.async_drivers.aiohttp as eio_aiohttp
import engineio.async_socket
import engineio.base_socket
import socketio
import socketio.base_manager
from aiohttp import web
from engineio import packet as eio_packet

log = logging.getLogger(__name__)

# Exact versions this module was written and tested against (pyproject.toml pins the same).
PINNED = {
    "python-socketio": "5.18.1",
    "python-engineio": "4.15.1",
    "aiohttp": "3.14.5",
    "bidict": "0.24.1",
}

OnSlow = Callable[[str], Awaitable[None] | None]


class SioInternalsError(RuntimeError):
    """A private internal this module relies on is not what it was written against."""


# ---------------------------------------------------------------------------------------------
# The check


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


# Callables and the parameter names this module calls or overrides them with.
_SIGNATURES: tuple[tuple[str, Any, list[str]], ...] = (
    (
        "socketio.AsyncServer._send_packet",
        lambda: socketio.AsyncServer._send_packet,
        ["self", "eio_sid", "pkt"],
    ),
    (
        "socketio.AsyncServer._send_eio_packet",
        lambda: socketio.AsyncServer._send_eio_packet,
        ["self", "eio_sid", "eio_pkt"],
    ),
    (
        "socketio.AsyncServer._handle_event_internal",
        lambda: socketio.AsyncServer._handle_event_internal,
        ["self", "server", "sid", "eio_sid", "data", "namespace", "id"],
    ),
    (
        "socketio.AsyncManager.basic_enter_room",
        lambda: socketio.AsyncManager.basic_enter_room,
        ["self", "sid", "namespace", "room", "eio_sid"],
    ),
    (
        "socketio.AsyncManager.basic_leave_room",
        lambda: socketio.AsyncManager.basic_leave_room,
        ["self", "sid", "namespace", "room"],
    ),
    (
        "socketio.AsyncManager.basic_disconnect",
        lambda: socketio.AsyncManager.basic_disconnect,
        ["self", "sid", "namespace", "kwargs"],
    ),
    (
        "socketio.AsyncManager.get_rooms",
        lambda: socketio.AsyncManager.get_rooms,
        ["self", "sid", "namespace"],
    ),
    (
        "socketio.packet.Packet",
        lambda: socketio.packet.Packet.__init__,
        ["self", "packet_type", "data", "namespace", "id", "binary", "encoded_packet"],
    ),
    (
        "engineio.packet.Packet",
        lambda: eio_packet.Packet.__init__,
        ["self", "packet_type", "data", "encoded_packet"],
    ),
    (
        "engineio.AsyncSocket._websocket_handler",
        lambda: engineio.async_socket.AsyncSocket._websocket_handler,
        ["self", "ws"],
    ),
    ("engineio.AsyncSocket.send", lambda: engineio.async_socket.AsyncSocket.send, ["self", "pkt"]),
    (
        "engineio aiohttp WebSocket",
        lambda: eio_aiohttp.WebSocket.__init__,
        ["self", "handler", "server"],
    ),
    (
        "engineio aiohttp WebSocket.__call__",
        lambda: eio_aiohttp.WebSocket.__call__,
        ["self", "environ"],
    ),
)

# Attributes a function's compiled code must still use (``co_names``): instance attributes that
# exist only after ``__init__`` runs, and the state another method shares with an override.
_CODE_NAMES: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    (
        "engineio BaseSocket.__init__",
        lambda: engineio.base_socket.BaseSocket.__init__,
        ("sid", "upgraded", "upgrading"),
    ),
    (
        "engineio BaseServer.__init__",
        lambda: engineio.base_server.BaseServer.__init__,
        ("_async", "sockets"),
    ),
    ("engineio aiohttp WebSocket.send", lambda: eio_aiohttp.WebSocket.send, ("_sock",)),
    ("engineio aiohttp WebSocket.wait", lambda: eio_aiohttp.WebSocket.wait, ("_sock",)),
    (
        "aiohttp WebSocketWriter.__init__",
        lambda: aiohttp.http_websocket.WebSocketWriter.__init__,
        ("transport", "_closing"),
    ),
    (
        "socketio BaseManager.basic_disconnect",
        lambda: socketio.base_manager.BaseManager.basic_disconnect,
        ("rooms", "basic_leave_room", "callbacks", "pending_connect", "pending_disconnect"),
    ),
    (
        "socketio AsyncServer._send_packet",
        lambda: socketio.AsyncServer._send_packet,
        ("encode", "eio", "send"),
    ),
)


def _problems() -> list[str]:
    problems: list[str] = []
    for dist, pinned in PINNED.items():
        installed = importlib.metadata.version(dist)
        if installed != pinned:
            problems.append(f"{dist} {installed} installed, {pinned} pinned")
    for what, get, params in _SIGNATURES:
        try:
            found = _params(get())
        except (AttributeError, TypeError, ValueError):
            problems.append(f"{what} is missing")
            continue
        if found != params:
            problems.append(f"{what}({', '.join(params[1:])}) is now ({', '.join(found[1:])})")
    for what, get, names in _CODE_NAMES:
        try:
            code_names = set(get().__code__.co_names)
        except AttributeError:
            problems.append(f"{what} is missing")
            continue
        problems.extend(f"{what} no longer uses .{n}" for n in names if n not in code_names)
    problems.extend(_instance_problems())
    return problems


def _instance_problems() -> list[str]:
    """What only real (throwaway) objects show: the driver table, a room's bidict."""
    problems: list[str] = []
    eio = engineio.AsyncServer(async_mode="aiohttp")
    driver = getattr(eio, "_async", {}).get("websocket") if isinstance(eio._async, dict) else None
    if not (isinstance(driver, type) and issubclass(driver, eio_aiohttp.WebSocket)):
        problems.append("engineio AsyncServer._async['websocket'] is not the aiohttp WebSocket")
    if not isinstance(getattr(eio, "sockets", None), dict):
        problems.append("engineio AsyncServer.sockets is not a dict")
    if not hasattr(web.WebSocketResponse(), "_writer"):
        problems.append("aiohttp WebSocketResponse._writer is missing")
    manager = socketio.AsyncManager()
    manager.basic_enter_room("s", "/", "r", eio_sid="e")
    room = manager.rooms.get("/", {}).get("r")
    if not isinstance(room, bidict.bidict) or getattr(room, "_fwdm", None) != {"s": "e"}:
        problems.append("socketio manager.rooms[ns][room] is not a bidict with _fwdm {sid: eio}")
    for name in ("callbacks", "pending_connect", "pending_disconnect"):
        if not isinstance(getattr(manager, name, None), dict):
            problems.append(f"socketio manager.{name} is not a dict")
    return problems


@functools.cache
def check_internals() -> None:
    """Raise :class:`SioInternalsError` naming every private name or signature that changed.

    Cached: the first call (the app factory's) does the work, once per process.
    """
    problems = _problems()
    if problems:
        raise SioInternalsError(
            "python-socketio/python-engineio/aiohttp/bidict internals used by "
            "realtime/transport/sio_internals.py have changed: " + "; ".join(problems)
        )


# ---------------------------------------------------------------------------------------------
# Framing (public WebSocket and Engine.IO formats, no internals)


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


# ---------------------------------------------------------------------------------------------
# Direct writes


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


# ---------------------------------------------------------------------------------------------
# The server's overrides


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
