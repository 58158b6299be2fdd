"""The per-viewer layer selector: a fake clock, no network."""

from __future__ import annotations

import itertools
import math

import pytest

from media.layers import (
    DEFAULT_CONGESTION_HOLD,
    DIP_S,
    VIDEO_OFF,
    Feedback,
    Layer,
    LayerSelector,
)

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


def test_a_capped_estimate_still_climbs() -> None:
    """A receiver's estimate stays near 1.5x what it receives, below the next layer: no sign
    of congestion is what lets the viewer probe one layer up."""
    sel = LayerSelector(LAYERS, up_hold=2.0)
    estimate = 160_000.0
    now = 0.0
    while now < 10:
        sel.update(Feedback(estimate), now)
        estimate *= 1.05  # ramping, never above 1.5x the current layer
        now += 0.5
    assert sel.target == 2


def test_a_falling_estimate_moves_down_at_once_to_what_fits() -> None:
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(3_000_000), 0.0, 10.0)
    assert sel.target == 2
    # The estimator saw overuse: 600 kbit/s carries the 500 kbit/s layer with 15 % headroom.
    assert sel.update(Feedback(600_000), now) == 1
    # 140 kbit/s cannot carry even the lowest layer (150k): audio only.
    assert sel.update(Feedback(140_000), now + 0.1) == VIDEO_OFF
    assert sel.video_paused


def test_the_burst_of_the_layer_left_does_not_take_a_second_layer() -> None:
    """The link narrows under the top layer: its burst fills the queue and the estimate goes
    on falling for a moment after the move down. Right after the move only a layer the
    estimate cannot carry at all is left; once settled, the headroom counts again."""
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(3_000_000), 0.0, 10.0)
    assert sel.update(Feedback(600_000), now) == 1
    # 540 kbit/s: under the middle layer with headroom (575), not under the layer itself.
    assert sel.update(Feedback(540_000), now + 0.5) == 1
    sel.switched(now + 0.8)  # its keyframe: the viewer receives layer 1 from here
    assert sel.update(Feedback(510_000), now + 2.0) == 1  # still settling
    # Settled: a falling estimate under the layer with headroom is real overuse again.
    assert sel.update(Feedback(470_000), now + 2.5) == 0


def test_a_low_estimate_that_is_not_falling_moves_nothing() -> None:
    """Right after a move up the estimate lags the new rate: it is no reason to go down."""
    sel = LayerSelector(LAYERS, up_hold=1.0)
    run(sel, Feedback(None), 0.0, 3.0)
    assert sel.target == 2
    assert sel.update(Feedback(200_000), 4.0) == 2
    assert sel.update(Feedback(210_000), 5.0) == 2


def test_video_comes_back_when_the_link_recovers() -> None:
    sel = LayerSelector(LAYERS, up_hold=2.0)
    sel.update(Feedback(400_000), 0.0)
    sel.update(Feedback(100_000), 0.5)
    assert sel.video_paused
    # Receiving no video, the caller passes no estimate (it would only reflect the audio).
    assert sel.update(Feedback(None), 1.0) == VIDEO_OFF  # recovering: hold first
    assert sel.update(Feedback(None), 1.9) == VIDEO_OFF
    assert sel.update(Feedback(None), 2.0) == 0  # video back (max_off_hold), lowest layer
    assert not sel.video_paused
    # Up from there not at the normal pace: the link has just shown its limit...
    assert sel.update(Feedback(None), 7.5) == 0
    # ...until the move back to video has held for the probe window.
    assert sel.update(Feedback(None), 8.5) == 1


def test_failed_probes_from_paused_video_wait_at_most_three_seconds() -> None:
    """Each probe of the lowest layer that the link cannot carry (the estimate falls at once)
    doubles the wait before the next, up to 3 s: a link that opens after a few failed probes
    gets video back within 5 s (the queue's drain and the keyframe come on top)."""
    sel = LayerSelector(LAYERS)
    sel.update(Feedback(400_000), 0.0)
    sel.update(Feedback(100_000), 0.5)
    assert sel.video_paused
    now, waits, undone = 1.0, [], None
    while now < 40:
        if sel.update(Feedback(None), now) == 0:
            if undone is not None:
                waits.append(round(now - undone, 1))
            sel.update(Feedback(60_000), now + 0.6)
            assert sel.update(Feedback(40_000), now + 0.7) == VIDEO_OFF  # it fails
            now = undone = now + 0.7
        now += 0.1
    assert max(waits) <= 3.2 and waits[-1] >= 3.0, waits  # doubled, then held at 3 s


