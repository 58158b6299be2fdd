"""Headless Chromium in a live lesson, with an aiortc co-teacher, through the forwarding SFU.

Run by tests/live/test_chromium.py inside a network namespace that has only the loopback
interface (``unshare -n sh -c 'ip link set lo up; exec python -m tests.live.chromium_scenario'``),
so Chromium, the server and the aiortc peer can only reach each other on 127.0.0.1. Services of
the outer namespace (PostgreSQL, Redis) are out of reach: the server uses its embedded defaults.

The teacher (Ms. Li) is the browser: it signs in, starts the lesson, publishes its fake camera
and microphone with ``rtc.publish`` and opens its subscribe leg. The co-teacher (Mr. Chen) is a
Python :class:`clients.live.LiveParticipant` that publishes synthetic video and a tone and
subscribes. The server also offers ICE over TCP (``media_tcp_port``): with UDP open, every
pair must still be the UDP one, on both ends. The last line on stdout is ``RESULT {json}``:
what each side decoded and the selected ICE candidate pairs seen by Chromium, by the aiortc
client and by the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import av
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from playwright.async_api import BrowserContext, Page, async_playwright

from clients.live import LiveParticipant
from realtime import demo
from realtime.app import create_app
from realtime.store import open_store
from realtime.transport.rest import LIVE
from tests.chromium import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MEDIA_ARGS,
    launch_chromium,
    report_result,
    require,
    run_in_loopback_namespace,
)
from tests.conftest import Server, free_port, make_settings, stop_server
from tests.media.peers import CounterVideoTrack, ToneAudioTrack

ROOT = Path(__file__).resolve().parents[2]
PAGES = Path(__file__).resolve().parent / "pages"
SOCKET_IO_JS = ROOT / "tests/node/node_modules/socket.io-client/dist/socket.io.min.js"
CHROMIUM_FLAGS = [*CHROMIUM_ARGS, *MEDIA_ARGS]
FRAMES_WANTED = 10
MEDIA_TIMEOUT_S = 25.0


async def start_server_with_page(tmp: Path, **overrides: Any) -> Server:
    """The real app (SQLite, demo school, ICE on 127.0.0.1, ``overrides`` of its settings) plus
    the test page, same origin."""
    settings = make_settings(tmp, ice_host_addresses="127.0.0.1", **overrides)
    store = open_store(settings.database_url)
    await store.migrate()
    info = await demo.seed(store)
    await store.close()
    app = create_app(settings)
    add_test_page(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    return Server(f"http://127.0.0.1:{settings.port}", settings, app, runner, info, [])


async def with_browser(
    srv: Server,
    tmp: Path,
    flags: list[str],
    body: Callable[[Server, BrowserContext], Awaitable[None]],
) -> None:
    """``body(srv, context)`` with one headless Chromium (a fresh profile in ``tmp``), then
    Chromium closed and the server stopped, whatever happened."""
    try:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                str(tmp / "profile"), executable_path=CHROMIUM, headless=True, args=flags
            )
            try:
                await body(srv, context)
            finally:
                await context.close()
    finally:
        await stop_server(srv)


def run_page_scenario(module: str, *tools: str) -> dict[str, Any]:
    """Run ``python -m <module>`` (a scenario with Chromium and the test page) in a loopback
    network namespace of its own, after checking that Chromium, socket.io-client and the
    ``tools`` (tc, nft: paths) are there; its result, which must be ``ok``."""
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (run `make live-deps`)")
    require(SOCKET_IO_JS.exists(), f"{SOCKET_IO_JS} is missing (npm ci in tests/node)")
    for tool in tools:
        require(shutil.which(tool) is not None, f"{tool} is missing (run `make live-deps`)")
    result, stderr = run_in_loopback_namespace(module)
    assert result["ok"], (
        f"scenario failed:\n{result.get('error')}\nstderr:\n{stderr[-2000:]}\n"
        f"{json.dumps(result)[:3000]}"
    )
    return result


def add_test_page(app: web.Application) -> None:
    """Serve the test page (tests/live/pages/live.html) and socket.io-client, same origin."""

    async def page(_request: web.Request) -> web.StreamResponse:
        # The test's own page (inline script): its own policy, not the server's API default.
        return web.FileResponse(
            PAGES / "live.html",
            # (connect-src: a bench's page also speaks to Janus's HTTP API on 127.0.0.1.)
            headers={
                "Content-Security-Policy": "default-src 'self' 'unsafe-inline'; "
                "connect-src 'self' http://127.0.0.1:*"
            },
        )

    async def socket_io_js(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(SOCKET_IO_JS)

    app.router.add_get("/test/live.html", page)
    app.router.add_get("/test/socket.io.min.js", socket_io_js)


async def start_lesson_in_page(page: Page, srv: Server, title: str) -> tuple[int, Any]:
    """The teacher (Ms. Li) signs in on the test page, starts a lesson and joins it: the
    session id and the join's ack."""
    await page.evaluate("([u, p]) => hr.login(u, p)", ["li", demo.DEMO_PASSWORD])
    await page.evaluate("() => hr.connect()")
    started = await page.evaluate(
        "(p) => hr.request('session.start', p)",
        {"class_id": srv.class_id, "kind": "lesson", "title": title},
    )
    sid: int = started["session"]["id"]
    return sid, await page.evaluate("(s) => hr.join(s)", sid)


