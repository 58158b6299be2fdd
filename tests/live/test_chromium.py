"""Headless Chromium as a real WebRTC client of the forwarding SFU, on loopback only.

The scenario (tests/live/chromium_scenario.py) runs in its own network namespace that has
nothing but ``lo``: Chromium, the server and the aiortc peer can only meet on 127.0.0.1, which
the test checks from all three sides through the selected ICE candidate pairs.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.chromium import CHROMIUM, require, run_in_loopback_namespace
from tests.live.chromium_scenario import SOCKET_IO_JS

LOOPBACK = "127.0.0.1"


def run_scenario() -> dict[str, Any]:
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (run `make live-deps`)")
    require(SOCKET_IO_JS.exists(), f"{SOCKET_IO_JS} is missing (npm ci in tests/node)")
    result, stderr = run_in_loopback_namespace("tests.live.chromium_scenario")
    assert result["ok"], (
        f"scenario failed:\n{result.get('error')}\n"
        f"browser: {json.dumps(result.get('browser_stats'))[:3000]}\n"
        f"console: {result.get('console')}\nstderr:\n{stderr[-2000:]}"
    )
    return result


def assert_loopback(pair: dict[str, Any] | None, where: str) -> None:
    assert pair is not None, f"{where}: no selected candidate pair"
    assert pair["local"]["address"] == LOOPBACK, (where, pair)
    assert pair["remote"]["address"] == LOOPBACK, (where, pair)


def ports(pair: dict[str, Any]) -> tuple[int, int]:
    return int(pair["local"]["port"]), int(pair["remote"]["port"])


@pytest.mark.timeout(150)
def test_chromium_publishes_and_receives_through_the_sfu() -> None:
    r = run_scenario()
    li, chen = r["ids"]["li"], r["ids"]["chen"]
    browser = r["browser_stats"]

    # Chromium's camera and microphone were both accepted by rtc.publish.
    assert {t["source"] for t in r["browser_publish"]["published"]} == {"camera", "microphone"}
    assert r["browser_publish"]["rejected"] == []
    sent = {o["kind"]: o for o in browser["publish"]["outbound"]}
    assert sent["video"]["framesEncoded"] > 0 and sent["audio"]["packets"] > 0

    # Chromium decodes the aiortc co-teacher's camera (192x144 synthetic) and gets the tone;
    # the tracks came in an rtc.offer pushed after the subscribe leg opened without one.
    assert r["browser_first_offer"] == []
    inbound = {(i["publisher_id"], i["kind"]): i for i in browser["subscribe"]["inbound"]}
    video = inbound[(chen, "video")]
    assert video["source"] == "camera" and video["framesDecoded"] > 0
    assert (video["width"], video["height"]) == (192, 144)
    assert inbound[(chen, "audio")]["packets"] > 0

    # The aiortc co-teacher decodes the browser's fake camera (640x480, maybe scaled down by
    # Chromium's encoder, never reshaped) and the fake microphone.
    got = r["aiortc_received"]
    assert got["frames"][f"{li}/video"] > 0 and got["frames"][f"{li}/audio"] > 0
    for width, height in got["sizes"]:
        assert width <= 640 and height <= 480 and abs(width / height - 4 / 3) < 0.02, got["sizes"]

    # 127.0.0.1 at both ends of every selected pair: in the browser, on the aiortc client and
    # on the server; and the browser's pairs are the very ones the server selected: UDP,
    # though the server also offered a TCP candidate (ICE prefers UDP, and the server, when it
    # nominates, never nominates TCP over a nominated UDP pair).
    for leg in ("publish", "subscribe"):
        pair = browser[leg]["pair"]
        assert_loopback(pair, f"chromium {leg}")
        assert pair["state"] == "succeeded" and pair["local"]["protocol"] == "udp"
        assert_loopback(r["aiortc_pairs"][leg], f"aiortc {leg}")
        for who in ("li", "chen"):
            assert_loopback(r["server_pairs"][f"{who}/{leg}"], f"server {who}/{leg}")
        local, remote = ports(pair)
        assert ports(r["server_pairs"][f"li/{leg}"]) == (remote, local)
        client_local, client_remote = ports(r["aiortc_pairs"][leg])
        assert ports(r["server_pairs"][f"chen/{leg}"]) == (client_remote, client_local)
