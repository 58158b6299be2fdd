"""Three Chromium viewers of a camera in layers, on links shaped by the kernel.

Run by tests/live/test_shaped_viewers.py inside a network namespace of its own that has only
``lo`` (``tests.chromium.run_in_loopback_namespace``): the server and one Chromium with four
pages meet on 127.0.0.1 only. The teacher's page publishes the fake camera in three layers as
the web app does (``hr.publish(true)``: 160x120/100 kbit/s, 320x240/300 kbit/s, 640x480/800
kbit/s on three m-lines, with transport-cc on the publish leg so they reach their rates, see
tests/live/test_publisher_layers.py) and the fake microphone's tone in Opus at the browser's
own rate; three student pages watch. Each viewer's downlink is shaped on
``lo`` inside that namespace: an HTB class of its own (rate, and a 100-packet queue, a mobile
link's buffer) that only the packets to that viewer's UDP port are filtered into, and for one
of them an nftables rule that drops 5 % of those packets at random (``numgen random``; this
kernel has no ``netem``). Nothing is shaped outside the namespace, which disappears with the
process.

Phases: shaped (3 Mbit/s, 600 kbit/s, 150 kbit/s + 5 % loss): each viewer must get the layer
its link carries, the 150 kbit/s one audio only; then every link opened again: video must come
back. Prints ``RESULT <json>`` last: per viewer the timeline of what its page reported (the
layer it was told with ``media.layer``, decoded frames, width, audio packets, Chromium's own
freeze counters) and what the server's stats said.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Page

from bench.sfu.video import source_frames
from media.simulcast import LayeredSubscriberTrack
from realtime import demo
from realtime.transport.rest import LIVE
from tests.chromium import CHROMIUM_ARGS, MEDIA_ARGS, report_result
from tests.live.chromium_scenario import (
    start_lesson_in_page,
    start_server_with_page,
    with_browser,
)

# (username, downlink kbit/s, random loss %): the link each student watches on.
VIEWERS = (("wanghao", 3000, 0), ("liming", 600, 0), ("zhangwei", 150, 5))
# The layer each link carries (-1: video paused, audio only: the browser's voice, about
# 32 kbit/s, is about 55 kbit/s with its headers, and the lowest layer (100 kbit/s) does not
# fit beside it in 150 kbit/s).
EXPECTED_LAYER = {"wanghao": 2, "liming": 1, "zhangwei": -1}
QUEUE_PACKETS = 100
CLIMB_S = 30.0  # how long the viewers have to climb to the top layer before the shaping
LAYER_KBIT = (100_000, 300_000, 800_000)  # what the teacher's page asks of its layers
RAMPED = 0.75  # a layer at this share of its rate is ramped up
SHAPED_S = 14.0  # how long the links stay shaped
OPEN_S = 10.0  # how long to wait for video to come back after they open
POLL_S = 0.3
FLAGS = [
    *CHROMIUM_ARGS,
    *MEDIA_ARGS,
    # Four pages of one browser: none may be throttled for being in the background.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
SBIN = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
TC = shutil.which("tc", path=SBIN) or "tc"
NFT = shutil.which("nft", path=SBIN) or "nft"


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


def shape(ports: dict[str, int]) -> None:
    """One HTB class per viewer on lo (everything else unshaped), loss by nftables."""
    run(TC, "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10")
    run(TC, "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb",
        "rate", "10gbit")  # fmt: skip
    run(NFT, "add", "table", "inet", "shaped")
    run(NFT, "add", "chain", "inet", "shaped", "out",
        "{ type filter hook output priority 0; }")  # fmt: skip
    for i, (name, kbit, loss) in enumerate(VIEWERS, start=1):
        classid = f"1:2{i}"
        run(TC, "class", "add", "dev", "lo", "parent", "1:", "classid", classid, "htb",
            "rate", f"{kbit}kbit", "ceil", f"{kbit}kbit", "burst", "6k")  # fmt: skip
        run(TC, "qdisc", "add", "dev", "lo", "parent", classid, "handle", f"2{i}:", "pfifo",
            "limit", str(QUEUE_PACKETS))  # fmt: skip
        run(TC, "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1",
            "u32", "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport",
            str(ports[name]), "0xffff", "flowid", classid)  # fmt: skip
        if loss:
            run(NFT, "add", "rule", "inet", "shaped", "out", "udp", "dport", str(ports[name]),
                "numgen", "random", "mod", "100", "<", str(loss), "drop")  # fmt: skip


def unshape() -> None:
    for i, _viewer in enumerate(VIEWERS, start=1):
        run(TC, "class", "change", "dev", "lo", "parent", "1:", "classid", f"1:2{i}", "htb",
            "rate", "10gbit", "ceil", "10gbit")  # fmt: skip
    run(NFT, "delete", "table", "inet", "shaped")


def kbit(rates: list[float] | None) -> list[int | None]:
    """Layer rates in kbit/s (None: a layer not sent now)."""
    return [None if r == float("inf") else round(r / 1000) for r in rates or []]


async def sample(page: Page) -> dict[str, Any]:
    """What one viewer's page says now: the layer it was told, video and audio received."""
    stats = await page.evaluate("() => hr.stats()")
    notes = await page.evaluate("() => hr.layerNotes.map((n) => n.layer)")
    sub = stats["subscribe"] or {"inbound": [], "pair": None}
    video = next((r for r in sub["inbound"] if r["kind"] == "video"), {})
    audio = next((r for r in sub["inbound"] if r["kind"] == "audio"), {})
    return {
        "t": time.monotonic(),
        "layer": notes[-1] if notes else 0,  # everyone starts on layer 0
        "frames": video.get("framesDecoded") or 0,
        "width": video.get("width"),
        "freezes": video.get("freezeCount") or 0,
        "freeze_s": round(video.get("freezesDuration") or 0.0, 2),
        "audio_packets": audio.get("packets") or 0,
        "audio_lost": audio.get("packetsLost") or 0,
        "pair": sub["pair"],
    }


