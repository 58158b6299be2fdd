"""A Chromium teacher shares a screen in VP8 with temporal layers; two Chromium viewers, one on
a link too short for the full frame rate.

Run by tests/live/test_screen_frame_rate.py inside a network namespace of its own that has only
``lo`` (``tests.chromium.run_in_loopback_namespace``). The teacher's page shares a 1280x720
"screen" (``hr.publishScreen``: a canvas of text and a block of noise at 30 fps, contentHint
"detail", ``scalabilityMode`` L1T3, at most 1.2 Mbit/s); two student pages watch. Once both
decode, one viewer's downlink is shaped on ``lo`` inside the namespace (an HTB class of
``SHAPED_KBIT`` and a 100-packet queue that only the packets to that viewer's UDP port are
filtered into, as tests/live/shaped_scenario.py does). Every ``POLL_S`` each page's decoded
frames and frame size are sampled, and the server's link stats. ``RESULT <json>`` last.

With ``HOMEROOM_SCREEN_EDGE_DB`` (a fresh PostgreSQL database's name) the lesson spans two
nodes (issue #13's cascade, docs/scaling.md): the teacher's page uses node A, the session's
origin, which keeps no room for viewers (``cascade_node_streams`` 1, all kept for legs), and
both viewers' pages use node B, which serves them as an edge fed by one leg from A. The nodes
share that database (through PostgreSQL's Unix socket: the namespace has no route to the
machine's 127.0.0.1) and a redis-server of the scenario's own, started inside the namespace.
The stats are then those of B, where the viewers are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import Page

from media.forwarder import ForwardedTrack
from media.link import participant_links
from media.screen import ScreenSubscriberTrack
from realtime.live.edge import EdgeRuntime
from realtime.live.runtime import LiveRuntime
from realtime.transport.rest import LIVE
from tests.chromium import report_result
from tests.conftest import Server, free_port, stop_server
from tests.live.chromium_scenario import (
    start_lesson_in_page,
    start_server_with_page,
    with_browser,
)
from tests.live.shaped_scenario import FLAGS, QUEUE_PACKETS, TC, page_for, run
from tests.live.test_cross_node import node_settings, start_nodes

# (username, downlink kbit/s or None: unshaped).
SHAPED_KBIT = int(os.environ.get("HOMEROOM_SCREEN_SHAPED_KBIT", "600"))
VIEWERS = (("wanghao", None), ("liming", SHAPED_KBIT))
SCREEN_FPS = int(os.environ.get("HOMEROOM_SCREEN_FPS", "15"))
SCREEN_MAX_BITRATE = 1_200_000
NOISE = int(os.environ.get("HOMEROOM_SCREEN_NOISE", "96"))  # a square of fresh noise (pixels)
RAMPED = 0.7  # the screen at this share of its maxBitrate has ramped up
CLIMB_S = float(os.environ.get("HOMEROOM_SCREEN_CLIMB_S", "30"))
SHAPED_S = float(os.environ.get("HOMEROOM_SCREEN_SHAPED_S", "24"))
POLL_S = 0.5
# The edge run (see above): the database's name, and where PostgreSQL's socket is.
EDGE_DB = os.environ.get("HOMEROOM_SCREEN_EDGE_DB", "")
PG_SOCKET_DIR = os.environ.get("HOMEROOM_PG_SOCKET_DIR", "/var/run/postgresql")


def shape(port: int, kbit: int) -> None:
    """One HTB class for the packets to ``port`` on lo; everything else unshaped."""
    run(TC, "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10")
    run(TC, "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb",
        "rate", "10gbit")  # fmt: skip
    run(TC, "class", "add", "dev", "lo", "parent", "1:", "classid", "1:21", "htb",
        "rate", f"{kbit}kbit", "ceil", f"{kbit}kbit", "burst", "6k")  # fmt: skip
    run(TC, "qdisc", "add", "dev", "lo", "parent", "1:21", "handle", "21:", "pfifo",
        "limit", str(QUEUE_PACKETS))  # fmt: skip
    run(TC, "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1",
        "u32", "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", str(port),
        "0xffff", "flowid", "1:21")  # fmt: skip


async def sample(page: Page) -> dict[str, Any]:
    stats = await page.evaluate("() => hr.stats()")
    sub = stats["subscribe"] or {"inbound": [], "pair": None}
    video: dict[str, Any] = next((r for r in sub["inbound"] if r["kind"] == "video"), {})
    return {
        "t": time.monotonic(),
        "frames": video.get("framesDecoded") or 0,
        "width": video.get("width"),
        "height": video.get("height"),
        "freezes": video.get("freezeCount") or 0,
        "packets": video.get("packets") or 0,
        "lost": video.get("packetsLost") or 0,
        "plis": video.get("plis") or 0,
        "pair": sub["pair"],
    }


def temporal_counts(track: ForwardedTrack) -> list[int]:
    """Frames of each TID the server received of the screen."""
    return [meter.frames for meter in track.temporal._meters]


def trace_selection(trace: list[list[Any]]) -> None:
    """Record every feedback a screen viewer's selection takes and what it decided."""
    feedback = ScreenSubscriberTrack.link_feedback

    def traced(self: ScreenSubscriberTrack, *args: Any) -> None:
        feedback(self, *args)
        estimate, _age, loss, rtt, report, received = (*args, None)[:6]
        trace.append([
            round(time.monotonic(), 2), self.subscriber_id, estimate, round(loss, 3),
            None if rtt is None else round(rtt, 3), report, self.filter.target, self.layer,
            None if received is None else round(received), self.selector.reason,
            [None if math.isinf(b.bitrate) else round(b.bitrate / 1000)
             for b in self.selector.layers],
        ])  # fmt: skip

    ScreenSubscriberTrack.link_feedback = traced  # type: ignore[method-assign,assignment]


