"""The Redis bus: every node publishes to one channel; each delivers its own messages itself.

A message published here is delivered to this node's connections at once, in the publishing
task, and sent on Redis for the other nodes; what comes back from Redis with this node's own id
(its ``from`` key) is dropped. So people on the same node keep getting each other's messages
live while Redis is down, and never get them twice.

The listener is supervised: when the subscription breaks (Redis stopped, restarted, the network
cut) it reconnects with exponential backoff and subscribes again. Whatever was published
meanwhile never reached it, so on reconnecting it tells every local connection to resync
(``{"t": "resync_all"}``: clients catch up by sequence) and publishes the same to the other
nodes, whose own listeners may never have noticed a break (a cut between this node and Redis
only). Publishes that fail while Redis is down are counted and dropped: the stores hold every
event, and the resync after the outage brings it to the other nodes' clients.

Redis's own client retries and silently resubscribes on a broken connection, which would lose
the messages in between without telling anyone; it is told not to retry (``Retry(..., 0)``),
and any error of the subscription is handled here by starting a fresh one.

Messages addressed to one node (:meth:`RedisBus.send`: live-session requests, answers and
effects, realtime/cluster/calls.py) go on that node's own channel, ``<channel>:to:<name>``,
which each node subscribes to beside the shared one, on the same connection (so what one node
sends another arrives in order). Redis answers a publish with how many subscribers got it: 0
says at once that no node of that name is listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from realtime.bus.base import BusHandler, BusHealth, decode, encode

log = logging.getLogger(__name__)

# Backoff between reconnection attempts: doubles from MIN to MAX (seconds), with jitter so that
# the nodes of a deployment do not all knock at once when Redis comes back.
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
# With no message for this long the listener pings Redis; with no answer to that either in the
# next interval it reconnects (a cut that no error reports: a dead peer, a silent firewall).
IDLE_PING_S = 5.0
# Connecting to Redis gives up after this long (publishes included: they never wait longer).
CONNECT_TIMEOUT_S = 2.0
# A publish waits at most this long for Redis; slower counts as a failure (and is dropped).
PUBLISH_TIMEOUT_S = 2.0


def direct_channel(channel: str, node: str) -> str:
    """Where messages addressed to one node go (its name, on the deployment's channel)."""
    return f"{channel}:to:{node}"


class RedisBus:
    def __init__(
        self, url: str, channel: str, *, name: str = "", idle_ping_s: float = IDLE_PING_S
    ) -> None:
        self._redis = aioredis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_keepalive=True,
        )
        self._channel = channel
        # Messages addressed to this node (:meth:`send`) come on a channel of its own.
        self._direct = direct_channel(channel, name) if name else None
        self._idle_ping_s = idle_ping_s
        self._handler: BusHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._missed = False
        # This node's id on the wire: its own messages coming back from Redis are dropped.
        self.node = os.urandom(8).hex()
        self.health = BusHealth("redis")

    async def start(self, handler: BusHandler) -> None:
        self._handler = handler
        self._task = asyncio.create_task(self._supervise(), name="redis-bus")
        # Start-up waits for the first subscription briefly; if Redis is down the node serves
        # anyway (local delivery), degraded, and the supervisor keeps trying.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT_S + 1):
                await self._subscribed.wait()

    async def publish(self, message: dict[str, Any]) -> None:
        raw = encode({**message, "from": self.node})
        local = decode(raw)
        del local["from"]
        await self._deliver(local)
        if not self.health.up:
            # Known down: don't wait for a connection that will fail; the resync after the
            # outage brings this to the other nodes' clients.
            self.health.publish_failures += 1
            return
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                if self._missed:
                    # A publish failed while the subscription stayed up (so no reconnect will
                    # resync anyone): the other nodes' clients catch up now.
                    await self._redis.publish(self._channel, encode(self._resync_all()))
                    self._missed = False
                await self._redis.publish(self._channel, raw)
        except (aioredis.RedisError, OSError, TimeoutError) as exc:
            self.health.publish_failures += 1
            self._missed = True
            log.warning("bus publish failed (delivered on this node only): %s", exc)

    async def send(self, node: str, message: dict[str, Any]) -> int:
        """To one node, on its own channel; Redis says how many listen there (0: gone)."""
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                return int(
                    await self._redis.publish(direct_channel(self._channel, node), encode(message))
                )
        except (aioredis.RedisError, OSError, TimeoutError) as exc:
            self.health.publish_failures += 1
            raise ConnectionError(
                f"the bus could not carry a message to node {node}: {exc}"
            ) from exc

    async def _deliver(self, message: dict[str, Any]) -> None:
        if self._handler is None:
            return
        try:
            await self._handler(message)
        except Exception:
            log.exception("bus message could not be handled")

    # --- the listener -------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = BACKOFF_MIN_S
        first = True
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(*[c for c in (self._channel, self._direct) if c])
                self.health.mark_up()
                if not first:
                    self.health.reconnects += 1
                    log.warning("bus: reconnected to Redis; every connection resyncs")
                    await self._resync_everyone()
                first = False
                self._subscribed.set()
                delay = BACKOFF_MIN_S
                await self._listen(pubsub)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except Exception as exc:
                if self.health.up or first:
                    log.warning("bus: Redis unreachable (%s); delivering on this node only", exc)
                first = False
                self.health.mark_down()
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _listen(self, pubsub: Any) -> None:
        """Deliver what arrives until the subscription breaks (then raise)."""
        pinged = False
        while True:
            item = await pubsub.get_message(timeout=self._idle_ping_s)
            if item is None:
                if pinged:
                    raise ConnectionError(f"no answer from Redis in {self._idle_ping_s} s")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            if item.get("type") != "message":
                continue
            try:
                message = decode(item["data"])
            except Exception:
                log.exception("bus message could not be decoded")
                continue
            if message.pop("from", None) == self.node:
                continue  # delivered when published
            await self._deliver(message)

    async def _resync_everyone(self) -> None:
        """After a break: this node's connections resync, and so do every other node's."""
        await self._deliver({"t": "resync_all"})
        with contextlib.suppress(aioredis.RedisError, OSError, TimeoutError):
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await self._redis.publish(self._channel, encode(self._resync_all()))
                self._missed = False

    def _resync_all(self) -> dict[str, Any]:
        return {"t": "resync_all", "from": self.node}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()
