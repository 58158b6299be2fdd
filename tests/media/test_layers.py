"""The per-viewer layer selector: a fake clock, no network."""

from __future__ import annotations

import pytest

from media.layers import VIDEO_OFF, Feedback, Layer, LayerSelector

# A camera in three layers, as the publishers send it (bit/s).
LAYERS = [Layer(150_000, 320, 180), Layer(500_000, 640, 360), Layer(1_200_000, 1280, 720)]


def run(selector: LayerSelector, feedback: Feedback, start: float, seconds: float) -> float:
    """Feed the same feedback once a second (REMB's pace); returns the time after."""
    now = start
    while now < start + seconds:
        selector.update(feedback, now)
        now += 1.0
    return now


def test_starts_low_and_climbs_one_layer_per_hold() -> None:
    sel = LayerSelector(LAYERS, up_hold=3.0)
    assert sel.target == 0
    good = Feedback(estimate=3_000_000, loss=0.0, rtt=0.05)
    assert sel.update(good, 0.0) == 0
    assert sel.update(good, 2.9) == 0  # not held long enough
    assert sel.update(good, 3.0) == 1
    assert sel.update(good, 5.9) == 1
    assert sel.update(good, 6.0) == 2
    assert sel.update(good, 100.0) == 2  # top


def test_a_drop_moves_down_at_once_to_what_fits() -> None:
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(3_000_000), 0.0, 10.0)
    assert sel.target == 2
    # 600 kbit/s carries the 500 kbit/s layer with 15 % headroom, not the 1.2 Mbit/s one.
    assert sel.update(Feedback(600_000), now) == 1
    # 150 kbit/s cannot carry even the lowest layer (150k * 1.15): audio only.
    assert sel.update(Feedback(150_000), now + 0.1) == VIDEO_OFF
    assert sel.video_paused


def test_video_comes_back_when_the_link_recovers() -> None:
    sel = LayerSelector(LAYERS, up_hold=2.0)
    sel.update(Feedback(100_000), 0.0)
    assert sel.video_paused
    assert sel.update(Feedback(2_000_000), 1.0) == VIDEO_OFF  # recovering: hold first
    assert sel.update(Feedback(2_000_000), 3.0) == 0  # video back, lowest layer
    assert not sel.video_paused
    assert sel.update(Feedback(2_000_000), 5.0) == 1


def test_loss_or_rtt_takes_one_layer_down_even_with_a_high_estimate() -> None:
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(3_000_000), 0.0, 10.0)
    assert sel.target == 2
    assert sel.update(Feedback(3_000_000, loss=0.2), now) == 1
    assert sel.update(Feedback(3_000_000, loss=0.2), now + 1) == 0
    assert sel.update(Feedback(3_000_000, loss=0.2), now + 2) == VIDEO_OFF
    sel2 = LayerSelector(LAYERS)
    run(sel2, Feedback(3_000_000), 0.0, 10.0)
    assert sel2.update(Feedback(3_000_000, rtt=1.5), 10.0) == 1


def test_flapping_estimates_do_not_flap_layers() -> None:
    """An estimate that goes above the next layer and back every second never moves up."""
    sel = LayerSelector(LAYERS, up_hold=3.0)
    high, mid = Feedback(3_000_000), Feedback(700_000)
    run(sel, mid, 0.0, 5.0)
    assert sel.target == 1
    switches = 0
    last = sel.target
    for i in range(30):
        sel.update(high if i % 2 else mid, 5.0 + i)
        switches += sel.target != last
        last = sel.target
    assert sel.target == 1 and switches == 0


def test_moderate_loss_blocks_moving_up_but_does_not_move_down() -> None:
    sel = LayerSelector(LAYERS, up_hold=1.0)
    run(sel, Feedback(700_000), 0.0, 5.0)
    assert sel.target == 1
    run(sel, Feedback(3_000_000, loss=0.05), 5.0, 10.0)
    assert sel.target == 1


def test_without_an_estimate_loss_and_rtt_decide() -> None:
    sel = LayerSelector(LAYERS, up_hold=1.0)
    run(sel, Feedback(None), 0.0, 5.0)
    assert sel.target == 2
    assert sel.update(Feedback(None, loss=0.3), 6.0) == 1


def test_layers_must_be_ordered_and_present() -> None:
    with pytest.raises(ValueError):
        LayerSelector([])
    with pytest.raises(ValueError):
        LayerSelector([Layer(500_000), Layer(150_000)])
