"""Layers per viewer behind a node-to-node leg (issues #13 and #17), with real aiortc peers.

A camera in three layers on the origin crosses the leg as three streams and is republished on
the edge in layers under the origin's track id; the edge's two viewers each get the layer their
own link carries: one viewer's downlink is shaped by the kernel (HTB on ``lo`` in a network
namespace of the test's own, ``tests/media/relay_layers_scenario.py``) and moves down, the other
keeps the top layer.
"""

from __future__ import annotations

import pytest

from tests.chromium import run_in_loopback_namespace


@pytest.mark.timeout(150)
def test_edge_viewers_each_get_the_layer_their_link_carries() -> None:
    result, _stderr = run_in_loopback_namespace("tests.media.relay_layers_scenario")
    print(result)
    # Every layer crossed the leg and the edge republished them as one track in layers.
    assert result["leg_layers"] == [0, 1, 2], result
    assert result["edge_layers"] == 3, result
    assert result["leg_layer_counts"] == [1, 3], result  # the microphone, the camera's layers
    assert result["first_widths"] == [160, 160], result  # edge viewers start on the lowest
    assert result["top_s"] is not None, result  # both climbed to the top on the open link
    # The shaped viewer moved to a lower layer within 5 s and keeps decoding without a freeze.
    assert result["switch_s"] is not None and result["switch_s"] < 5, result
    shaped = result["shaped"]
    assert shaped["widths"] and "640" not in shaped["widths"], result
    assert shaped["max_gap_s"] <= 1.0, result  # no freeze (video paused for its link is none)
    # The other edge viewer kept the top layer at its frame rate.
    opened = result["open"]
    assert opened["last_width"] == 640, result
    assert opened["widths"].get("640", 0) >= 0.9 * sum(opened["widths"].values()), result
    assert opened["fps"] >= 0.8 * opened["fps_before"], result
    # A viewer switching asks for a keyframe of the layer it switches to: the edge sent PLIs
    # up the leg on each layer's own m-line, and the origin counted them per layer.
    # Layers 1 and 2 (both viewers climbed to them, the shaped one came back down to 1); the
    # lowest layer only starts them, and its first keyframe can come with the leg's own start,
    # unasked (CI: [0, 2, 1], the edge sent no PLI for it).
    assert all(n and n >= 1 for n in result["origin_requests_from_edge"][1:]), result
