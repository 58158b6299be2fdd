"""A Chromium teacher publishes its camera in three layers (the web app's way); what its
encoders reach, second by second.

Run by tests/live/test_publisher_layers.py inside a network namespace with only ``lo``. The
page signs in as the teacher, starts a lesson and publishes camera and microphone with layers
(``hr.publish(true)``: 160x120/100 kbit/s, 320x240/300 kbit/s, 640x480/800 kbit/s on three
m-lines). Every ``POLL_S`` it reads its publish leg's ``outbound-rtp`` stats and the selected
candidate pair's ``availableOutgoingBitrate``; the server records the bandwidth estimate it
sends on the publish leg. ``RESULT <json>``: the timeline.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from realtime.transport.rest import LIVE
from tests.chromium import CHROMIUM_ARGS, MEDIA_ARGS, launch_chromium, report_result
from tests.conftest import stop_server
from tests.live.chromium_scenario import start_lesson_in_page, start_server_with_page

RUN_S = float(os.environ.get("HOMEROOM_PUBLISH_RUN_S", "8"))
POLL_S = 1.0


async def run(tmp: Path, result: dict[str, Any]) -> None:
    srv = await start_server_with_page(tmp)
    try:
        async with async_playwright() as pw:
            context = await launch_chromium(
                pw, tmp / "chromium-profile", [*CHROMIUM_ARGS, *MEDIA_ARGS]
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                await page.goto(srv.url + "/test/live.html")
                sid, _ = await start_lesson_in_page(page, srv, "Layers")
                result["publish"] = await page.evaluate("() => hr.publish(true)")
                t0 = time.monotonic()
                timeline: list[dict[str, Any]] = []
                result["timeline"] = timeline
                while time.monotonic() - t0 < RUN_S:
                    await asyncio.sleep(POLL_S)
                    stats = await page.evaluate("() => hr.stats()")
                    leg = stats["publish"] or {}
                    timeline.append(
                        {
                            "t": round(time.monotonic() - t0, 2),
                            "available": (leg.get("pair") or {}).get("available"),
                            "remote": leg.get("remote"),
                            "video": sorted(
                                (
                                    {
                                        k: o.get(k)
                                        for k in ("mid", "width", "fps", "bytesSent",
                                                  "targetBitrate", "limitation")
                                    }
                                    for o in leg.get("outbound", [])
                                    if o["kind"] == "video"
                                ),
                                key=lambda o: o["width"] or 0,
                            ),
                        }
                    )  # fmt: skip
                result["answer"] = await page.evaluate(
                    "() => hr.pcs.publish.pc.remoteDescription.sdp"
                )
                leg = srv.app[LIVE].runtimes[sid].publishers[srv.uid("li")]
                result["transport_cc"] = leg.transport_cc_counts()
                result["ok"] = True
            finally:
                await context.close()
    finally:
        await stop_server(srv)


async def main() -> int:
    return await report_result(run, "homeroom-publisher-layers-", 80)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
