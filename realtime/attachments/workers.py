"""Image and container work in worker processes: thumbnails first, the heavy rest niced.

Processes, not threads: decoding a 12-megapixel photo in a thread of the server takes the GIL
back dozens of times per photo, and with fifty photos at once the event loop waited behind them
(bench/uploads.py measured it). Two pools: the checks and thumbnails a parent waits for run at
normal CPU priority; the stripped full-size original and the preview, which nobody waits for,
run at nice 10 and use what the event loop leaves. Memory: one decoded photo per process (at
most ``Image.MAX_IMAGE_PIXELS`` x 4 bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

URGENT = 0  # what the uploader waits for (the checks, the thumbnail)
LATER = 1  # the preview and the stripped original
NICE_LATER = 10
# What the worker processes import, once, in the fork server (light: no database, no HTTP).
PRELOAD = ["realtime.attachments.images", "realtime.attachments.identify"]


def _nice(level: int) -> None:
    with contextlib.suppress(OSError):
        os.nice(level)


class MediaWorkers:
    def __init__(self, processes: int) -> None:
        n = max(2, processes)
        self._sizes = {URGENT: n // 2, LATER: n - n // 2}
        self._pools: dict[int, ProcessPoolExecutor] = {}
        self._lock = threading.Lock()

    def _pool(self, priority: int) -> ProcessPoolExecutor:
        # Started on first use: a server that never sees a photo never pays for them. Forked
        # from a fork server that imported only what the jobs need: forking the server itself
        # (an event loop, threads) is unsafe.
        with self._lock:
            pool = self._pools.get(priority)
            if pool is None:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(PRELOAD)
                pool = ProcessPoolExecutor(
                    max_workers=self._sizes[priority],
                    mp_context=ctx,
                    initializer=_nice,
                    initargs=(NICE_LATER if priority == LATER else 0,),
                )
                self._pools[priority] = pool
            return pool

    async def run(self, priority: int, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (a module-level function: it is pickled) in a worker process."""
        pool = self._pool(URGENT if priority == URGENT else LATER)
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def warm(self) -> None:
        """Start the worker processes now rather than with the first photo (seconds)."""
        for priority in (URGENT, LATER):
            pool = self._pool(priority)
            for _ in range(self._sizes[priority]):
                pool.submit(os.getpid)

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.shutdown(wait=False, cancel_futures=True)
            self._pools.clear()
