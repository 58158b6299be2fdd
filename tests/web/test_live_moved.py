"""The web app's live console when the lesson's server stops: it follows the lesson elsewhere.

Two nodes (``homeroom serve`` processes) share a fresh PostgreSQL database and a Redis channel,
behind a TCP load balancer (tests/nodes.py) that the pages reach; they gather ICE on 127.0.0.1
only. Ms. Li starts a lesson from her class home and Wang Hao joins it from the banner; then the
lesson's node gets SIGTERM (it drains, handing the lesson to the other node, and exits). The
pages whose connection was on it reconnect through the balancer; the others are told by the
``session.moved`` event; both join again by themselves, Ms. Li publishes her camera again, and
Wang Hao plays her again, now from the other node. Before the move Ms. Li shares her screen and
Wang Hao is on stage (he raised his hand, she invited him): after it he is still on stage and
sends his camera again by himself, she plays him again, and her screen is shared again.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from realtime.store import Store, open_store
from realtime.store.schema import live_sessions
from tests.chromium import CHROMIUM, PAD, PC, require
from tests.conftest import make_settings, start_server, stop_server
from tests.nodes import Balancer, node_process
from tests.services import drop_postgres_database, postgres_database, redis_url
from tests.test_restart import ServerProcess
from tests.web.live_scenario import (
    People,
    chromium,
    frames_from,
    join_from_banner,
    plays,
    start_from_class_home,
    stats,
)

pytestmark = pytest.mark.timeout(180)


async def subscribe_port(page: Any) -> int | None:
    pair = ((await stats(page)).get("subscribe") or {}).get("pair")
    return None if pair is None else int(pair["remote"]["port"])


async def test_the_console_follows_a_lesson_whose_server_stops(tmp_path: Path) -> None:
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (run `make browser`)")
    db_url, db_name = postgres_database()
    common = {
        "database_url": db_url,
        "redis_url": redis_url(),
        "bus_channel": f"homeroom-test-{uuid.uuid4().hex[:12]}",
        "node_heartbeat_s": 0.5,
        "node_ttl_s": 2.0,
        "ice_host_addresses": "127.0.0.1",
    }
    nodes: list[ServerProcess] = []
    store: Store | None = None
    balancer: Balancer | None = None
    result: dict[str, Any] = {}
    try:
        # The demo school, seeded by an app that then stops; the nodes are processes.
        seeder = await start_server(make_settings(tmp_path / "seed", node_name="seed", **common))
        demo = seeder.demo
        await stop_server(seeder)
        for name in ("node-a", "node-b"):
            n = node_process(tmp_path, name, shutdown_timeout_s=3, **common)
            n.start()
            nodes.append(n)
            await n.wait_ready(60)
        balancer = Balancer([int(n.url.rsplit(":", 1)[1]) for n in nodes])
        await balancer.start()
        class_id = int(demo["class_id"])
        li_id = int(demo["users"]["li"])
        wang_id = int(demo["users"]["wanghao"])
        store = open_store(db_url)
        async with chromium(tmp_path) as persistent:
            people = People(persistent, balancer.url, result)
            li = await people.sign_in("li", PC)
            sid = await start_from_class_home(li, balancer.url, class_id, "开始上课")
            await li.get_by_test_id("my-video").locator("video").wait_for()
            wang = await people.sign_in("wanghao", PAD)
            await join_from_banner(wang, balancer.url, class_id, "加入")
            await wang.get_by_test_id("console").wait_for()
            await plays(wang, li_id, "Wang Hao playing Ms. Li")
            # Ms. Li shares her screen; Wang Hao raises his hand and goes on stage.
            await li.get_by_role("button", name="共享屏幕").click()
            await li.get_by_test_id("my-screen").wait_for()
            await wang.get_by_role("button", name="举手").click()
            hands = li.get_by_test_id("hands")
            await hands.get_by_role("button", name="邀请 王浩 Wang Hao 上台发言").click()
            await wang.get_by_test_id("stage-invite").get_by_role("button", name="上台").click()
            await wang.get_by_test_id("my-video").locator("video").wait_for()
            await plays(li, wang_id, "Ms. Li playing Wang Hao")
            await expect(hands).to_contain_text("台上 1/6")
            before = await subscribe_port(wang)
            li_before = await subscribe_port(li)

            async def node_of_session() -> str:
                async with store.read() as conn:
                    row = (
                        await conn.execute(
                            select(live_sessions.c.node, live_sessions.c.ended_at).where(
                                live_sessions.c.id == sid
                            )
                        )
                    ).one()
                assert row.ended_at is None  # never ended
                return str(row.node)

            media_name = await node_of_session()
            media = nodes[["node-a", "node-b"].index(media_name)]
            t0 = time.monotonic()
            assert media.proc is not None
            media.proc.terminate()  # SIGTERM: it drains, then exits
            await asyncio.to_thread(media.proc.wait, 30)
            # Handed over to the other node, not ended.
            assert await node_of_session() != media_name

            async def plays_again() -> bool:
                port, li_port = await subscribe_port(wang), await subscribe_port(li)
                wang_stats, li_stats = await stats(wang), await stats(li)
                return (
                    port is not None
                    and port != before
                    and frames_from(wang_stats, li_id, source="camera") > 10
                    # Her screen, shared again by her page; him, still on stage, by his.
                    and frames_from(wang_stats, li_id, source="screen") > 0
                    and li_port is not None
                    and li_port != li_before
                    and frames_from(li_stats, wang_id) > 10
                )

            deadline = time.monotonic() + 30
            while not await plays_again():
                assert time.monotonic() < deadline, (
                    f"Wang Hao never played Ms. Li again: {await stats(wang)}; her page: "
                    f"{await stats(li)}; {result}; "
                    f"{await li.evaluate('() => window.__homeroom.live()')}"
                )
                await asyncio.sleep(0.25)
            print(f"web_plays_again_s={time.monotonic() - t0:.2f}")
            await expect(hands).to_contain_text("台上 1/6")  # still on stage, on her console
            # Both consoles are still in the lesson: nobody was told it ended.
            for page in (li, wang):
                await expect(page.get_by_test_id("console")).to_be_visible()
                await expect(page.get_by_test_id("session-over")).to_have_count(0)
                live = await page.evaluate("() => window.__homeroom.live()")
                assert live["phase"] == "live" and live["sessionId"] == sid
            assert result.get("page_errors", []) == []
    finally:
        if balancer is not None:
            await balancer.close()
        for n in nodes:
            n.stop()
        if store is not None:
            await store.close()
        drop_postgres_database(db_name)
