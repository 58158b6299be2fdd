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
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Page

from media.forwarder import ForwardedTrack
from media.screen import ScreenSubscriberTrack
from realtime.transport.rest import LIVE
from tests.chromium import report_result
from tests.live.chromium_scenario import (
    start_lesson_in_page,
    start_server_with_page,
    with_browser,
)
from tests.live.shaped_scenario import FLAGS, QUEUE_PACKETS, TC, page_for, run

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
    srv = await start_server_with_page(tmp)
    await with_browser(srv, tmp, FLAGS, lambda srv, context: watch(srv, context, result))


async def watch(srv: Any, context: Any, result: dict[str, Any]) -> None:
    teacher = await context.new_page()
    await teacher.goto(srv.url + "/test/live.html")
    sid, _ = await start_lesson_in_page(teacher, srv, "Screen share")
    result["publish"] = await teacher.evaluate(
        "([f, b, n]) => hr.publishScreen(f, b, n)", [SCREEN_FPS, SCREEN_MAX_BITRATE, NOISE]
    )
    pages: dict[str, Page] = {}
    for name, _kbit in VIEWERS:
        page = await page_for(context, srv.url, name)
        await page.evaluate("(s) => hr.join(s)", sid)
        await page.evaluate("() => hr.subscribe()")
        pages[name] = page
    timeline: dict[str, list[dict[str, Any]]] = {name: [] for name in pages}
    result["timeline"] = timeline
    runtime = srv.app[LIVE].runtimes[sid]
    screen = next(t for t in runtime.router.tracks() if t.source == "screen")
    track = runtime.router.get(screen.track_id)
    assert isinstance(track, ForwardedTrack), track
    uids = {name: str(srv.uid(name)) for name in pages}
    result["uids"] = uids
    rates: list[dict[str, Any]] = []
    result["server"] = rates

    async def poll() -> dict[str, dict[str, Any]]:
        samples = await asyncio.gather(*(sample(page) for page in pages.values()))
        now = dict(zip(pages, samples, strict=True))
        for name, s in now.items():
            timeline[name].append({k: v for k, v in s.items() if k != "pair"})
        links = runtime.stats()["links"]
        rates.append(
            {
                "t": time.monotonic(),
                "tids": temporal_counts(track),
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
