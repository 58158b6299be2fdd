"""A node's announcement in the registry, written from a thread of its own.

A node's event loop can run seconds late while it takes a storm of connections (2,000 clients of
a dead node reconnecting at once). With the announcement written by the loop, such a node missed
its ``node_ttl_s``, the others took it for lost and moved its lessons away: needlessly, as every
participant then joins again. The beacon writes the announcement every ``node_heartbeat_s`` from
a daemon thread with a Redis connection of its own (synchronous redis-py), so that it depends on
the process being alive and Redis answering, not on how busy the loop is. A thread gets the GIL
at least every switch interval (5 ms) however busy the loop's thread is.

What it announces is the loop's latest reading (:meth:`Beacon.update`, called by each
``NodeWatch.beat``), stamped with the time of writing.

A process whose loop is stuck for good (blocked in a call that never returns) must still be taken
for lost: each beat the thread asks the loop to mark itself (``call_soon_threadsafe``), and it
stops announcing while the loop has not done so for ``stall_s`` (``node_stall_s``, 30 s by
default: far beyond a storm's lag, short enough that a hung node's lessons move).

Memory: one thread (its stack) and one Redis connection per node.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import msgspec
import redis

from realtime.cluster.registry import NodeInfo, encode

log = logging.getLogger(__name__)

# A write gives up after this long (the next beat tries again).
TIMEOUT_S = 2.0


class Beacon:
    def __init__(
        self,
        url: str,
        key: str,
        *,
        ttl_s: float,
        interval_s: float,
        stall_s: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.key = key
        self.ttl_s = ttl_s
        self.interval_s = interval_s
        self.stall_s = stall_s
        self._loop = loop
        self._redis = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
        self._info: NodeInfo | None = None
        # time.monotonic() of the loop's last mark (written by the loop, read by the thread).
        self._loop_seen = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-beacon", daemon=True)
        self.beats = 0  # announcements written
        self.failures = 0  # announcements that could not reach Redis
        self.stalled = 0  # beats skipped because the loop had not run for stall_s

    def start(self) -> None:
        self._thread.start()

    def update(self, info: NodeInfo, *, now: bool = False) -> None:
        """What to announce from now on; ``now``: write it at once (draining)."""
        self._info = info
        self._loop_seen = time.monotonic()
        if now:
            self._wake.set()

    def loop_lag_s(self) -> float:
        return time.monotonic() - self._loop_seen

    def stop(self) -> None:
        """No more announcements once this returns (the caller may withdraw the key)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=TIMEOUT_S + 1)
        self._redis.close()

    def _mark(self) -> None:
        self._loop_seen = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._beat()
            try:
                self._loop.call_soon_threadsafe(self._mark)
            except RuntimeError:  # the loop is closed: the node is stopping
                return
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def _beat(self) -> None:
        info = self._info
        if info is None:
            return
        if self.loop_lag_s() > self.stall_s:
            self.stalled += 1
            if self.stalled == 1 or self.stalled % 100 == 0:
                log.error(
                    "the event loop has not run for %.0f s: not announcing this node",
                    self.loop_lag_s(),
                )
            return
        raw = encode(msgspec.structs.replace(info, at=time.time()))
        try:
            self._redis.set(self.key, raw, px=int(self.ttl_s * 1000))
        except redis.RedisError as exc:
            self.failures += 1
            log.warning("announcing this node failed (%s); trying again", exc)
            return
        self.beats += 1