async def scenario(tmp: Path, result: dict[str, Any]) -> None:
    result["trace"] = []
    trace_selection(result["trace"])
    if EDGE_DB:
        async with two_nodes(tmp) as (origin, edge):
            await with_browser(
                origin, tmp, FLAGS, lambda srv, context: watch(srv, edge, context, result)
            )
        return
    srv = await start_server_with_page(tmp)
    await with_browser(srv, tmp, FLAGS, lambda srv, context: watch(srv, srv, context, result))


@contextlib.asynccontextmanager
async def redis_of_its_own(tmp: Path) -> AsyncIterator[str]:
    """A redis-server inside the namespace, keeping nothing; its URL."""
    port = free_port()
    exe = shutil.which("redis-server")
    assert exe is not None, "redis-server is not installed"
    proc = await asyncio.create_subprocess_exec(
        exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert time.monotonic() < deadline, f"redis-server did not listen on {port}"
            await asyncio.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def two_nodes(tmp: Path) -> AsyncIterator[tuple[Server, Server]]:
    """Nodes A (the session's origin: every stream it may send kept for legs) and B (room
    for the viewers), sharing the database ``EDGE_DB`` and a bus."""
    async with redis_of_its_own(tmp) as redis:
        channel = f"homeroom-screen-{uuid.uuid4().hex[:12]}"
        servers: list[Server] = []
        try:
            database = f"postgresql://postgres@/{EDGE_DB}?host={PG_SOCKET_DIR}"
            settings = []
            for name, streams in (("node-a", 1), ("node-b", 8)):
                (tmp / name).mkdir()
                settings.append(
                    node_settings(
                        tmp / name,
                        name,
                        database,
                        redis,
                        channel,
                        cascade_node_streams=streams,
                        cascade_leg_reserve=1,
                    )
                )
            await start_nodes(settings, servers)
        except BaseException:
            for srv in reversed(servers):
                await stop_server(srv)
            raise
        try:
            yield servers[0], servers[1]
        finally:
            await stop_server(servers[1])  # A is stopped by with_browser


async def served_at(srv: Server, sid: int, track_id: str) -> tuple[ForwardedTrack, Any]:
    """The screen's track on the node serving the viewers, and a function giving its viewers'
    links (as ``LiveRuntime.stats()["links"]``)."""
    runtime: LiveRuntime | None = srv.app[LIVE].runtimes.get(sid)
    if runtime is not None:
        track = runtime.router.get(track_id)
        assert isinstance(track, ForwardedTrack), track
        return track, lambda: runtime.stats()["links"]
    deadline = time.monotonic() + 20
    while True:
        edge: EdgeRuntime | None = srv.app[LIVE].edges.sessions.get(sid)
        copy = edge.router.get(track_id) if edge is not None else None
        if edge is not None and isinstance(copy, ForwardedTrack):
            return copy, functools.partial(participant_links, {}, edge.viewers)
        assert time.monotonic() < deadline, f"the screen never reached {srv.settings.node_name}"
        await asyncio.sleep(0.1)


async def watch(srv: Server, served: Server, context: Any, result: dict[str, Any]) -> None:
    """The teacher's page on ``srv`` (the session's origin), the viewers' on ``served``."""
    teacher = await context.new_page()
    await teacher.goto(srv.url + "/test/live.html")
    sid, _ = await start_lesson_in_page(teacher, srv, "Screen share")
    result["publish"] = await teacher.evaluate(
        "([f, b, n]) => hr.publishScreen(f, b, n)", [SCREEN_FPS, SCREEN_MAX_BITRATE, NOISE]
    )
    pages: dict[str, Page] = {}
    for name, _kbit in VIEWERS:
        page = await page_for(context, served.url, name)
        await page.evaluate("(s) => hr.join(s)", sid)
        await page.evaluate("() => hr.subscribe()")
        pages[name] = page
    timeline: dict[str, list[dict[str, Any]]] = {name: [] for name in pages}
    result["timeline"] = timeline
    runtime = srv.app[LIVE].runtimes[sid]
    screen = next(t for t in runtime.router.tracks() if t.source == "screen")
    published = runtime.router.get(screen.track_id)
    assert isinstance(published, ForwardedTrack), published
    # The screen as the viewers' node has it (the origin's track, or the copy the leg feeds
    # an edge), and its viewers' links there.
    track, links_of = await served_at(served, sid, screen.track_id)
    result["served_by"] = served.settings.node_name if served is not srv else "origin"
    uids = {name: str(srv.uid(name)) for name in pages}
    result["uids"] = uids
    rates: list[dict[str, Any]] = []
    result["server"] = rates

    async def poll() -> dict[str, dict[str, Any]]:
        samples = await asyncio.gather(*(sample(page) for page in pages.values()))
        now = dict(zip(pages, samples, strict=True))
        for name, s in now.items():
            timeline[name].append({k: v for k, v in s.items() if k != "pair"})
        links = links_of()
        rates.append(
            {
                "t": time.monotonic(),
                "tids": temporal_counts(track),
                "published_tids": temporal_counts(published),
                "frame_rates": {
                    name: (links.get(uid, {}).get("subscribe") or {}).get("frame_rates")
                    for name, uid in uids.items()
                },
                "estimates": {
                    name: (links.get(uid, {}).get("subscribe") or {}).get("estimate_bps")
                    for name, uid in uids.items()
                },
            }
        )
        return now

    deadline = time.monotonic() + 40
    while True:
        now = await poll()
        if all(s["frames"] > 0 and s["pair"] for s in now.values()):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"viewers not all receiving: {now}")
        await asyncio.sleep(POLL_S)
    # Both viewers climb to the full frame rate on their open links first (or not within the
    # time given, which the result shows): the shaping then has to move one of them.
    # The teacher's encoder has ramped up too (a screen whose full rate fits the shaped link
    # would shape nothing).
    climb_deadline = time.monotonic() + CLIMB_S
    measured: list[float] | None = None
    while time.monotonic() < climb_deadline:
        steps = rates[-1]["frame_rates"]
        measured = track.temporal.rates(asyncio.get_running_loop().time())
        ramped = measured is not None and measured[-1] >= RAMPED * SCREEN_MAX_BITRATE
        if ramped and all(set((steps[name] or {}).values()) == {"1"} for name in pages):
            break
        await asyncio.sleep(POLL_S)
        now = await poll()
    result["climbed"] = rates[-1]["frame_rates"]
    result["ramped_kbit"] = [round(r / 1000) for r in measured or []]
    for name, kbit in VIEWERS:
        pair = now[name]["pair"]
        assert pair["local"]["address"] == pair["remote"]["address"] == "127.0.0.1", pair
        if kbit is not None:
            shape(int(pair["local"]["port"]), kbit)
    shaped_at = time.monotonic()
    result["shaped_at"] = shaped_at
    while time.monotonic() - shaped_at < SHAPED_S:
        await asyncio.sleep(POLL_S)
        await poll()
    stats = await teacher.evaluate("() => hr.stats()")
    result["publisher"] = [o for o in (stats["publish"] or {}).get("outbound", [])]
    result["publisher_log"] = stats["log"]
    result["layer_notes"] = {
        name: await page.evaluate("() => hr.layerNotes.map((n) => n.layer)")
        for name, page in pages.items()
    }
    result["track_rates"] = track.temporal.rates(asyncio.get_running_loop().time())
    result["subscribers"] = track.stats.snapshot()["subscribers"]
    result["ok"] = True


async def main() -> int:
    return await report_result(scenario, "homeroom-screen-", 100)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
