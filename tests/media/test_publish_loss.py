"""NACK/RTX for a camera in layers: the publish leg repaired per layer, a viewer per viewer.

``tests/media/publish_loss_scenario.py`` in a network namespace of the test's own: a real
aiortc publisher sending three layers on three m-lines (one RTX payload type, as the web
app's), two decoding aiortc viewers, nftables dropping packets at random. Before
``media.internals.route_rtx`` aiortc dropped every retransmission of such a publisher (its
RTX SSRC unknown, its payload type shared by three receivers): with 10 % loss on the publish
leg the lower layers reached the fan-out at 0 fps and the viewers froze (docs/media.md).
"""

from __future__ import annotations

import pytest

from tests.chromium import run_in_loopback_namespace


@pytest.mark.timeout(200)
def test_layers_are_repaired_on_the_publish_leg_and_per_viewer_after_switches() -> None:
    result, _stderr = run_in_loopback_namespace(
        "tests.media.publish_loss_scenario", "--publish-loss", "10", "--viewer-loss", "20",
        timeout=180,
    )  # fmt: skip
    print(result)
    up = result["publish_loss"]
    assert up["dropped_packets"] >= 50, result  # the loss really happened
    for index, layer in enumerate(up["layers"]):
        sent = layer["encoded_fps"]
        assert sent >= 5, (index, result)  # the camera was encoding (not starved)
        assert layer["rtx_packets"] > 0, (index, result)  # retransmissions reached the layer
        assert layer["ingest_fps"] >= 0.9 * sent, (index, result)  # and repaired it
    top_fps = up["layers"][2]["encoded_fps"]
    assert up["viewer_fps"] >= 0.85 * top_fps, result  # the viewer on top kept playing
    assert up["viewer_max_gap_s"] < 1.0, result

    down = result["viewer_loss"]
    assert down["dropped_packets"] >= 30, result
    assert down["layer_switches"] >= 1, result  # its loss moved it down (a rewritten stream)
    assert len(down["lossy_widths"]) >= 2, result  # it decoded the layers it was moved to
    assert down["retransmissions"] > 0, result  # its NACKs answered from its own history
    assert (down["retransmissions_after_switch"] or 0) > 0, result  # also after the switch
    assert down["retransmissions_missed"] <= down["retransmissions"] // 10, result
    assert down["clean_fps"] >= 0.9 * result["clean"]["layers"][2]["encoded_fps"], result