def test_a_lossy_link_is_not_probed_while_video_is_paused() -> None:
    """Audio only on a link that loses packets: a probe of the lowest layer would fill its
    queue and cost the sound; the first clean reports start the hold."""
    sel = LayerSelector(LAYERS)
    sel.update(Feedback(400_000), 0.0)
    sel.update(Feedback(100_000), 0.5)
    assert sel.video_paused
    now = run(sel, Feedback(None, loss=0.05), 1.0, 20.0)
    assert sel.video_paused
    opened = now
    while sel.video_paused:
        sel.update(Feedback(None, loss=0.0), now)
        now += 0.25
    assert now - opened <= 2.5


def test_video_paused_waits_for_the_queue_that_paused_it_to_drain() -> None:
    """With video paused the lowest layer is tried only once the keep-alive padding shows the
    link's queue drained: the video's packets put into a queue still full dropped the voice
    for seconds more."""
    sel = LayerSelector(LAYERS)
    sel.update(Feedback(400_000), 0.0)
    sel.update(Feedback(100_000), 0.5)
    assert sel.video_paused
    # Reports show the queue draining slowly (its padding waited 2 s, then 1 s, ...).
    now = 1.0
    for lag in (2.0, 1.8, 1.5, 1.2, 1.0, 0.8, 0.6, 0.4, 0.3):
        assert sel.update(Feedback(None, lag=lag), now) == VIDEO_OFF, lag
        now += 0.5
    drained = now
    while sel.video_paused:
        sel.update(Feedback(None, lag=0.05), now)
        now += 0.25
    assert now - drained <= sel.max_off_hold + 0.5  # then the usual hold only
    # On a long path (400 ms round trip) the lag counts from the path's own delay.
    far = LayerSelector(LAYERS)
    far.update(Feedback(400_000, rtt=0.4), 0.0)
    far.update(Feedback(100_000, rtt=0.4), 0.5)
    assert far.video_paused
    now = run(far, Feedback(None, rtt=0.4, lag=0.9), 1.0, 3.0)
    assert far.video_paused  # 0.5 s of queue
    now = run(far, Feedback(None, rtt=0.4, lag=0.45), now, 2.0)
    assert not far.video_paused
    # A viewer whose sender measured no lag at all is not waited for.
    other = LayerSelector(LAYERS)
    other.update(Feedback(400_000), 0.0)
    other.update(Feedback(100_000), 0.5)
    now = run(other, Feedback(None), 1.0, 3.0)
    assert not other.video_paused


def test_loss_or_rtt_takes_one_layer_down_even_with_a_high_estimate() -> None:
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(3_000_000), 0.0, 10.0)
    assert sel.target == 2
    assert sel.update(Feedback(3_000_000, loss=0.2), now) == 1
    # A REMB that follows repeats the same report: it does not count twice.
    assert sel.update(Feedback(3_000_000, loss=0.2, new_report=False), now + 0.5) == 1
    # The next report still covers the higher layer's packets: it settles first.
    assert sel.update(Feedback(3_000_000, loss=0.2), now + 1) == 1
    assert sel.update(Feedback(3_000_000, loss=0.2), now + 2) == 0
    assert sel.update(Feedback(3_000_000, loss=0.2), now + 4) == VIDEO_OFF
    sel2 = LayerSelector(LAYERS)
    run(sel2, Feedback(3_000_000), 0.0, 10.0)
    assert sel2.update(Feedback(3_000_000, rtt=1.5), 10.0) == 1


def top_layer_on_a_short_link() -> tuple[LayerSelector, float]:
    """A viewer on the top layer with a 20 ms RTT, one report a second."""
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(3_000_000, rtt=0.02), 0.0, 10.0)
    assert sel.target == 2
    return sel, now


def test_a_growing_queue_takes_one_layer_down_and_a_draining_one_none() -> None:
    """The link narrows under the top layer: the RTT rises with the queue (the estimate, low
    already, does not fall). Down one layer at the first sample 0.25 s above the lowest RTT;
    the queue then drains at the lower layer: the RTT is still high but falling, no second
    move down (the burst of the layer left is not the lower layer's fault)."""
    sel, now = top_layer_on_a_short_link()
    assert sel.update(Feedback(3_000_000, rtt=0.15), now) == 2  # queueing, not yet much
    assert sel.update(Feedback(3_000_000, rtt=0.30), now + 1) == 1
    sel.switched(now + 1.3)
    # The report before the switch settled: still the layer left's queue, still rising.
    assert sel.update(Feedback(3_000_000, rtt=0.60), now + 2) == 1
    # Draining: high, but each sample lower than the one before.
    for i, rtt in enumerate((0.58, 0.45, 0.35, 0.15, 0.03)):
        assert sel.update(Feedback(3_000_000, rtt=rtt), now + 3 + i) == 1, rtt


