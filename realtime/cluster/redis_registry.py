"""Where the node registry lives: Redis for a deployment of several nodes, memory for one.

In Redis each node is one key, ``<bus_channel>:node:<name>``, holding its msgpack announcement
(realtime/cluster/registry.py) with an expiry of ``node_ttl_s``: a node that stops announcing
(killed, hung, cut off) disappears by itself. The announcement is written by a thread of the
node's own (realtime/cluster/beacon.py), so a node whose loop is merely busy stays announced.
Reading the registry is a SCAN of those keys and one MGET. A node that stops cleanly deletes
its key, so the others see it go at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from realtime.cluster.beacon import Beacon
from realtime.cluster.registry import NodeInfo, decode, encode

log = logging.getLogger(__name__)

# Every registry call gives up after this long (the heartbeat tries again on its next beat).
TIMEOUT_S = 2.0


class Registry(Protocol):
    # True when other nodes read it too (Redis): only then can a node be seen to be lost.
    shared: bool

    async def announce(self, info: NodeInfo, ttl_s: float) -> None: ...

    async def nodes(self) -> list[NodeInfo]: ...

    async def withdraw(self, name: str) -> None: ...

    def beacon(self, name: str, ttl_s: float, interval_s: float, stall_s: float) -> Beacon | None:
        """A thread that keeps announcing ``name`` (realtime/cluster/beacon.py), if shared."""
        ...

    async def close(self) -> None: ...


class LocalRegistry:
    """The single-node default: this node is the whole deployment."""

    shared = False

    def __init__(self) -> None:
        self._me: NodeInfo | None = None

    async def announce(self, info: NodeInfo, ttl_s: float) -> None:
        self._me = info

    async def nodes(self) -> list[NodeInfo]:
        return [] if self._me is None else [self._me]

    async def withdraw(self, name: str) -> None:
        self._me = None

    def beacon(self, name: str, ttl_s: float, interval_s: float, stall_s: float) -> Beacon | None:
        return None  # alone: nobody else could take this node for lost

    async def close(self) -> None:
        return None


class RedisRegistry:
    shared = True

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._redis = aioredis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=TIMEOUT_S,
            socket_timeout=TIMEOUT_S,
        )
        self._prefix = f"{channel}:node:"

    async def announce(self, info: NodeInfo, ttl_s: float) -> None:
        await self._redis.set(self._prefix + info.name, encode(info), px=int(ttl_s * 1000))

    async def nodes(self) -> list[NodeInfo]:
        keys = [k async for k in self._redis.scan_iter(match=self._prefix + "*", count=500)]
        if not keys:
            return []
        out = []
        for raw in await self._redis.mget(keys):
            if raw is None:  # expired between the scan and the read
                continue
            try:
                out.append(decode(raw))
            except msgspec.DecodeError:
                log.warning("an unreadable entry in the node registry was ignored")
        return out

    async def withdraw(self, name: str) -> None:
        await self._redis.delete(self._prefix + name)

    def beacon(self, name: str, ttl_s: float, interval_s: float, stall_s: float) -> Beacon:
        return Beacon(
            self._url,
            self._prefix + name,
            ttl_s=ttl_s,
            interval_s=interval_s,
            stall_s=stall_s,
            loop=asyncio.get_running_loop(),
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._redis.aclose()


def make_registry(redis_url: str, channel: str) -> Registry:
    return RedisRegistry(redis_url, channel) if redis_url else LocalRegistry()
