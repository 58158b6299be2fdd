"""Three Chromium viewers on shaped links (3 Mbit/s, 600 kbit/s, 150 kbit/s with 5 % loss) of a
camera in three layers: each gets the layer its link carries, the slowest keeps the sound with
its video paused, and video comes back when the links open (tests/live/shaped_scenario.py, in
a network namespace of its own, shaped with HTB and nftables inside it only)."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.live.chromium_scenario import run_page_scenario
from tests.live.shaped_scenario import EXPECTED_LAYER, NFT, TC

# From the shaping (or the opening) to the right layer (or to video again), as the issue asks.
WITHIN_S = 5.0
FREEZE_S = 1.0  # the longest freeze allowed while a viewer is shaped (the issue's)


def longest_still(samples: list[dict[str, Any]]) -> float:
    """The longest time between two samples with the same number of frames decoded."""
    longest, since = 0.0, None
    for previous, s in itertools.pairwise(samples):
        if s["frames"] == previous["frames"]:
            since = previous["t"] if since is None else since
            longest = max(longest, s["t"] - since)
        else:
            since = None
    return float(longest)


def first_at(samples: list[dict[str, Any]], since: float, check: Any) -> float | None:
    """Seconds from ``since`` to the first sample after it for which ``check`` holds."""
    for s in samples:
        if s["t"] >= since and check(s):
            return float(s["t"] - since)
    return None


@pytest.mark.timeout(150)
@pytest.mark.xfail(
    reason="not proven reliable under load yet (docs/media.md, 'Three Chromium viewers on "
    "shaped links'): 16 of 18 runs passed on main since the faster sender reports, 5 of 5 on "
    "c29743d, one at a time at load under 2 (the failures: video back 5.3 and 7.5 s after "
    "the links opened); in session 11 about half failed under the long suite's load",
    strict=False,
)
def test_each_shaped_viewer_gets_the_layer_its_link_carries() -> None:
    r = run_page_scenario("tests.live.shaped_scenario", TC, NFT)
    if os.environ.get("HOMEROOM_SHAPED_RESULT"):  # the whole result, with the selection's trace
        Path(os.environ["HOMEROOM_SHAPED_RESULT"]).write_text(json.dumps(r))
    shaped_at, opened_at = r["shaped_at"], r["opened_at"]
    report = {}
    for name, expected in EXPECTED_LAYER.items():
        samples = r["timeline"][name]
        shaped = [s for s in samples if shaped_at <= s["t"] < opened_at]
        reached = first_at(samples, shaped_at, lambda s, e=expected: s["layer"] == e)
        report[name] = {
            "reached_s": reached,
            "layers": sorted({s["layer"] for s in shaped if s["t"] >= shaped_at + WITHIN_S}),
        }
        assert reached is not None and reached <= WITHIN_S, (name, report, r["climbed"])
        # Once there it stays there (a failed probe up may show for a moment).
        settled = [s["layer"] for s in shaped if s["t"] >= shaped_at + reached]
        assert settled.count(expected) >= 0.8 * len(settled), (name, settled)
        # It plays: no freeze longer than a second (frames decoded unchanged over polls a
        # second or more apart; shorter freezes and ones between polls may go unseen).
        if expected >= 0:
            frozen = longest_still(shaped)
            assert frozen < FREEZE_S, (name, frozen)
            report[name]["longest_still_s"] = round(frozen, 2)
    print(json.dumps(report))

    # The 150 kbit/s viewer with 5 % loss keeps the sound while its video is paused.
    slow = [s for s in r["timeline"]["zhangwei"] if shaped_at + WITHIN_S <= s["t"] < opened_at]
    seconds = slow[-1]["t"] - slow[0]["t"]
    heard = slow[-1]["audio_packets"] - slow[0]["audio_packets"]
    assert heard / seconds >= 30, (heard, seconds)  # of ~50 packets/s (20 ms each), 5 % lost
    assert slow[-1]["frames"] - slow[0]["frames"] <= 10 * seconds  # paused, at most a probe

    # The links open: the paused viewer's video comes back.
    back = first_at(r["timeline"]["zhangwei"], opened_at, lambda s: s["layer"] >= 0)
    assert back is not None and back <= WITHIN_S, back
    # The host saw it as a bad link while it was shaped (bandwidth, and the loss).
    slow_link = r["server_links_shaped"][str(r["uids"]["zhangwei"])]["subscribe"]
    assert "bandwidth" in slow_link["bad"], slow_link
