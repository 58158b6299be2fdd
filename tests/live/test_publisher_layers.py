"""A teacher's camera published from Chromium in three layers reaches its layers' bitrates.

Before transport-cc on the publish leg, Chromium's estimate of the link to the server started
at 300 kbit/s and climbed about 8 % a second under the server's REMB, so the three layers
(100/300/800 kbit/s asked in ``sendEncodings``) shared it at 60-230 kbit/s each for the first
15 s of a lesson (docs/media.md). The scenario (tests/live/publisher_layers_scenario.py, in a
loopback-only network namespace) reads the page's own ``outbound-rtp`` stats every second.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.chromium import CHROMIUM, require, run_in_loopback_namespace
from tests.live.chromium_scenario import SOCKET_IO_JS

LAYERS_KBIT = (100, 300, 800)  # what the page asks of each layer (maxBitrate)
WITHIN_S = 5.0


@pytest.mark.timeout(150)
def test_chromium_layers_reach_their_bitrates_within_seconds() -> None:
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (run `make live-deps`)")
    require(SOCKET_IO_JS.exists(), f"{SOCKET_IO_JS} is missing (npm ci in tests/node)")
    r, stderr = run_in_loopback_namespace("tests.live.publisher_layers_scenario")
    timeline = r.get("timeline") or []
    shown = json.dumps(timeline)[:3000]
    assert r["ok"], f"{r.get('error')}\n{shown}\nstderr:\n{stderr[-2000:]}"
    assert len(r["publish"]["published"]) == 4, r["publish"]  # three layers, one microphone

    # Within 5 s of publishing, every layer's encoder is given its full rate and the top one
    # sends the camera's full 640x480 at the asked frame rate.
    reached = [
        s
        for s in timeline
        if s["t"] <= WITHIN_S + 1.0
        and len(s["video"]) == 3
        and all(
            (v["targetBitrate"] or 0) >= 0.9 * kbit * 1000
            for v, kbit in zip(s["video"], LAYERS_KBIT, strict=True)
        )
    ]
    assert reached, f"the layers never reached {LAYERS_KBIT} kbit/s within {WITHIN_S}s: {shown}"
    first = reached[0]
    assert (first["available"] or 0) >= 1_200_000, shown
    assert [v["width"] for v in first["video"]] == [160, 320, 640], shown
    assert (first["video"][-1]["fps"] or 0) >= 10, shown
    # Later samples are not asserted on: on a machine loaded by other work (load average 16
    # here on 2 cores) the server's loop waiting for a CPU looks like queueing to Chromium's
    # delay-based estimator, which may then lower its estimate (docs/media.md).
    assert all(s["video"][-1]["width"] == 640 for s in timeline[1:]), shown
    # The server reported every packet: nothing on loopback is lost.
    cc = r["transport_cc"]
    assert cc["feedback"] > 0 and cc["received"] > 0 and cc["lost"] <= 0.02 * cc["received"], cc
    # ...each with the time its datagram left the socket, not the time the loop routed it.
    assert cc["stamped"] >= 0.98 * cc["received"], cc
