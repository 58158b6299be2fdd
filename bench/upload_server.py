"""A Homeroom server for bench/uploads.py: the ordinary app plus a ticker measuring how long the
event loop was kept from running (GET /bench/lag?reset=1 returns and clears the maximum).

Run: python -m bench.upload_server CONFIG.toml
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from aiohttp import web

from realtime.app import create_app
from realtime.config import load_settings

TICK_S = 0.005


def main() -> None:
    settings = load_settings(sys.argv[1])
    if os.environ.get("BENCH_NO_FSYNC"):  # an experiment: is the disk what waits?
        os.fsync = lambda fd: None
    app = create_app(settings)
    worst = {"lag": 0.0}

    beat = {"t": time.monotonic()}

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(TICK_S)
            worst["lag"] = max(worst["lag"], loop.time() - t0 - TICK_S)
            beat["t"] = time.monotonic()

    def watchdog(main_id: int) -> None:
        """BENCH_STACKS=1: print the event loop thread's stack when it is stuck > 50 ms."""
        import traceback

        while True:
            time.sleep(0.01)
            if time.monotonic() - beat["t"] > 0.05:
                frame = sys._current_frames().get(main_id)
                if frame is not None:
                    print("".join(traceback.format_stack(frame)[-8:]), flush=True)
                time.sleep(0.05)

    async def lag(request: web.Request) -> web.Response:
        value = worst["lag"]
        if request.query.get("reset"):
            worst["lag"] = 0.0
        return web.json_response({"max_lag_s": value, "at": time.time()})

    async def start(_app: web.Application) -> None:
        if os.environ.get("BENCH_SLOW_CALLBACKS"):
            # Name what blocks the loop (asyncio's debug mode logs callbacks over 20 ms).
            logging.basicConfig(level=logging.WARNING)
            asyncio.get_running_loop().set_debug(True)
            asyncio.get_running_loop().slow_callback_duration = 0.02
        app["ticker"] = asyncio.get_running_loop().create_task(ticker())
        if os.environ.get("BENCH_STACKS"):
            import threading

            main_id = threading.get_ident()
            threading.Thread(target=watchdog, args=(main_id,), daemon=True).start()

    app.on_startup.append(start)
    app.router.add_get("/bench/lag", lag)
    web.run_app(app, host=settings.host, port=settings.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
