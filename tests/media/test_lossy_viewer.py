"""One viewer losing 20 % of its packets costs the others nothing (issue #17).

``tests/media/lossy_scenario.py`` in a network namespace of the test's own: real aiortc
publisher and two decoding viewers, an nftables rule dropping one packet in five sent to one
viewer. The lossy viewer is repaired from the SFU's own packet history (NACK, retransmission)
and keeps playing; the clean viewer keeps the publisher's frame rate; the publisher is asked
for a keyframe at most once per PLI interval.
"""

from __future__ import annotations

import pytest

from tests.chromium import run_in_loopback_namespace


@pytest.mark.timeout(150)
def test_a_viewer_dropping_a_fifth_of_its_packets_costs_the_others_nothing() -> None:
    result, _stderr = run_in_loopback_namespace("tests.media.lossy_scenario")
    print(result)
    sent = result["ingest_fps"]
    assert result["dropped_packets"] >= 50, result  # the loss really happened
    assert sent >= 5, result  # the publisher was sending (not starved)
    assert result["clean_fps"] >= 0.9 * sent, result
    assert result["clean_max_gap_s"] < 1.0, result
    assert result["lossy_fps"] >= 0.7 * sent, result  # repaired, still playing
    assert result["plis_to_publisher"] <= result["seconds"] / result["pli_interval_s"] + 1, result
