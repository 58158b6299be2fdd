"""The web app's ``rtc.republish``: a teacher whose media went through an edge that dies
publishes again, and her students' pages play her again.

Three nodes share a fresh PostgreSQL database and a Redis channel: A and B in this process, C a
``homeroom serve`` process (tests/nodes.py) to ``kill -9``; every page's connection is on A (no
node holding a connection dies, so no balancer is needed: what is tested is the media's edge
dying under a connection that stays). The lesson runs on A, which has room for one viewer
(``cascade_node_streams`` 4 less a leg reserve of 3). Ms. Li starts it (the API) and Wang Hao's
page joins first: A serves him. Her page joins next: A is full, so her media connections go to a
new edge, C (more room than B), and she publishes there; A pulls her up C's uplink and sends her
to Wang Hao. C gets SIGKILL: once the registry drops it (TTL 3 s), A tells her page
``rtc.resubscribe`` then ``rtc.republish``; it subscribes again (a new edge, B) and publishes
again there, and Wang Hao's page plays her camera again. Without the page's ``rtc.republish``
her video never comes back (checked by disabling it once: the test fails).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from realtime.live.service import LiveService
from realtime.transport.rest import LIVE, NODES
from tests.chromium import CHROMIUM, PAD, PC, require
from tests.conftest import Server, free_port, make_settings, start_server, stop_server
from tests.live.test_failover import common_settings
from tests.nodes import node_process
from tests.services import drop_postgres_database
from tests.test_restart import ServerProcess
from tests.web.live_scenario import (
    People,
    chromium,
    frames_from,
    join_from_banner,
    plays,
    stats,
)

pytestmark = pytest.mark.timeout(240)

# A teacher accepts her students seeing her again within this after her edge died.
SEEN_AGAIN_S = 10.0
# The registry as these nodes run it: an announcement every 0.5 s, gone after 3 s without one
# (a loaded machine's missed beats must not drop C before it is killed).
REGISTRY = {"node_heartbeat_s": 0.5, "node_ttl_s": 3.0}


def live(srv: Server) -> LiveService:
    service: LiveService = srv.app[LIVE]
    return service


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout``."""
    t0 = time.monotonic()
    while not await check():
        assert time.monotonic() - t0 < timeout, f"timed out after {timeout} s: {what}"
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


async def shown(page: Page, test_id: str) -> dict[str, Any] | None:
    """What the tile's ``<video>`` shows: its picture's width, the frames it presented, and
    whether its stream has a live video track (None: no such tile or no video in it)."""
    tile = page.get_by_test_id(test_id)
    if await tile.count() == 0:
        return None
    found: dict[str, Any] | None = await tile.first.evaluate(
        """el => {
            const v = el.querySelector('video');
            if (!v) return null;
            const s = v.srcObject;
            return {
                width: v.videoWidth,
                frames: v.getVideoPlaybackQuality().totalVideoFrames,
                live: !!s && s.getVideoTracks().some(t => t.readyState === 'live'),
            };
        }"""
    )
    return found


