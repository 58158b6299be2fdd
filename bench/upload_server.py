"""A Homeroom server for bench/uploads.py: the app as ``homeroom serve`` runs it (uvloop, the
collector policy: realtime/cli.py) plus a ticker measuring how long the event loop was kept from
running (GET /bench/lag?reset=1 returns and clears the maximum).

A watchdog thread explains every block over ``BENCH_STACKS_MS`` (default 20 ms): it reads the
loop thread's scheduler counters (``/proc/self/task/<tid>/schedstat``) at the block's start and
end, so each block splits into time the loop thread *ran* (Python or C code holding the loop:
what the server can change), time it *waited for a CPU* (runnable, not scheduled: the machine's
other work) and time it *slept* (neither: waiting for the GIL, or a blocking system call on the
loop). The worst block's split is in the answer (``worst_block``), with the longest the loop ran
within any block (``max_block_ran_ms``). With ``BENCH_STACKS=1`` the watchdog also samples the
loop thread's Python stack every 5 ms during a block and logs the ten worst blocks. Garbage
collections are timed always (``gc.callbacks``). ``BENCH_PROFILE=FILE``: cProfile of the loop
thread during the measurement.

Run: python -m bench.upload_server CONFIG.toml
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import logging
import os
import sys
import threading
import time
import traceback
from collections import Counter
from typing import Any

from aiohttp import web

from realtime import cli
from realtime.config import load_settings

TICK_S = 0.005


def _schedstat(tid: int) -> tuple[float, float]:
    """Seconds the thread ran on a CPU and waited runnable for one, so far."""
    with open(f"/proc/self/task/{tid}/schedstat") as fh:
        run_ns, wait_ns, _slices = fh.read().split()
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


class Watchdog:
    """Explains the loop's blocks (see the module docstring). Runs in a thread of its own."""

    def __init__(self, threshold_s: float, stacks: bool) -> None:
        self.threshold_s = threshold_s
        self.stacks = stacks
        self.beats = 0
        self.blocks: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def beat(self) -> None:
        self.beats += 1

    def start(self) -> None:
        ident, tid = threading.get_ident(), threading.get_native_id()
        threading.Thread(target=self._run, args=(ident, tid), daemon=True).start()

    def _run(self, ident: int, tid: int) -> None:
        seen = self.beats
        since = time.monotonic()
        sched0 = _schedstat(tid)
        samples: Counter[str] = Counter()
        while True:
            time.sleep(0.005)
            now = time.monotonic()
            if self.beats != seen:
                gap = now - since
                if gap > self.threshold_s + TICK_S:
                    ran, waited = (b - a for a, b in zip(sched0, _schedstat(tid), strict=True))
                    with self.lock:
                        self.blocks.append(
                            {
                                "ms": round(gap * 1000, 1),
                                "ran_ms": round(ran * 1000, 1),
                                "waited_cpu_ms": round(waited * 1000, 1),
                                "slept_ms": round(max(0.0, gap - ran - waited) * 1000, 1),
                                "stacks": samples.most_common(3),
                            }
                        )
                seen, since, sched0 = self.beats, now, _schedstat(tid)
                samples = Counter()
            elif self.stacks and now - since > TICK_S + 0.005:
                frame = sys._current_frames().get(ident)
                if frame is not None:
                    stack = traceback.extract_stack(frame)[-6:]
                    samples[" < ".join(f"{f.name}:{f.lineno}" for f in reversed(stack))] += 1

    def report(self, reset: bool) -> list[dict[str, Any]]:
        with self.lock:
            blocks = sorted(self.blocks, key=lambda b: -b["ms"])
            if reset:
                self.blocks = []
        return blocks


class CollectorTimer:
    """How long each garbage collection stopped the process, by generation."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.worst: dict[int, float] = {}
        self.count: Counter[int] = Counter()

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.t0 = time.perf_counter()
            return
        gen = info["generation"]
        self.worst[gen] = max(self.worst.get(gen, 0.0), time.perf_counter() - self.t0)
        self.count[gen] += 1

    def report(self, reset: bool) -> dict[str, Any]:
        out = {
            "gc_max_ms": {g: round(s * 1000, 2) for g, s in sorted(self.worst.items())},
            "gc_count": dict(sorted(self.count.items())),
        }
        if reset:
            self.worst, self.count = {}, Counter()
        return out


def main() -> None:
    settings = load_settings(sys.argv[1])
    if os.environ.get("BENCH_NO_FSYNC"):  # an experiment: is the disk what waits?
        os.fsync = lambda fd: None
    # As `homeroom serve` runs (realtime/cli.py): uvloop, the collector policy.
    cli.use_uvloop()
    app = cli.serving_app(settings)
    worst = {"lag": 0.0}
    watchdog = Watchdog(
        float(os.environ.get("BENCH_STACKS_MS", "20")) / 1000, bool(os.environ.get("BENCH_STACKS"))
    )
    collections = CollectorTimer()
    profile = cProfile.Profile()
    gc.callbacks.append(collections)
    log = logging.getLogger("bench")

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(TICK_S)
            worst["lag"] = max(worst["lag"], loop.time() - t0 - TICK_S)
            watchdog.beat()

    async def lag(request: web.Request) -> web.Response:
        value = worst["lag"]
        reset = bool(request.query.get("reset"))
        if reset:
            worst["lag"] = 0.0
        if os.environ.get("BENCH_PROFILE"):  # the loop thread's CPU, by function
            if reset:
                profile.enable()
            else:
                profile.disable()
                profile.dump_stats(os.environ["BENCH_PROFILE"])
        gcs = collections.report(reset)
        blocks = watchdog.report(reset)
        if os.environ.get("BENCH_STACKS") and not reset:  # reset: the warm-up's, not logged
            for block in blocks[:10]:
                log.warning("loop block %s", block)
            log.warning("collections %s", gcs)
        # The longest block and the one in which the loop thread itself ran longest.
        worst_block = {k: v for k, v in blocks[0].items() if k != "stacks"} if blocks else None
        most_ran = max((b["ran_ms"] for b in blocks), default=0.0)
        return web.json_response(
            {
                "max_lag_s": value,
                "at": time.time(),
                "worst_block": worst_block,
                "max_block_ran_ms": most_ran,
                **gcs,
            }
        )

    async def start(_app: web.Application) -> None:
        logging.basicConfig(level=logging.WARNING)
        if os.environ.get("BENCH_SLOW_CALLBACKS"):
            # Name what blocks the loop (asyncio's debug mode logs callbacks over 20 ms).
            asyncio.get_running_loop().set_debug(True)
            asyncio.get_running_loop().slow_callback_duration = 0.02
        app["ticker"] = asyncio.get_running_loop().create_task(ticker())
        watchdog.start()

    app.on_startup.append(start)
    app.router.add_get("/bench/lag", lag)
    cli.run_serving(app, settings)


if __name__ == "__main__":
    main()