async def page_for(context: Any, url: str, username: str) -> Page:
    page = await context.new_page()
    await page.goto(url + "/test/live.html")
    await page.evaluate("([u, p]) => hr.login(u, p)", [username, demo.DEMO_PASSWORD])
    await page.evaluate("() => hr.connect()")
    return page


def write_camera(path: Path, width: int = 640, height: int = 480, count: int = 30) -> Path:
    """A camera-like picture with detail (the benchmark's drifting texture and fresh noise) as a
    Y4M file for Chromium's fake camera, which loops it: its own fake picture (a still
    background and a turning pie) costs its encoders a third of the bitrates asked of them
    (76/154/366 kbit/s against 100/300/800), so every link here would carry the top layer."""
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode())
        for frame in source_frames(width, height, count):
            out.write(b"FRAME\n")
            for plane in frame.planes:
                w = plane.width
                data = bytes(plane)
                out.write(b"".join(data[r * plane.line_size : r * plane.line_size + w]
                                   for r in range(plane.height)))  # fmt: skip
    return path


async def scenario(tmp: Path, result: dict[str, Any]) -> None:
    srv = await start_server_with_page(tmp)
    camera = write_camera(tmp / "camera.y4m")
    flags = [*FLAGS, f"--use-file-for-fake-video-capture={camera}"]
    await with_browser(srv, tmp, flags, lambda srv, context: watch(srv, context, result))


def trace_selection(trace: list[list[Any]]) -> None:
    """Record every feedback a viewer's layer selection takes and what it decided: (time,
    viewer, estimate, its age, loss, RTT, new report, target, layer, video received, reason,
    layer rates in kbit/s, video sent, queue delay)."""
    feedback = LayeredSubscriberTrack.link_feedback

    def traced(self: LayeredSubscriberTrack, *args: Any) -> None:
        feedback(self, *args)
        estimate, age, loss, rtt, report, received, _since, sent = (*args, None, None, None)[:8]
        trace.append([
            round(time.monotonic(), 2), self.subscriber_id, estimate,
            None if age is None else round(age, 1), round(loss, 3),
            None if rtt is None else round(rtt, 3), report, self.target, self.layer,
            None if received is None else round(received), self.selector.reason,
            [None if math.isinf(b.bitrate) else round(b.bitrate / 1000)
             for b in self.selector.layers],
            None if sent is None else round(sent), round(self.selector.queue_delay(), 3),
        ])  # fmt: skip

    LayeredSubscriberTrack.link_feedback = traced  # type: ignore[method-assign,assignment]


