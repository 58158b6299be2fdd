"""A hand-written Socket.IO client: Engine.IO 4 and Socket.IO 5 text packets over one WebSocket,
written here from the protocols rather than taken from python-socketio, and keeping every frame
exactly as the server sent it.

What the web app or clients/homeroom.py would ignore, a person with a script reads: privacy tests
look at these frames, not at what a well-behaved client chose to show.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp


class RawSocket:
    def __init__(self, base_url: str, token: str) -> None:
        self.url = base_url.rstrip("/") + "/socket.io/?EIO=4&transport=websocket"
        self.token = token
        # Every text frame the server sent, in order.
        self.frames: list[str] = []
        # Every pushed event: (name, first argument).
        self.pushes: list[tuple[str, Any]] = []
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._arrived = asyncio.Event()

    async def connect(self, timeout: float = 10.0) -> None:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url)
        opened = await self._ws.receive_str(timeout=timeout)
        assert opened.startswith("0"), opened  # Engine.IO "open"
        await self._ws.send_str("40" + json.dumps({"token": self.token}))
        connected = await self._ws.receive_str(timeout=timeout)
        assert connected.startswith("40"), connected  # Socket.IO CONNECT to "/"
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            text: str = msg.data
            self.frames.append(text)
            if text == "2":  # Engine.IO ping
                await self._ws.send_str("3")
            elif text.startswith("42"):  # Socket.IO EVENT
                name, *args = json.loads(text[2:])
                self.pushes.append((name, args[0] if args else None))
                self._arrived.set()
            elif text.startswith("43"):  # Socket.IO ACK: 43<id>[args]
                digits = len(text) - len(text[2:].lstrip("0123456789"))
                ack_id, args = int(text[2:digits]), json.loads(text[digits:])
                future = self._acks.pop(ack_id, None)
                if future is not None and not future.done():
                    future.set_result(args[0])

    async def request(self, event: str, data: Any, timeout: float = 10.0) -> Any:
        assert self._ws is not None
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[self._next_id] = future
        await self._ws.send_str(f"42{self._next_id}" + json.dumps([event, data]))
        return await asyncio.wait_for(future, timeout)

    def events(self, stream: str | None = None) -> list[dict[str, Any]]:
        """The stream events pushed live (``event``), in the order they came."""
        return [
            d
            for name, d in self.pushes
            if name == "event" and (stream is None or d.get("stream") == stream)
        ]

    async def wait_for(
        self, pred: Callable[[str, Any], bool], timeout: float = 10.0
    ) -> tuple[str, Any]:
        async def scan() -> tuple[str, Any]:
            seen = 0
            while True:
                for name, data in self.pushes[seen:]:
                    if pred(name, data):
                        return name, data
                seen = len(self.pushes)
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(scan(), timeout)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self._session is not None:
            await self._session.close()
