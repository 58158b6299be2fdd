"""The follower: every node reads the positions of the streams its people follow from the store,
and delivers what the bus never brought.

A node publishes an event on the bus right after committing it. If it dies in between (``kill
-9``, a lost machine), or Redis is down, the event is in the store but no other node was told.
Every ``follow_interval_s`` the follower reads the last sequence number of each stream followed
on this node (one indexed query); a stream still short of what the previous poll saw there has
its missing events read and delivered, through the same de-duplication as the bus
(realtime/cluster/positions.py): each event reaches each connection once, whichever path brings
it. So a committed event reaches every follower within about two polls even when its node died
before publishing it, and a Redis outage delays other nodes' events by a poll instead of until
the next event or reconnect.

Only a node whose bus reaches other nodes runs it: with the in-process bus there is one node,
and its publish cannot be lost without the node itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from realtime.cluster.positions import StreamPositions
from realtime.store.db import Store, StoredEvent

log = logging.getLogger(__name__)

# Streams asked about in one query (a node followed by thousands of people follows thousands):
# two arrays of this many entries go to the database, only the streams that moved come back.
KEYS_PER_QUERY = 10_000

# Delivers events (bus form) to this node's connections; True: they come from the follower.
Deliver = Callable[[list[dict[str, Any]], bool], Awaitable[None]]


class Follower:
    def __init__(
        self,
        store: Store,
        positions: StreamPositions,
        deliver: Deliver,
        *,
        interval_s: float,
        page: int,
    ) -> None:
        self.store = store
        self.positions = positions
        self._deliver = deliver
        self.interval_s = interval_s
        self.page = page
        self._task: asyncio.Task[None] | None = None
        # For /metrics and docs/scaling.md: polls, queries run, time spent, failed polls.
        self.polls = 0
        self.queries = 0
        self.seconds = 0.0
        self.failures = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stream-follower")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
                if failing:
                    log.warning("follower: the store answers again")
                failing = False
            except Exception as exc:
                # The store is unreachable (docs/operations.md): keep trying, log it once.
                self.failures += 1
                if not failing:
                    log.warning("follower: cannot read stream positions: %s", exc)
                failing = True

    async def poll(self) -> int:
        """One round; returns how many events it delivered."""
        known = list(self.positions.known().items())
        if not known:
            return 0
        started = time.perf_counter()
        fetched: list[StoredEvent] = []
        try:
            async with self.store.read() as conn:
                ahead: dict[str, int] = {}
                for i in range(0, len(known), KEYS_PER_QUERY):
                    chunk = dict(known[i : i + KEYS_PER_QUERY])
                    ahead.update(await self.store.streams_ahead(conn, chunk))
                    self.queries += 1
                for stream, after in sorted(self.positions.observe(ahead).items()):
                    fetched += await self.store.events_after(conn, stream, after, self.page)
                    self.queries += 1
        finally:
            self.polls += 1
            self.seconds += time.perf_counter() - started
        if not fetched:
            return 0
        before = self.positions.recovered
        await self._deliver([e.wire() for e in fetched], True)
        delivered = self.positions.recovered - before
        if delivered:
            log.info("follower: delivered %d event(s) the bus never brought", delivered)
        return delivered