def test_a_queue_that_goes_on_growing_at_the_lower_layer_takes_the_next() -> None:
    sel, now = top_layer_on_a_short_link()
    assert sel.update(Feedback(3_000_000, rtt=0.30), now) == 1
    sel.switched(now + 0.3)
    # Not settled: the packets of the layer left take the queue's 0.5 s to arrive.
    assert sel.update(Feedback(3_000_000, rtt=0.50), now + 2) == 1
    # Settled at layer 1 (1.5 s + 0.6 s in flight after the switch) and the queue grows on,
    # above where it was at the move: layer 1 is too much as well.
    assert sel.update(Feedback(3_000_000, rtt=0.62), now + 2.6) == 0


def test_a_long_path_is_no_queue() -> None:
    """A high RTT that does not rise (a far viewer, a satellite hop) moves nothing."""
    sel = LayerSelector(LAYERS, up_hold=1.0)
    run(sel, Feedback(None, rtt=0.9), 0.0, 1.0)  # the first sample: above rtt_down, once
    assert sel.target == VIDEO_OFF
    sel = LayerSelector(LAYERS, up_hold=1.0)
    run(sel, Feedback(None, rtt=0.6), 0.0, 10.0)
    assert sel.target == 2
    for i in range(20):
        rtt = 0.6 + (0.04 if i % 2 else 0.0)  # jitter under RTT_RISE
        assert sel.update(Feedback(None, rtt=rtt), 10.0 + i) == 2


def test_no_move_up_while_a_queue_drains() -> None:
    sel, now = top_layer_on_a_short_link()
    assert sel.update(Feedback(3_000_000, rtt=0.30), now) == 1
    sel.switched(now + 0.3)
    # The queue drains slowly (0.2 s above the lowest RTT for 20 s): no probe up meanwhile.
    run(sel, Feedback(3_000_000, rtt=0.22), now + 1, 20.0)
    assert sel.target == 1
    # Drained: the probe comes after the congestion hold.
    run(sel, Feedback(3_000_000, rtt=0.02), now + 21, 10.0)
    assert sel.target == 2


def test_a_failed_probe_backs_off_and_a_flapping_link_is_probed_less_and_less() -> None:
    """A link that carries layer 1 but not layer 2: each probe up fails (the estimator sees
    overuse), and the next one waits twice as long, up to the maximum hold."""
    sel = LayerSelector(LAYERS, up_hold=2.0, probe_window=6.0, max_up_hold=16.0)
    run(sel, Feedback(700_000), 0.0, 6.0)
    assert sel.target == 2
    ups: list[float] = []
    now = 6.0
    last = sel.target
    estimate = 700_000.0
    while now < 120:
        # At layer 2 the link overflows: the estimate falls; at layer 1 it ramps again.
        estimate = 600_000.0 if sel.target == 2 else estimate * 1.01
        sel.update(Feedback(estimate), now)
        if sel.target > last:
            ups.append(now)
        last = sel.target
        now += 0.5
    gaps = [b - a for a, b in itertools.pairwise(ups)]
    assert gaps == sorted(gaps) and gaps[-1] >= 16.0
    assert len(ups) <= 7


def test_a_probe_that_holds_brings_the_hold_back() -> None:
    sel = LayerSelector(LAYERS, up_hold=2.0, probe_window=6.0)
    run(sel, Feedback(None), 0.0, 5.0)
    assert sel.target == 2
    sel.update(Feedback(700_000), 5.0)
    assert sel.update(Feedback(600_000), 5.5) == 1  # a probe that failed
    assert sel.up_hold == 8.0  # twice the hold, and at least the congestion hold
    run(sel, Feedback(None), 6.0, 20.0)
    assert sel.target == 2
    assert sel.up_hold == 2.0


def test_a_failed_probe_is_undone_at_the_first_sign_of_a_queue() -> None:
    """No settling after a move up: the layer left fitted the link, so a queue growing from
    there is the new layer's, and the viewer goes back before the queue fills."""
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(None, rtt=0.02), 0.0, 5.0)
    assert sel.update(Feedback(None, rtt=0.3), now) == 1
    sel.switched(now + 0.2)
    now = run(sel, Feedback(None, rtt=0.02), now + 1, 10.0)
    assert sel.target == 2  # the probe, after the congestion hold
    sel.switched(now)
    assert sel.update(Feedback(None, rtt=0.35), now + 0.5) == 1


def test_moderate_loss_blocks_moving_up_but_does_not_move_down() -> None:
    sel = LayerSelector(LAYERS, up_hold=1.0)
    run(sel, Feedback(None), 0.0, 2.0)
    assert sel.target == 1
    run(sel, Feedback(3_000_000, loss=0.05), 2.0, 10.0)
    assert sel.target == 1


def test_without_an_estimate_loss_and_rtt_decide() -> None:
    sel = LayerSelector(LAYERS, up_hold=1.0)
    run(sel, Feedback(None), 0.0, 5.0)
    assert sel.target == 2
    assert sel.update(Feedback(None, loss=0.3), 6.0) == 1


