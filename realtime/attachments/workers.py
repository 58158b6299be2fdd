"""A small pool of threads for image work, with priorities: thumbnails before the rest.

Pillow releases the GIL while it decodes, resizes and encodes, so two threads use two cores
and the event loop keeps answering. The queue is unbounded in count but each job holds only a
path; the memory bound is one decoded photo per thread (``Image.MAX_IMAGE_PIXELS`` x 4 bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Priorities: lower runs first.
URGENT = 0  # what the uploader waits for (the thumbnail, the checks)
LATER = 1  # the preview and the stripped original


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class MediaWorkers:
    def __init__(self, threads: int) -> None:
        self._q: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, name=f"homeroom-media-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        for t in self._threads:
            t.start()

    async def run(self, priority: int, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._q.put((priority, next(self._order), (fn, args, loop, fut)))
        return await fut

    def _work(self) -> None:
        while True:
            _p, _n, job = self._q.get()
            if job is None:
                return
            fn, args, loop, fut = job
            if fut.cancelled():
                continue
            try:
                result, exc = fn(*args), None
            except BaseException as e:
                result, exc = None, e
            # RuntimeError: the loop is closed, nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, fut, result, exc)

    def close(self) -> None:
        for _ in self._threads:
            self._q.put((1 << 30, next(self._order), None))
