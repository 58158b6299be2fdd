"""The loop's I/O threads are all running before the first upload needs one: a thread started
on demand makes the event loop wait until it runs (``Thread.start``), tens of milliseconds on a
busy machine (bench/uploads.py)."""

from __future__ import annotations

import asyncio
import threading

from realtime.app import use_io_threads


def _io_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("io_"))


def test_every_io_thread_is_started_with_the_loop() -> None:
    async def main() -> tuple[int, int]:
        before = _io_threads()
        use_io_threads(5)
        started = _io_threads() - before
        # Each of them takes jobs (five at once: none waits for a thread to start).
        gate = threading.Barrier(5, timeout=10)
        await asyncio.gather(*(asyncio.to_thread(gate.wait) for _ in range(5)))
        use_io_threads(5)  # once per loop
        return started, _io_threads() - before

    loop = asyncio.new_event_loop()
    try:
        started, after = loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    assert started == 5 and after == 5