def test_unavailable_layers_are_never_chosen() -> None:
    sel = LayerSelector(LAYERS, up_hold=1.0)
    sel.set_bitrates([120_000, 480_000, math.inf])  # the publisher stopped its top layer
    run(sel, Feedback(None), 0.0, 10.0)
    assert sel.target == 1
    run(sel, Feedback(5_000_000), 10.0, 10.0)
    assert sel.target == 1
    # Rates are kept non-decreasing (a still picture can make a higher layer cheaper).
    sel.set_bitrates([300_000, 200_000, 900_000])
    assert [layer.bitrate for layer in sel.layers] == [300_000, 300_000, 900_000]
    # A layer that stops while it is received: down to what is sent.
    run(sel, Feedback(None), 20.0, 5.0)
    assert sel.target == 2
    sel.set_bitrates([120_000, math.inf, math.inf])
    assert sel.update(Feedback(None), 26.0) == 0


def test_layers_must_be_ordered_and_present() -> None:
    with pytest.raises(ValueError):
        LayerSelector([])
    with pytest.raises(ValueError):
        LayerSelector([Layer(500_000), Layer(150_000)])


def test_an_estimate_that_wobbles_does_not_stop_the_probes_up() -> None:
    """Chromium's REMB dips by a percent or two between reports: that is no congestion, and a
    viewer moved down once still probes up after the hold."""
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(3_000_000), 0.0, 10.0)
    assert sel.update(Feedback(400_000), now) == 0  # overuse: down to what fits
    estimate, moved_up_at = 400_000.0, None
    for step in range(40):
        estimate *= 0.98 if step % 2 else 1.015  # wobbling, slowly lower
        if sel.update(Feedback(estimate), now + 0.5 * (step + 1)) == 1:
            moved_up_at = 0.5 * (step + 1)
            break
    assert moved_up_at is not None and moved_up_at <= 10.0, moved_up_at
    # A real cut (the estimator saw overuse) is still one.
    assert sel.update(Feedback(estimate * 0.85), now + 20) == 0


def test_an_estimate_still_ramping_when_it_falls_is_no_measure_of_the_link() -> None:
    """A browser's estimate climbs a few percent a second and was far below the top layer the
    viewer received when the link narrowed: it falls (overuse), and what the viewer received
    of the video in the last window (its share of the saturated link) says where to go."""
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(300_000), 0.0, 10.0)  # climbed by probing, estimate behind
    assert sel.target == 2
    # 600 kbit/s link: 230 kbit/s would say layer 0; 580 kbit/s received carries layer 1.
    assert sel.update(Feedback(230_000, received=580_000), now) == 1
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(300_000), 0.0, 10.0)
    # 150 kbit/s link (audio beside the video): 100 kbit/s of video received, no layer fits.
    assert sel.update(Feedback(230_000, received=100_000), now) == VIDEO_OFF
    # An estimate that had measured the link (above the layer received) is taken as it is.
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(3_000_000), 0.0, 10.0)
    assert sel.update(Feedback(600_000, received=800_000), now) == 1


def test_a_queue_on_a_link_far_too_short_goes_straight_to_what_it_carries() -> None:
    sel, now = top_layer_on_a_short_link()
    far_too_short = Feedback(3_000_000, rtt=0.6, received=160_000, sent=1_250_000)
    assert sel.update(far_too_short, now) == VIDEO_OFF
    sel, now = top_layer_on_a_short_link()
    # Received about what was sent (the queue just started): one layer down only.
    just_started = Feedback(3_000_000, rtt=0.3, received=1_200_000, sent=1_250_000)
    assert sel.update(just_started, now) == 1


def test_a_queue_that_stands_after_a_move_down_takes_the_next() -> None:
    """A drop-tail queue that is full does not grow any more: the layer moved to keeps it
    full (its RTT as high as at the move and not falling) once settled: one more down."""
    sel, now = top_layer_on_a_short_link()
    assert sel.update(Feedback(2_000_000, rtt=0.02), now) == 2
    assert sel.update(Feedback(1_200_000, rtt=0.02, received=600_000), now + 0.5) == 1
    sel.switched(now + 0.7)
    for i in range(8):  # full and standing
        sel.update(Feedback(1_200_000, rtt=1.0 + 0.01 * (i % 2)), now + 1 + 0.5 * i)
    assert sel.target == 0


