"""The bus interface."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgpack

BusHandler = Callable[[dict[str, Any]], Awaitable[None]]


def encode(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def decode(raw: bytes) -> dict[str, Any]:
    value = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    if not isinstance(value, dict):
        raise ValueError("a bus message is a map")
    return value


class Bus(Protocol):
    """Publish a message to every node (this one included); each node's handler receives it."""

    async def start(self, handler: BusHandler) -> None: ...

    async def publish(self, message: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...