async def watch(srv: Any, context: Any, result: dict[str, Any]) -> None:
    result["trace"] = []
    trace_selection(result["trace"])
    teacher = await context.new_page()
    await teacher.goto(srv.url + "/test/live.html")
    sid, _ = await start_lesson_in_page(teacher, srv, "Shaped links")
    result["publish"] = await teacher.evaluate("() => hr.publish(true)")
    await watch_pages(srv, context, sid, result)
    result["publisher"] = await publisher_sample(teacher)
    await teacher.evaluate("(s) => hr.request('session.end', {session_id: s})", sid)


async def publisher_sample(page: Page) -> list[dict[str, Any]]:
    """The teacher's encoders now: per video layer its size, frame rate and target bitrate."""
    stats = await page.evaluate("() => hr.stats()")
    return sorted(
        (
            {k: o.get(k) for k in ("width", "fps", "targetBitrate", "limitation")}
            for o in (stats["publish"] or {}).get("outbound", [])
            if o["kind"] == "video"
        ),
        key=lambda o: o["width"] or 0,
    )


async def watch_pages(srv: Any, context: Any, sid: int, result: dict[str, Any]) -> None:
    pages: dict[str, Page] = {}
    for name, _kbit, _loss in VIEWERS:
        page = await page_for(context, srv.url, name)
        await page.evaluate("(s) => hr.join(s)", sid)
        await page.evaluate("() => hr.subscribe()")
        pages[name] = page
    timeline: dict[str, list[dict[str, Any]]] = {name: [] for name in pages}
    result["timeline"] = timeline

    async def poll() -> dict[str, dict[str, Any]]:
        samples = await asyncio.gather(*(sample(page) for page in pages.values()))
        now = dict(zip(pages, samples, strict=True))
        for name, s in now.items():
            timeline[name].append({k: v for k, v in s.items() if k != "pair"})
        return now

    # Everyone decodes video and hears the teacher before any link is shaped.
    deadline = time.monotonic() + 40
    while True:
        now = await poll()
        if all(s["frames"] > 0 and s["audio_packets"] > 0 and s["pair"] for s in now.values()):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"viewers not all receiving: {now}")
        await asyncio.sleep(POLL_S)
    # Every viewer climbs to the top layer on its open link first (or not within the time
    # given, which the result shows): the shaping then has to move them.
    runtime = srv.app[LIVE].runtimes[sid]
    camera = next(t for t in runtime.router.tracks() if t.source == "camera")
    layered = runtime.router.get(camera.track_id)
    climb_deadline = time.monotonic() + CLIMB_S
    rates: list[float] | None = None
    while time.monotonic() < climb_deadline:
        rates = layered.rates(asyncio.get_running_loop().time())
        # ...and the teacher's encoders reach the rates asked of them (Chromium ramps its
        # layers up over the first seconds; a top layer at 400 kbit/s fits 600 kbit/s).
        ramped = rates is not None and all(
            r >= RAMPED * asked for r, asked in zip(rates, LAYER_KBIT, strict=True)
        )
        if ramped and all(s["layer"] == 2 for s in now.values()):
            break
        await asyncio.sleep(POLL_S)
        now = await poll()
    result["climbed"] = {name: s["layer"] for name, s in now.items()}
    result["layer_kbit_before"] = kbit(rates)
    now = await poll()
    for _ in range(20):  # a page's stats may miss the pair for a moment (renegotiation)
        if all(s["pair"] for s in now.values()):
            break
        await asyncio.sleep(POLL_S)
        now = await poll()
    ports = {}
    for name, s in now.items():
        pair = s["pair"]
        assert pair["local"]["address"] == pair["remote"]["address"] == "127.0.0.1", pair
        ports[name] = int(pair["local"]["port"])
    result["ports"] = ports

    shape(ports)
    shaped_at = time.monotonic()
    result["shaped_at"] = shaped_at
    while time.monotonic() - shaped_at < SHAPED_S:
        await poll()
        await asyncio.sleep(POLL_S)
    result["layer_kbit_shaped"] = kbit(layered.rates(asyncio.get_running_loop().time()))
    result["server_links_shaped"] = runtime.stats()["links"]

    unshape()
    opened_at = time.monotonic()
    result["opened_at"] = opened_at
    while time.monotonic() - opened_at < OPEN_S:
        await poll()
        await asyncio.sleep(POLL_S)
    stats = runtime.stats()
    result["server_links_open"] = stats["links"]
    result["server_tracks"] = stats["tracks"]
    result["uids"] = {name: srv.uid(name) for name in pages}

    result["ok"] = True


async def main() -> int:
    return await report_result(scenario, "homeroom-shaped-", 100)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