def test_loss_counts_from_packets_sent_after_the_move() -> None:
    sel, now = top_layer_on_a_short_link()
    assert sel.update(Feedback(3_000_000, loss=0.3, rtt=0.1, loss_since=now - 1), now) == 1
    sel.switched(now + 0.2)
    # A window that started before the move (plus the RTT): the layer left's loss.
    assert sel.update(Feedback(3_000_000, loss=0.3, rtt=0.1, loss_since=now), now + 1.8) == 1
    # A window of packets sent after the switch: layer 1 loses them too.
    assert sel.update(Feedback(3_000_000, loss=0.3, rtt=0.1, loss_since=now + 0.4), now + 2) == 0


def test_the_first_estimate_after_a_pause_is_not_a_fall() -> None:
    """Back to video after a pause: the viewer's first estimate is compared with nothing from
    before the pause (its link was another then), so it does not undo the move."""
    sel = LayerSelector(LAYERS)
    sel.update(Feedback(400_000), 0.0)
    assert sel.update(Feedback(100_000, received=50_000), 0.5) == VIDEO_OFF
    now = run(sel, Feedback(None, received=5_000), 1.0, 3.0)
    assert sel.target == 0
    assert sel.update(Feedback(70_000, received=5_000), now) == 0


def test_one_report_with_a_stray_loss_does_not_restart_the_hold() -> None:
    """Paused on a link that just opened: one window still shows a packet or two lost (3 %),
    the hold's reports average under 2 %: video comes back on time."""
    sel = LayerSelector(LAYERS)
    sel.update(Feedback(400_000), 0.0)
    assert sel.update(Feedback(100_000, received=50_000), 0.5) == VIDEO_OFF
    for i, loss in enumerate((0.0, 0.0, 0.03, 0.0, 0.0)):
        sel.update(Feedback(None, loss=loss), 1.0 + 0.5 * i)
    assert sel.target == 0


def test_a_link_that_delivers_much_less_than_was_sent_is_congested() -> None:
    """No RTT sample and little loss, but the viewer received 60 of the 110 kbit/s sent in the
    window: the rest waits in a queue. Down to what it carried (nothing fits: audio only)."""
    sel = LayerSelector(LAYERS)
    run(sel, Feedback(None), 0.0, 3.0)
    sel.set_bitrates([110_000, 300_000, 800_000])
    sel._down(0, 3.0)
    sel.switched(3.2)
    assert sel.update(Feedback(None, loss=0.01, received=100_000, sent=110_000), 5.0) == 0
    assert sel.update(Feedback(None, loss=0.01, received=60_000, sent=110_000), 6.0) == -1
    assert sel.reason == "saturated"


def test_failed_probes_from_a_paused_video_back_off() -> None:
    """A link that cannot carry the lowest layer beside the sound: each probe costs sound, so
    each failed one doubles the wait (1, 2, 4 s), up to 4 s."""
    sel = LayerSelector(LAYERS)
    sel.update(Feedback(400_000), 0.0)
    assert sel.update(Feedback(100_000, received=50_000), 0.5) == VIDEO_OFF
    ups, now = [], 0.6
    while now < 30:
        if sel.target == 0:  # the probe overflows the link's queue
            sel.update(Feedback(None, loss=0.0, received=40_000, sent=110_000), now)
        else:
            before = sel.target
            sel.update(Feedback(None, loss=0.0), now)
            if sel.target > before:
                ups.append(now)
        now += 0.25
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(ups)]
    assert ups[0] <= 2.5 and gaps[0] < gaps[1] and max(gaps) <= 4.0 + 1.0, gaps


def moved_down_to_the_middle() -> tuple[LayerSelector, float]:
    """A viewer the link moved from the top layer to the middle one (its estimate fell to
    600 kbit/s), which then receives everything sent (520 of 530 kbit/s), no loss, no queue,
    its estimate flat, for 4 s after the switch."""
    sel, now = top_layer_on_a_short_link()
    assert sel.update(Feedback(600_000, rtt=0.02), now) == 1
    sel.switched(now + 0.3)
    for i in range(1, 5):
        calm = Feedback(590_000, rtt=0.02, received=520_000, sent=530_000)
        assert sel.update(calm, now + 0.3 + i) == 1
    return sel, now + 4.3


# Chromium's estimate 4-8 s after a move down: 0.85x, everything still arriving.
DIP = Feedback(500_000, rtt=0.02, received=520_000, sent=530_000)


def test_an_estimate_that_dips_while_everything_arrives_moves_nothing() -> None:
    """The estimate falls (500 kbit/s: under the middle layer with its headroom) while the
    viewer receives what is sent with no loss and no queue: a dip of the estimator alone. No
    report after it shows anything: the viewer keeps its layer."""
    sel, now = moved_down_to_the_middle()
    assert sel.update(DIP, now + 0.5) == 1
    for i in range(1, 7):
        assert sel.update(DIP, now + 0.5 + 0.5 * i) == 1
    # Later, a shortfall that is not saturation: the dip is long forgotten.
    later = Feedback(500_000, rtt=0.02, received=400_000, sent=530_000)
    assert sel.update(later, now + 4.5) == 1


