"""The Redis bus: every node publishes to one channel and delivers what it receives locally."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis

from realtime.bus.base import BusHandler, decode, encode

log = logging.getLogger(__name__)


class RedisBus:
    def __init__(self, url: str, channel: str) -> None:
        self._redis = aioredis.from_url(url)
        self._channel = channel
        self._task: asyncio.Task[None] | None = None

    async def start(self, handler: BusHandler) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._channel)
        self._task = asyncio.create_task(self._listen(pubsub, handler))

    async def _listen(self, pubsub: Any, handler: BusHandler) -> None:
        async for item in pubsub.listen():
            if item.get("type") != "message":
                continue
            try:
                await handler(decode(item["data"]))
            except Exception:
                log.exception("bus message could not be handled")

    async def publish(self, message: dict[str, Any]) -> None:
        await self._redis.publish(self._channel, encode(message))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()
