"""When Python's garbage collector may stop the node, and for how long.

A full (generation 2) collection walks every tracked object of the process while every
connection waits. At start-up those are modules and tables (``homeroom serve`` freezes them out
of the collector); then come the connections: ~140 tracked objects each, so 2,000 guardians make
a full collection take 60-330 ms here and 10,000 several times that, and CPython runs one each
time the long-lived objects have grown by a quarter — repeatedly during a morning's connection
storm, and in the middle of a notice to the whole school.

:class:`CollectorPolicy` keeps those pauses short:

- after every full collection, what survived it is frozen (``gc.freeze()``): long-lived by then,
  it is left out of the next ones, which walk only what came since;
- a *maintenance pass* (unfreeze, collect everything, freeze again) reclaims reference cycles
  among frozen objects that have since become garbage (a closed connection's, mostly). It runs
  when the node is quiet — no client request for ``quiet_s`` and no live session on it (media
  runs on the event loop; see ``realtime/cli.py``) — at most every ``interval_s``,
  and at the latest after ``max_wait_s`` even if the node never goes quiet. Until then such
  garbage waits: memory may grow by what was dropped in that time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class CollectorPolicy:
    def __init__(
        self,
        last_activity: Callable[[], float],
        *,
        interval_s: float = 600.0,
        max_wait_s: float = 3600.0,
        quiet_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.last_activity = last_activity
        self.interval_s = interval_s
        self.max_wait_s = max_wait_s
        self.quiet_s = quiet_s
        self.clock = clock
        self.last_pass = clock()
        self.passes = 0
        self._in_pass = False

    def install(self) -> None:
        """Freeze what start-up loaded and keep survivors of full collections frozen."""
        gc.collect()
        gc.freeze()
        self.last_pass = self.clock()
        gc.callbacks.append(self._after_collection)

    def uninstall(self) -> None:
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        gc.unfreeze()

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2 and not self._in_pass:
            gc.freeze()

    def due(self) -> bool:
        """Whether a maintenance pass should run now."""
        now = self.clock()
        waited = now - self.last_pass
        if waited >= self.max_wait_s:
            return True
        return waited >= self.interval_s and now - self.last_activity() >= self.quiet_s

    def maintenance(self) -> int:
        """Collect everything, frozen objects included, then freeze the survivors again."""
        self._in_pass = True
        started = time.perf_counter()
        try:
            gc.unfreeze()
            freed = gc.collect()
            gc.freeze()
        finally:
            self._in_pass = False
        self.last_pass = self.clock()
        self.passes += 1
        log.info(
            "garbage collector maintenance: %d unreachable objects freed in %.0f ms, %d frozen",
            freed,
            (time.perf_counter() - started) * 1000,
            gc.get_freeze_count(),
        )
        return freed

    async def run(self, check_every_s: float = 1.0) -> None:
        """Run maintenance passes when due, until cancelled."""
        while True:
            await asyncio.sleep(check_every_s)
            if self.due():
                self.maintenance()
