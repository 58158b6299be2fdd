"""The web app and a node busy with other new connections (admission control).

A node with room for one handshake at a time, held by another connection: the app's connection
is refused (HTTP 503 with ``Retry-After``, here 5 s). The app shows it is reconnecting, tries
again only after the wait the node asked for (with jitter: 2.5-7.5 s; socket.io alone would try
again within 0.3-0.7 s, then 0.6-1.4 s, ...), and is connected once the place is free.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from realtime import demo
from realtime.transport.admission import HANDSHAKES
from tests.conftest import make_settings, start_server, stop_server
from tests.test_admission import Raw, token
from tests.web.conftest import launch


async def until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.02)


async def test_the_app_waits_what_a_busy_node_asks_then_connects(
    tmp_path: Path, chromium: str
) -> None:
    srv = await start_server(make_settings(tmp_path, handshake_concurrency=1, handshake_queue=0))
    try:
        gate = srv.app[HANDSHAKES]
        gate.retry_after_s = lambda: 5  # type: ignore[method-assign]  # the node asks for 5 s
        async with aiohttp.ClientSession() as http, launch(srv.url, chromium) as web:
            tok = await token(srv, http, "wanghao")
            holder = await Raw.open(srv, http)  # the node's only place
            page = await web.page()
            await page.get_by_label("用户名").fill("liming")
            await page.get_by_label("密码").fill(demo.DEMO_PASSWORD)
            await page.get_by_role("button", name="登录").click()
            # Refused: the WebSocket upgrade, then long-polling (which shows the browser the
            # status and Retry-After).
            await until(lambda: gate.refused >= 2)
            await page.locator(".conn[data-state=reconnecting]").wait_for()
            await asyncio.sleep(4.0)
            # At most one more attempt (two requests) within 4 s: it waited what was asked.
            assert gate.refused <= 4, gate.refused
            await holder.join(tok)  # the place is free
            await page.locator(".conn[data-state=connected]").wait_for(timeout=20_000)
            await holder.ws.close()
    finally:
        await stop_server(srv)
