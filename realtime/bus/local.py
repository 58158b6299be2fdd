"""The in-process bus: one node, no network. Messages still go through msgpack so that
nothing that works here can fail to cross the Redis bus."""

from __future__ import annotations

from typing import Any

from realtime.bus.base import BusHandler, BusHealth, decode, encode


class LocalBus:
    def __init__(self) -> None:
        self._handler: BusHandler | None = None
        self.health = BusHealth("local", up=True)

    async def start(self, handler: BusHandler) -> None:
        self._handler = handler

    async def publish(self, message: dict[str, Any]) -> None:
        if self._handler is not None:
            await self._handler(decode(encode(message)))

    async def send(self, node: str, message: dict[str, Any]) -> int:
        # One node: whatever is addressed goes to this node (which answers for its own).
        if self._handler is None:
            return 0
        await self._handler(decode(encode(message)))
        return 1

    async def close(self) -> None:
        self._handler = None
