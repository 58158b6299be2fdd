"""The bus interface."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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


@dataclass
class BusHealth:
    """What /healthz and /metrics say about a bus."""

    kind: str  # "local" (one node, in process) or "redis"
    up: bool = False
    # Times the link to the other nodes broke, times it came back, publishes dropped meanwhile.
    outages: int = 0
    reconnects: int = 0
    publish_failures: int = 0
    down_since: float | None = None  # time.time() when it broke

    def mark_up(self) -> None:
        self.up = True
        self.down_since = None

    def mark_down(self) -> None:
        if self.down_since is None:
            self.outages += 1
            self.down_since = time.time()
        self.up = False

    @property
    def state(self) -> str:
        if self.kind == "local":
            return "local"
        return "up" if self.up else "down"


class Bus(Protocol):
    """Publish a message to every node (this one included); each node's handler receives it.

    A node's own messages reach its own handler even when the other nodes cannot be reached.
    """

    health: BusHealth

    async def start(self, handler: BusHandler) -> None: ...

    async def publish(self, message: dict[str, Any]) -> None: ...

    async def send(self, node: str, message: dict[str, Any]) -> int:
        """Send a message to one node's handler (by its name). Returns how many nodes listen
        under that name (0: none, the node is gone); raises ``ConnectionError`` when the bus
        cannot carry it. Messages from one node to another arrive in the order sent."""
        ...

    async def close(self) -> None: ...