class Received:
    """Frames an aiortc participant decoded, per publisher and kind, with video sizes."""

    def __init__(self, participant: LiveParticipant) -> None:
        self.frames: dict[str, int] = {}
        self.sizes: set[tuple[int, int]] = set()
        self.tasks: list[asyncio.Task[None]] = []
        participant.on_track = self.on_track

    def on_track(self, track: MediaStreamTrack, info: dict[str, Any]) -> None:
        key = f"{info.get('publisher_id')}/{track.kind}"
        self.tasks.append(asyncio.ensure_future(self._consume(track, key)))

    async def _consume(self, track: MediaStreamTrack, key: str) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames[key] = self.frames.get(key, 0) + 1
                if isinstance(frame, av.VideoFrame):
                    self.sizes.add((frame.width, frame.height))
        except (MediaStreamError, asyncio.CancelledError):
            pass

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()


def nominated_pair(pc: RTCPeerConnection | None) -> dict[str, Any] | None:
    """The nominated ICE pair of an aiortc peer connection (bundled: one transport)."""
    if pc is None:
        return None
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is None:
            continue
        pair = transport.transport._connection._nominated.get(1)
        if pair is None:
            return None
        local, remote = pair.local_candidate, pair.remote_candidate
        return {
            "local": {"address": local.host, "port": local.port, "type": local.type},
            "remote": {"address": remote.host, "port": remote.port, "type": remote.type},
        }
    return None


async def eventually(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


def decoded_from(stats: dict[str, Any] | None, publisher_id: int, kind: str) -> int:
    """Frames (video) or packets (audio) the page received from one publisher."""
    if not stats:
        return 0
    total = 0
    for r in stats["inbound"]:
        if r["kind"] == kind and r.get("publisher_id") == publisher_id:
            total += (r.get("framesDecoded") or 0) if kind == "video" else (r["packets"] or 0)
    return total


async def run(tmp: Path, result: dict[str, Any]) -> None:
    srv = await start_server_with_page(tmp, media_tcp_port=free_port())
    chen: LiveParticipant | None = None
    received: Received | None = None
    page: Page | None = None
    try:
        async with async_playwright() as pw:
            context = await launch_chromium(pw, tmp / "chromium-profile", CHROMIUM_FLAGS)
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                console: list[str] = []
                result["console"] = console
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"[:300]))
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"[:300]))
                await page.goto(srv.url + "/test/live.html")

                li_id, chen_id = srv.uid("li"), srv.uid("chen")
                # The teacher, in the browser, starts the lesson and publishes camera and mic.
                sid, result["browser_join"] = await start_lesson_in_page(page, srv, "Chromium")
                result["browser_publish"] = await page.evaluate("() => hr.publish()")
                # No one else publishes yet: the subscribe leg opens without an offer; the
                # co-teacher's tracks arrive later in a pushed rtc.offer.
                result["browser_first_offer"] = await page.evaluate("() => hr.subscribe()")

                # The co-teacher, in Python, publishes and subscribes.
                chen = LiveParticipant(await srv.client("chen"), sid)
                received = Received(chen)
                await chen.join()
                ack = await chen.publish(
                    {CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"}
                )
                result["aiortc_publish"] = {k: ack[k] for k in ("published", "rejected")}
                await chen.subscribe()

                async def browser_decodes() -> bool:
                    stats = await page.evaluate("() => hr.stats()")
                    result["browser_stats"] = stats
                    sub = stats["subscribe"]
                    return (
                        decoded_from(sub, chen_id, "video") >= FRAMES_WANTED
                        and decoded_from(sub, chen_id, "audio") > 0
                        and sub["pair"] is not None
                        and stats["publish"]["pair"] is not None
                    )

                async def aiortc_decodes() -> bool:
                    frames = received.frames if received else {}
                    return (
                        frames.get(f"{li_id}/video", 0) >= FRAMES_WANTED
                        and frames.get(f"{li_id}/audio", 0) >= FRAMES_WANTED
                    )

                t0 = time.monotonic()
                await eventually(browser_decodes, MEDIA_TIMEOUT_S, "Chromium decoding Mr. Chen")
                await eventually(aiortc_decodes, MEDIA_TIMEOUT_S, "aiortc decoding the browser")
                result["media_seconds"] = round(time.monotonic() - t0, 2)
                result["aiortc_received"] = {
                    "frames": received.frames,
                    "sizes": sorted(received.sizes),
                }
                result["aiortc_pairs"] = {
                    "publish": nominated_pair(chen.publish_pc),
                    "subscribe": nominated_pair(chen.subscribe_pc),
                }
                rt = srv.app[LIVE].runtimes[sid]
                result["server_pairs"] = {
                    f"{who}/{leg}": nominated_pair(legs[uid].pc if uid in legs else None)
                    for who, uid in (("li", li_id), ("chen", chen_id))
                    for leg, legs in (("publish", rt.publishers), ("subscribe", rt.subscribers))
                }
                result["ids"] = {"li": li_id, "chen": chen_id, "session": sid}
                await page.evaluate("(s) => hr.request('session.end', {session_id: s})", sid)
                result["ok"] = True
            finally:
                if page is not None and "browser_stats" not in result:
                    try:
                        result["browser_stats"] = await page.evaluate("() => hr.stats()")
                    except Exception as exc:
                        result["browser_stats"] = repr(exc)
                await context.close()
    finally:
        if received is not None:
            received.stop()
        if chen is not None:
            await chen.close()
        await stop_server(srv)


async def main() -> int:
    return await report_result(run, "homeroom-chromium-", 80)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