async def test_the_teachers_page_publishes_again_when_her_edge_is_killed(
    tmp_path: Path,
) -> None:
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (run `make browser`)")
    common = common_settings()
    db_name = common.pop("_db_name")
    common |= REGISTRY | {"cascade_leg_reserve": 3}
    servers: list[Server] = []
    edge_c: ServerProcess | None = None
    watch: asyncio.Task[None] | None = None
    result: dict[str, Any] = {}
    try:
        a = await start_server(
            make_settings(tmp_path / "a", node_name="node-a", cascade_node_streams=4, **common)
        )
        servers.append(a)
        b = await start_server(
            make_settings(tmp_path / "b", node_name="node-b", cascade_node_streams=4, **common),
            seed=False,
        )
        servers.append(b)
        edge_c = node_process(tmp_path, "node-c", free_port(), cascade_node_streams=6, **common)
        edge_c.start()
        await edge_c.wait_ready(60)

        async def every_node_seen() -> bool:
            return all(
                set(srv.app[NODES].membership.nodes) == {"node-a", "node-b", "node-c"}
                for srv in servers
            )

        await until(every_node_seen, 15, "every node in the registry")
        li_id, wang_id = a.uid("li"), a.uid("wanghao")
        host = await a.client("li")
        sid = (
            await host.request(
                "session.start", {"class_id": a.class_id, "kind": "lesson", "title": "边缘重发"}
            )
        )["session"]["id"]
        assert sid in live(a).runtimes, "the lesson runs on A, the node asked (equal loads)"
        rt = live(a).runtimes[sid]
        async with chromium(tmp_path) as persistent:
            people = People(persistent, a.url, result)
            wang = await people.sign_in("wanghao", PAD)
            await join_from_banner(wang, a.url, a.class_id, "加入")
            await wang.get_by_test_id("console").wait_for()

            async def wang_subscribed() -> bool:
                return wang_id in rt.subscribers

            await until(wang_subscribed, 20, "A serving Wang Hao")
            li = await people.sign_in("li", PC)
            await join_from_banner(li, a.url, a.class_id, "加入")
            await li.get_by_test_id("my-video").locator("video").wait_for()
            await plays(wang, li_id, "Wang Hao playing Ms. Li")
            # Her media connections are on C, where she publishes; Wang Hao's on A.
            assert rt.cascade is not None
            assert rt.cascade.viewers == {li_id: "node-c"}, rt.cascade.viewers
            assert rt.cascade.publishers == {li_id: "node-c"}, rt.cascade.publishers
            tile = f"video-{li_id}-camera"

            async def camera_frames() -> int:
                return frames_from(await stats(wang), li_id, source="camera")

            async def playing() -> bool:
                seen = await shown(wang, tile)
                return seen is not None and seen["live"] and seen["width"] > 0

            await until(playing, 20, "Wang Hao's page showing Ms. Li")

            cascade = rt.cascade
            phases: dict[str, float] = {}

            async def timeline() -> None:
                """When A let C go, placed her subscribe leg again, and took her publish."""
                while True:
                    now = round(time.monotonic() - t0, 2)
                    if cascade.viewers.get(li_id) != "node-c":
                        phases.setdefault("edge_gone_s", now)
                    if cascade.viewers.get(li_id) == "node-b":
                        phases.setdefault("subscribed_again_s", now)
                    if cascade.publishers.get(li_id) == "node-b":
                        phases.setdefault("published_again_s", now)
                        return
                    await asyncio.sleep(0.05)

            t0 = time.monotonic()
            edge_c.crash()
            watch = asyncio.get_running_loop().create_task(timeline())
            # Her video stops (C sent it): no new frame for a second.
            last, since = await camera_frames(), time.monotonic()
            while time.monotonic() - since < 1.0:
                assert time.monotonic() - t0 < SEEN_AGAIN_S, "her video never stopped"
                await asyncio.sleep(0.1)
                now = await camera_frames()
                if now != last:
                    last, since = now, time.monotonic()
            result["stopped_s"] = round(since - t0, 2)

            async def seen_again() -> bool:
                seen = await shown(wang, tile)
                return (
                    await camera_frames() >= last + 10
                    and seen is not None
                    and seen["live"]
                    and seen["width"] > 0
                )

            deadline = SEEN_AGAIN_S - (time.monotonic() - t0)
            try:
                await until(seen_again, deadline, "Wang Hao's page playing Ms. Li again")
            except AssertionError as exc:
                live_state = await li.evaluate("() => window.__homeroom.live()")
                raise AssertionError(
                    f"{exc}; {result}; her page: {await stats(li)}; {live_state}; "
                    f"cascade: {cascade.viewers}, {cascade.publishers}; {phases}"
                ) from None
            result["seen_again_s"] = round(time.monotonic() - t0, 2)
            await asyncio.wait_for(watch, 5)
            result |= phases
            frames0 = (await shown(wang, tile) or {}).get("frames", 0)

            async def presenting() -> bool:
                return ((await shown(wang, tile)) or {}).get("frames", 0) > frames0 + 5

            await until(presenting, 5, "the tile presenting her new frames")
            print(f"web_republish: {result}")
            # She published again, on B (the edge that serves her now), on the same connection.
            assert cascade.viewers == {li_id: "node-b"}, cascade.viewers
            assert cascade.publishers == {li_id: "node-b"}, cascade.publishers
            assert await li.evaluate("() => window.__homeroom.live().phase") == "live"
            assert result.get("page_errors", []) == [], result["page_errors"]
    finally:
        if watch is not None:
            watch.cancel()
        if edge_c is not None:
            edge_c.stop()  # (killed already, unless the test failed before)
        for srv in reversed(servers):
            await stop_server(srv)
        drop_postgres_database(db_name)