@pytest.mark.parametrize(
    "then",
    [
        Feedback(500_000, rtt=0.02, received=380_000, sent=530_000),  # a shortfall
        Feedback(500_000, loss=0.05, rtt=0.02, received=520_000, sent=530_000),  # loss
    ],
    ids=["shortfall", "loss"],
)
def test_a_dip_that_a_report_confirms_within_3_s_moves_down(then: Feedback) -> None:
    sel, now = moved_down_to_the_middle()
    assert sel.update(DIP, now + 0.5) == 1
    assert sel.update(DIP, now + 1.0) == 1
    assert sel.update(then, now + 2.5) == 0
    assert sel.reason == "estimate"


def test_an_estimate_that_goes_on_falling_while_everything_arrives_is_one_dip() -> None:
    """Chromium's estimate went on falling for seconds (to a sixth of what it received) with
    everything arriving: one dip, watched from its last fall. A queue after it moves the
    viewer to what the lowest estimate carries."""
    sel, now = moved_down_to_the_middle()
    estimate = 500_000.0
    for i in range(8):  # 15 % lower every 0.6 s, 4.8 s in all: longer than DIP_S
        feedback = Feedback(estimate, rtt=0.02, received=520_000, sent=530_000)
        assert sel.update(feedback, now + 0.6 * i) == 1
        estimate *= 0.85
    assert sel.update(Feedback(estimate, rtt=0.02), now + 5.0) == 1
    queue = Feedback(estimate, rtt=0.30, received=520_000, sent=530_000)
    assert sel.update(queue, now + 6.0) == VIDEO_OFF  # 136 kbit/s: not even layer 0


def test_a_keyframes_burst_does_not_confirm_a_dip() -> None:
    """One RTT sample 0.13 s above the path's (a keyframe's burst on the link) is no queue of
    congestion: the dip stays held."""
    sel, now = moved_down_to_the_middle()
    assert sel.update(DIP, now + 0.5) == 1
    burst = Feedback(500_000, rtt=0.15, received=520_000, sent=530_000)
    assert sel.update(burst, now + 2.0) == 1
    assert sel.update(DIP, now + 3.0) == 1


def test_a_dip_holds_no_probe_up() -> None:
    """While a dip may still turn out to be congestion, the viewer does not probe higher."""
    sel, now = moved_down_to_the_middle()
    calm = Feedback(590_000, rtt=0.02, received=520_000, sent=530_000)
    now = run(sel, calm, now, 4.0)  # the congestion hold (8 s) nearly over
    assert sel.target == 1
    assert sel.update(DIP, now) == 1
    flat = Feedback(500_000, rtt=0.02, received=520_000, sent=530_000)
    assert sel.update(flat, now + 0.5) == 1
    assert sel.update(flat, now + 2.0) == 1  # the hold is over, but the dip is pending
    # Without the dip it would have probed 1 s later; the hold starts again once it is over.
    ups = [t for t in range(3, 20) if sel.update(flat, now + t) == 2]
    assert ups and ups[0] >= DIP_S + DEFAULT_CONGESTION_HOLD, ups


def test_an_estimate_that_falls_on_a_layer_climbed_to_counts_at_once() -> None:
    """A viewer moved down that probed up to the top layer again: a falling estimate is how a
    link narrowing under it shows first (an aiortc viewer's did, with no loss or queue in
    time), dip or not."""
    sel, now = moved_down_to_the_middle()
    everything = Feedback(3_000_000, rtt=0.02, received=1_200_000, sent=1_210_000)
    while sel.target < 2:
        sel.update(everything, now)
        now += 1.0
    falls = Feedback(900_000, rtt=0.02, received=1_200_000, sent=1_210_000)
    assert sel.update(falls, now) == 1


def test_an_estimate_that_falls_soon_after_a_move_down_counts() -> None:
    """Within 4 s of a move down the link has not shown the new layer fits: no dip."""
    sel, now = top_layer_on_a_short_link()
    assert sel.update(Feedback(600_000, rtt=0.02), now) == 1
    sel.switched(now + 0.3)
    calm = Feedback(590_000, rtt=0.02, received=520_000, sent=530_000)
    assert sel.update(calm, now + 1.3) == 1
    assert sel.update(DIP, now + 2.3) == 0


