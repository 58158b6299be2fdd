"""realtime/transport/sio_internals/ against the libraries' own path, byte for byte.

A real aiohttp server on a free port with the Socket.IO server the app uses, and a raw WebSocket
client reading the bytes on the wire: what a broadcast or an ack written directly puts there must
be exactly what python-socketio's and python-engineio's own emit and ack put there. If one of
these fails after an upgrade, read the new library source, update sio_internals/ and its pins.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
import socketio
from aiohttp import web

from realtime.transport.sio_internals import (
    DirectSockets,
    IndexedManager,
    SioInternalsError,
    SocketServer,
    check_internals,
    checks,
)
from tests.conftest import free_port


def masked(payload: bytes, binary: bool) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    first = 0x82 if binary else 0x81
    head = bytes((first, 0x80 | n)) if n < 126 else struct.pack("!BBH", first, 0x80 | 126, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@dataclass
class Wire:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def frame(self) -> bytes:
        """The next whole server frame, header included, as it arrived."""
        head = await self.reader.readexactly(2)
        n = head[1] & 0x7F
        ext = b""
        if n == 126:
            ext = await self.reader.readexactly(2)
            n = struct.unpack("!H", ext)[0]
        elif n == 127:
            ext = await self.reader.readexactly(8)
            n = struct.unpack("!Q", ext)[0]
        return head + ext + await self.reader.readexactly(n)

    async def next(self) -> bytes:
        async with asyncio.timeout(5):
            raw = await self.frame()
            while raw[2:] in (b"2",):  # an Engine.IO ping: not what a test waits for
                raw = await self.frame()
            return raw


@dataclass
class Setup:
    sio: SocketServer
    direct: DirectSockets
    wire: Wire
    eio_sid: str
    binary: bool


@pytest.fixture(params=["default", "msgpack"])
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    binary = request.param == "msgpack"
    sio = SocketServer(
        async_mode="aiohttp", client_manager=IndexedManager(), serializer=request.param
    )
    direct = DirectSockets(sio, 1 << 20, lambda _sid: None)
    sio.direct = direct

    @sio.on("connect")
    async def connect(sid: str, environ: Any, auth: Any) -> None:
        await sio.enter_room(sid, "r")

    @sio.on("ping")
    async def ping(sid: str, data: Any) -> dict[str, Any]:
        return {"pong": data}

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await reader.readuntil(b"\r\n\r\n")
    wire = Wire(reader, writer)
    opened = await wire.next()
    assert opened[2:3] == b"0"
    eio_sid = json.loads(opened[3:])["sid"]
    if binary:
        writer.write(masked(msgpack.packb({"type": 0, "nsp": "/", "data": {}}), True))
    else:
        writer.write(masked(b"40", False))
    await wire.next()  # the namespace's CONNECT answer
    try:
        yield Setup(sio, direct, wire, eio_sid, binary)
    finally:
        writer.close()
        await runner.cleanup()


@pytest.mark.parametrize("size", [10, 300, 70_000])
async def test_a_direct_broadcast_writes_the_bytes_of_python_socketio_emit(
    setup: Setup, size: int
) -> None:
    body = {"stream": "class:1:students", "seq": 7, "data": {"body": "课" * size}}
    await setup.sio.emit("event", body, room="r")
    theirs = await setup.wire.next()
    wire, pkt = setup.direct.encode("event", body)
    assert await setup.direct.write(wire, pkt, setup.direct.participants(["r"])) == 1
    ours = await setup.wire.next()
    assert ours == theirs
    assert theirs[0] == (0x82 if setup.binary else 0x81)  # a client reads it as a message


async def test_an_ack_written_directly_is_the_ack_python_socketio_writes(setup: Setup) -> None:
    def ack() -> Any:
        return setup.sio.packet_class(
            socketio.packet.ACK, namespace="/", id=12, data=[{"ok": True, "名": "x" * 200}]
        )

    await socketio.AsyncServer._send_packet(setup.sio, setup.eio_sid, ack())
    theirs = await setup.wire.next()
    await setup.sio._send_packet(setup.eio_sid, ack())
    assert await setup.wire.next() == theirs

    # And a real request's ack (through the _handle_event_internal override) reads back right.
    if setup.binary:
        request = msgpack.packb({"type": 2, "nsp": "/", "data": ["ping", 5], "id": 3})
        setup.wire.writer.write(masked(request, True))
        answer = msgpack.unpackb((await setup.wire.next())[2:])
        assert answer == {"type": 3, "nsp": "/", "data": [{"pong": 5}], "id": 3}
    else:
        setup.wire.writer.write(masked(b'423["ping",5]', False))
        assert (await setup.wire.next())[2:] == b'433[{"pong":5}]'


def test_the_check_passes_on_the_pinned_versions() -> None:
    check_internals()
    assert checks._problems() == []


def test_the_check_names_a_changed_signature_and_a_changed_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def send_packet(self: Any, eio_sid: str, pkt: Any, extra: int) -> None: ...

    monkeypatch.setattr(socketio.AsyncServer, "_send_packet", send_packet)
    monkeypatch.setattr(checks.importlib.metadata, "version", lambda _d: "9.9.9")
    problems = checks._problems()
    assert "python-socketio 9.9.9 installed, 5.18.1 pinned" in problems
    assert (
        "socketio.AsyncServer._send_packet(eio_sid, pkt) is now (eio_sid, pkt, extra)" in problems
    )
    check_internals.cache_clear()
    try:
        with pytest.raises(SioInternalsError, match="_send_packet"):
            check_internals()
    finally:
        check_internals.cache_clear()


def test_the_check_names_an_attribute_the_library_stopped_using(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def basic_disconnect(self: Any, sid: str, namespace: str, **kwargs: Any) -> None:
        self.rooms.clear()

    monkeypatch.setattr(socketio.base_manager.BaseManager, "basic_disconnect", basic_disconnect)
    problems = checks._problems()
    assert "socketio BaseManager.basic_disconnect no longer uses .callbacks" in problems


def test_the_check_covers_what_the_shutdown_path_relies_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # shutdown.py closes each WebSocket through aiohttp's ws._writer (its close(code, message),
    # _closing and transport) and skips Engine.IO sockets that are already closed.
    import aiohttp.http_websocket
    import engineio.base_socket

    async def close(self: Any, code: int = 1000) -> None: ...

    def post_start(self: Any, request: Any, protocol: Any, writer: Any) -> None:
        self._protocol = protocol

    def socket_init(self: Any, server: Any, sid: str) -> None:
        self.sid, self.upgraded, self.upgrading = sid, False, False

    monkeypatch.setattr(aiohttp.http_websocket.WebSocketWriter, "close", close)
    monkeypatch.setattr(web.WebSocketResponse, "_post_start", post_start)
    monkeypatch.setattr(engineio.base_socket.BaseSocket, "__init__", socket_init)
    problems = checks._problems()
    assert "aiohttp WebSocketWriter.close(code, message) is now (code)" in problems
    assert "aiohttp WebSocketResponse._post_start no longer uses ._writer" in problems
    assert "engineio BaseSocket.__init__ no longer uses .closed" in problems


def test_the_check_covers_the_routed_session_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    # sessionids.py puts the node's route and a dot in front of engineio's stock ids: the check
    # must notice stock ids that could hold a dot, and a server that stopped calling the method.
    import engineio.base_server

    def generate_id(self: Any) -> str:
        return "a.b"

    async def handle_connect(self: Any, environ: Any, transport: Any) -> None:
        self.sockets.clear()

    monkeypatch.setattr(engineio.base_server.BaseServer, "generate_id", generate_id)
    monkeypatch.setattr(engineio.AsyncServer, "_handle_connect", handle_connect)
    problems = checks._problems()
    assert "engineio session ids are no longer made of [A-Za-z0-9_-] only" in problems
    assert "engineio AsyncServer._handle_connect no longer calls generate_id" in problems


def test_session_ids_name_their_node() -> None:
    from realtime.cluster.route import node_route, route_of
    from realtime.transport.sio_internals import route_session_ids

    server = socketio.AsyncServer(async_mode="aiohttp")
    route_session_ids(server.eio, node_route("school.example:8081"))
    ids = {server.eio.generate_id() for _ in range(100)}
    assert len(ids) == 100
    assert {route_of(i) for i in ids} == {"school-example-8081"}
    other = socketio.AsyncServer(async_mode="aiohttp")  # another server keeps the stock ids
    assert route_of(other.eio.generate_id()) is None
