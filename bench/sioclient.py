"""A lean Socket.IO (v5 protocol, Engine.IO v4) client over aiohttp's WebSocket, for benchmarks.

One instance is one connection, about as cheap as a connection can be in Python, so that a
couple of processes can hold thousands of them. It speaks only what the benchmark needs:

- ``GET /socket.io/?EIO=4&transport=websocket``; the server's open packet ``0{...}``;
- connect to the default namespace with auth: ``40{"token": ...}`` -> ``40{"sid": ...}``
  (or ``44{...}``, refused);
- events ``42["name", data]``, requests with acks ``42<id>["name", data]`` -> ``43<id>[data]``;
- Engine.IO ping ``2`` answered with pong ``3``.

It offers permessage-deflate (``compress=15``) as browsers do, unless told not to, and records
whether the server accepted it. The same class drives Homeroom and the Node.js reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

EventCallback = Callable[["SioConnection", str], None]


class SioError(Exception):
    pass


class Busy(SioError):
    """The server refused the new connection for now (HTTP 503): try again after
    ``retry_after_s`` (its Retry-After header; 1 s without one)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"server busy: try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class SioConnection:
    """One Socket.IO connection. ``on_event`` gets every raw ``42[...]`` frame (a str)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        *,
        compress: bool = True,
        on_event: EventCallback | None = None,
    ) -> None:
        self.session = session
        self.url = base_url.rstrip("/") + "/socket.io/?EIO=4&transport=websocket"
        self.token = token
        self.compress = compress
        self.on_event = on_event
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.sid: str | None = None
        self.deflate = 0  # the permessage-deflate window bits the server agreed to, 0 if none
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        # The last connect's phases (monotonic): started, upgraded (the HTTP 101, after any
        # wait in the server's admission queue), opened (Engine.IO open packet), connected
        # (Socket.IO connect answered).
        self.phases: dict[str, float] = {}

    async def connect(self, timeout: float = 15.0) -> None:
        self.phases = {"started": time.monotonic()}
        async with asyncio.timeout(timeout):
            try:
                self.ws = await self.session.ws_connect(
                    self.url,
                    compress=15 if self.compress else 0,
                    max_msg_size=0,
                    autoping=True,
                    heartbeat=None,
                )
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status != 503:
                    raise
                raise Busy(_retry_after(exc.headers)) from None
            self.phases["upgraded"] = time.monotonic()
            self.deflate = int(self.ws.compress or 0)
            opened = await self.ws.receive()
            self.phases["opened"] = time.monotonic()
            if opened.type != aiohttp.WSMsgType.TEXT or not str(opened.data).startswith("0"):
                raise SioError(f"no Engine.IO open packet: {opened.type} {opened.data!r:.200}")
            await self.ws.send_str("40" + json.dumps({"token": self.token}))
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise SioError(f"connection closed during connect: {msg.type}")
                data = str(msg.data)
                if data == "2":
                    await self.ws.send_str("3")
                    continue
                if data.startswith("40"):
                    self.sid = json.loads(data[2:] or "{}").get("sid")
                    self.phases["connected"] = time.monotonic()
                    break
                if data.startswith("44"):
                    raise SioError(f"connection refused: {data[2:]:.300}")
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        ws = self.ws
        assert ws is not None
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data: str = msg.data
                head = data[:2]
                if head == "42":
                    if self.on_event is not None:
                        self.on_event(self, data)
                elif head == "43":
                    i = 2
                    while data[i].isdigit():
                        i += 1
                    fut = self._acks.pop(int(data[2:i]), None)
                    if fut is not None and not fut.done():
                        args = json.loads(data[i:])
                        fut.set_result(args[0] if args else None)
                elif data == "2":
                    await ws.send_str("3")
                elif head == "41":
                    break  # disconnected by the server
        except (aiohttp.ClientError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed.set()
            for fut in self._acks.values():
                if not fut.done():
                    fut.set_exception(SioError("connection closed"))
            self._acks.clear()

    def emit_nowait(self, event: str, data: Any) -> asyncio.Future[Any]:
        """Send a request; return a future for its acknowledgement."""
        assert self.ws is not None
        self._next_id += 1
        ack_id = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = fut
        frame = f"42{ack_id}" + json.dumps([event, data], separators=(",", ":"))
        send = self.ws.send_str(frame)
        task = asyncio.ensure_future(send)
        task.add_done_callback(lambda t: _fail(fut, t))
        return fut

    async def call(self, event: str, data: Any, timeout: float = 30.0) -> Any:
        fut = self.emit_nowait(event, data)
        return await asyncio.wait_for(fut, timeout)

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError, ConnectionError):
                await asyncio.wait_for(self.ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def _retry_after(headers: Any) -> float:
    try:
        return max(0.0, float((headers or {}).get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _fail(fut: asyncio.Future[Any], task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        if not fut.done():
            fut.cancel()
        return
    exc = task.exception()
    if exc is not None and not fut.done():
        fut.set_exception(exc)


def new_session() -> aiohttp.ClientSession:
    # No pool limit: every WebSocket holds its own TCP connection.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True),
        timeout=aiohttp.ClientTimeout(total=None, connect=15),
    )


def body_with_stamp(size: int) -> str:
    """A chat body of ``size`` characters that starts with the sender's monotonic clock."""
    stamp = f"{time.monotonic():.6f}|"
    return stamp + "x" * max(0, size - len(stamp))


def stamp_of(frame: str) -> float | None:
    """The sender's clock from an ``event`` frame whose data carries a stamped body."""
    try:
        ev = json.loads(frame[2:])[1]
        return float(ev["data"]["body"].split("|", 1)[0])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