def test_the_next_step_down_comes_after_the_settling_not_the_queue() -> None:
    """A 150 kbit/s link under the top layer: its queue holds seconds (RTT 2.5 s). Half a
    second after each switch down, a report showing the queue and the link delivering too
    little for the layer now received takes the next step: audio only 2.5 s after the link
    narrowed, not after the settling (1.5 s) plus the RTT each time."""
    sel = LayerSelector(LAYERS)
    run(sel, Feedback(3_000_000, rtt=0.02), 0.0, 10.0)
    sel.set_bitrates([100_000, 300_000, 800_000])
    assert sel.target == 2
    assert sel.update(Feedback(2_000_000, rtt=0.02, received=700_000, sent=800_000), 10.0) == 2
    # The estimate falls: the link carried 390 kbit/s of the top layer, layer 1 fits that.
    assert sel.update(Feedback(900_000, rtt=0.02, received=390_000, sent=800_000), 10.5) == 1
    sel.switched(10.7)
    full = Feedback(900_000, rtt=2.5, received=200_000, sent=330_000)
    # Saturated (60 % of what was sent delivered): what it delivers is the link's rate,
    # whichever layer's packets wait in its queue, and 200 kbit/s does not carry layer 1.
    assert sel.update(full, 11.1) == 0
    assert sel.reason == "saturated"
    sel.switched(11.5)
    still_full = Feedback(900_000, rtt=2.6, received=90_000, sent=115_000)
    assert sel.update(still_full, 11.9) == 0
    assert sel.update(still_full, 12.5) == VIDEO_OFF  # 90 kbit/s: not even layer 0


def test_a_saturated_link_takes_the_next_step_without_an_rtt_sample() -> None:
    """The queue holds the sender reports too, so no RTT sample comes back: the link
    delivering a fifth of what was sent shows it full. Straight to what it delivers."""
    sel = LayerSelector(LAYERS)
    run(sel, Feedback(3_000_000), 0.0, 10.0)
    sel.set_bitrates([100_000, 300_000, 800_000])
    assert sel.update(Feedback(900_000, received=390_000, sent=800_000), 10.5) == 1
    sel.switched(10.7)
    saturated = Feedback(900_000, received=105_000, sent=500_000)
    assert sel.update(saturated, 11.1) == VIDEO_OFF  # at once, not after the half second


def test_a_queue_after_a_move_down_that_the_layer_fits_takes_no_next_step() -> None:
    """The top layer's burst left a queue; the link delivers 550 kbit/s, enough for the
    middle layer: it stays there while the queue drains."""
    sel, now = top_layer_on_a_short_link()
    assert sel.update(Feedback(600_000, rtt=0.02), now) == 1
    sel.switched(now + 0.3)
    for i, rtt in enumerate((0.7, 0.6, 0.45, 0.3)):
        draining = Feedback(600_000, rtt=rtt, received=590_000, sent=800_000)
        assert sel.update(draining, now + 2 + i) == 1, rtt


def test_loss_while_the_queue_of_the_layer_left_drains_is_that_queues() -> None:
    """The top layer's queue on a 600 kbit/s link, counted in packets (the voice's too), went
    on overflowing after the move down as the middle layer's keyframe went in: 15 % loss in a
    window that started after the move plus the RTT, while the RTT fell from its height. Not
    held against the middle layer; loss once the queue has drained is."""
    sel, now = top_layer_on_a_short_link()
    assert sel.update(Feedback(3_000_000, rtt=0.65), now) == 1
    sel.switched(now + 0.2)
    assert sel.update(Feedback(3_000_000, rtt=1.09), now + 1.1) == 1  # the keyframe went in
    assert sel.update(Feedback(3_000_000, rtt=0.84), now + 1.7) == 1
    lossy = Feedback(3_000_000, loss=0.15, loss_since=now + 1.9)
    assert sel.update(lossy, now + 3.0) == 1
    assert sel.update(Feedback(3_000_000, rtt=0.03), now + 4.0) == 1  # drained
    assert sel.update(Feedback(3_000_000, loss=0.15, loss_since=now + 4.0), now + 5.0) == 0
    assert sel.reason == "loss"


def moved_down_from_the_top_into_a_full_queue() -> tuple[LayerSelector, float]:
    """A Chromium viewer's 600 kbit/s link, from the top layer: moved down at a 0.7 s queue,
    1.0 s at the next sample (the switch 0.2 s after the move)."""
    sel, now = top_layer_on_a_short_link()
    sel.set_bitrates([88_000, 257_000, 797_000])
    assert sel.update(Feedback(3_000_000, rtt=0.7, received=556_000, sent=774_000), now) == 1
    sel.switched(now + 0.2)
    assert sel.update(Feedback(3_000_000, rtt=1.0, received=516_000, sent=584_000), now + 1.4) == 1
    return sel, now


def test_loss_before_the_queue_left_can_have_drained_is_that_queues() -> None:
    """1.9 s after the switch a window with 18 % loss, before any sample showed the queue
    falling. The link carries 425 kbit/s of video, the middle layer needs 257: that queue
    (1.0 s of the link) drains in about 2.5 s, so the loss is its own. Loss of packets sent
    after that counts; and a layer that cannot drain it is left."""
    sel, now = moved_down_from_the_top_into_a_full_queue()
    lossy = Feedback(3_000_000, loss=0.18, received=425_000, sent=311_000, loss_since=now + 1.4)
    assert sel.update(lossy, now + 2.1) == 1
    # Packets sent 3 s after the switch and still lost: the middle layer's own.
    late = Feedback(3_000_000, loss=0.18, received=425_000, sent=311_000, loss_since=now + 4.4)
    assert sel.update(late, now + 5.2) == 0
    assert sel.reason == "loss"
    # The same link delivering less than the middle layer: its queue never drains.
    sel, now = moved_down_from_the_top_into_a_full_queue()
    short = Feedback(3_000_000, loss=0.18, received=200_000, sent=311_000, loss_since=now + 1.4)
    assert sel.update(short, now + 2.1) == 0


def test_a_queue_that_fell_from_its_height_since_the_move_drains_whatever_a_bump() -> None:
    """A 600 kbit/s link after a move from the top layer: the queue grew on a little (the new
    layer's keyframe), then fell, one sample bumping up again. Still draining: no step."""
    sel, now = top_layer_on_a_short_link()
    assert sel.update(Feedback(3_000_000, rtt=0.77), now) == 1
    sel.switched(now + 0.2)
    for i, rtt in enumerate((1.02, 0.68, 0.79, 0.55, 0.02)):
        assert sel.update(Feedback(3_000_000, rtt=rtt), now + 1.3 + i) == 1, rtt


def test_a_queue_that_drains_after_a_move_down_takes_no_next_step() -> None:
    """After the move to the middle layer the 600 kbit/s link's queue was at 1.08 s, then
    0.77 s: draining, while the video got 245 of the 304 kbit/s sent (retransmissions into the
    queue took the rest of the link), under what the middle layer needs with its headroom.
    No next step while it drains; once the queue grows again, one."""
    sel, now = top_layer_on_a_short_link()
    sel.set_bitrates([100_000, 339_000, 800_000])
    assert sel.update(Feedback(3_000_000, rtt=0.68), now) == 1
    sel.switched(now + 0.2)
    assert sel.update(Feedback(3_000_000, rtt=1.08), now + 1.3) == 1
    short = Feedback(3_000_000, rtt=0.77, received=245_000, sent=304_000)
    assert sel.update(short, now + 2.2) == 1
    assert sel.update(Feedback(3_000_000, received=245_000, sent=304_000), now + 3.3) == 1
    growing = Feedback(3_000_000, rtt=1.2, received=245_000, sent=304_000)
    assert sel.update(growing, now + 4.0) == 0


def test_a_falling_estimate_undoes_a_probe_from_paused_video() -> None:
    """The lowest layer tried from "video paused" on a link that carried only the voice: the
    estimate falls (overuse) while the window's delivery reads far more than the link carries
    (a resume's window): back to audio only at once."""
    sel = LayerSelector(LAYERS)
    sel.update(Feedback(400_000), 0.0)
    assert sel.update(Feedback(100_000, received=50_000), 0.5) == VIDEO_OFF
    now = 1.0
    while sel.update(Feedback(None), now) == VIDEO_OFF:
        now += 0.1
    assert sel.target == 0 and sel.reason == "probe"
    assert sel.update(Feedback(53_000, received=1_500_000, sent=50_000), now + 0.05) == 0
    # An estimate that falls a little before it could have seen the video: of the voice.
    assert sel.update(Feedback(48_000, received=3_000, sent=0), now + 0.15) == 0
    assert sel.update(Feedback(41_000, received=1_500_000, sent=50_000), now + 0.8) == VIDEO_OFF
    # A viewer moved down to the lowest layer (not a probe): the estimate decides as before.
    sel = LayerSelector(LAYERS)
    now = run(sel, Feedback(3_000_000), 0.0, 10.0)
    assert sel.update(Feedback(200_000), now) == 0
    assert sel.update(Feedback(180_000, received=1_500_000, sent=160_000), now + 0.5) == 0


def test_loss_on_a_layer_climbed_to_counts_whatever_its_queue_does() -> None:
    """No move down yet: a queue that rises and dips a little is this layer's, and so is its
    loss (only the queue a move down left is not the new layer's)."""
    sel, now = top_layer_on_a_short_link()
    assert sel.update(Feedback(3_000_000, rtt=0.15), now) == 2
    assert sel.update(Feedback(3_000_000, rtt=0.24), now + 0.5) == 2
    assert sel.update(Feedback(3_000_000, rtt=0.20), now + 1.0) == 2
    lossy = Feedback(3_000_000, loss=0.2, loss_since=now)
    assert sel.update(lossy, now + 1.5) == 1
