"""Padding probes in the layer selection (media/layers.py, media/probe.py): a fake clock, no
network. The viewer moves up (or gets video back) only when the link carried the padding."""

from __future__ import annotations

import pytest

from media.layers import (
    PADDING_OFF_HOLD_CAP,
    PAUSED_PROBE_BOOST,
    PROBE_LAG,
    VIDEO_OFF,
    Feedback,
    Layer,
    LayerSelector,
)
from media.probe import (
    PROBE_MAX_S,
    PROBE_MIN_S,
    QUEUE_GROWTH,
    QUEUE_SLACK_S,
    ProbeReport,
    judge,
)

LAYERS = [Layer(150_000, 320, 180), Layer(500_000, 640, 360), Layer(1_200_000, 1280, 720)]
CARRIED = ProbeReport(elapsed=1.0, queue=0.02, sent=100, lost=0)  # a link that carries it
QUEUED = ProbeReport(elapsed=1.0, queue=0.3, sent=100, lost=0)  # one that queues it


def test_judge_a_probe_by_its_queue_and_loss() -> None:
    assert judge(CARRIED) is True
    assert judge(QUEUED) is False
    # Too early to pass, never too early to fail.
    assert judge(ProbeReport(PROBE_MIN_S / 2, 0.01, 20)) is None
    assert judge(ProbeReport(PROBE_MIN_S / 2, 0.5, 20)) is False
    # The queue a link that carries the probe may show grows with the probe's length.
    limit = QUEUE_SLACK_S + QUEUE_GROWTH * 2.0
    assert judge(ProbeReport(2.0, limit - 0.005, 200)) is True
    assert judge(ProbeReport(2.0, limit + 0.005, 200)) is False
    # A policer drops instead of queueing: 20 % of the probe lost fails it, 5 % does not.
    assert judge(ProbeReport(1.0, 0.01, 100, lost=20)) is False
    assert judge(ProbeReport(1.0, 0.01, 100, lost=5)) is True
    assert judge(ProbeReport(1.0, 0.01, 100, lost=None)) is True  # loss unknown


def paused_selector() -> tuple[LayerSelector, float]:
    """A viewer whose link collapsed: video paused, the queue drained (lag from the
    keep-alive padding), padding probes available."""
    sel = LayerSelector(LAYERS, up_hold=2.0)
    sel.padding_probes = True
    sel.update(Feedback(3_000_000), 0.0)
    assert sel.update(Feedback(100_000), 0.5) == VIDEO_OFF
    return sel, 0.5


def until_probe(sel: LayerSelector, feedback: Feedback, now: float, step: float) -> float:
    """Feed ``feedback`` every ``step`` seconds until the selector asks for a probe; returns
    the time after the last feed."""
    start = now
    while sel.probe is None:
        sel.update(feedback, now)
        now += step
        assert now - start < 30, "no probe"
    return now


def failed_probe_waits(sel: LayerSelector, now: float, report: ProbeReport, n: int) -> list[float]:
    """With video paused and the link drained, ``n`` probes that ``report`` fails: the wait
    before each."""
    waits = []
    for _ in range(n):
        start = now
        now = until_probe(sel, Feedback(None, lag=0.03), now, 0.25)
        waits.append(now - start)
        assert sel.probe_report(report, now) == VIDEO_OFF
        assert sel.probe is None
    return waits


def test_video_comes_back_only_after_a_probe_passes() -> None:
    sel, now = paused_selector()
    # No lag measured since the pause: no probe (the queue that paused it may stand).
    for t in (1.0, 2.0, 3.0, 4.0):
        sel.update(Feedback(None), now + t)
        assert sel.probe is None and sel.target == VIDEO_OFF
    # The keep-alive padding shows a standing queue: still none.
    for t in (5.0, 6.0, 7.0):
        sel.update(Feedback(None, lag=PROBE_LAG + 0.3), now + t)
        assert sel.probe is None
    # Drained: after the hold, a probe of the lowest layer at twice its rate with headroom;
    # the target does not move yet.
    now += 8.0
    for t in (0.0, 0.5, 1.0, 1.5):
        sel.update(Feedback(None, lag=0.03), now + t)
    probe = sel.probe
    assert probe is not None and probe.layer == 0 and sel.target == VIDEO_OFF
    assert probe.rate == pytest.approx(150_000 * sel.headroom * PAUSED_PROBE_BOOST)
    # A report too early to tell changes nothing; one that shows the link carried it moves.
    assert sel.probe_report(ProbeReport(0.3, 0.01, 20), now + 1.8) == VIDEO_OFF
    assert sel.probe is probe
    assert sel.probe_report(CARRIED, now + 2.5) == 0
    assert sel.probe is None and sel.reason == "probe"


def test_a_failed_probe_keeps_video_paused_and_waits_longer() -> None:
    sel, now = paused_selector()
    waits = failed_probe_waits(sel, now + 1.0, QUEUED, 4)  # the link did not carry them
    # Each failure doubles the wait, up to a short cap (video back within seconds of the
    # link opening), and the failures are counted.
    assert waits[-1] <= PADDING_OFF_HOLD_CAP + 0.5
    assert waits[-1] > waits[0]
    assert sel.probes_failed == 4


def test_a_probe_with_no_report_in_time_fails() -> None:
    sel, now = paused_selector()
    now = until_probe(sel, Feedback(None, lag=0.03), now + 1.0, 0.25)
    sel.update(Feedback(None, lag=0.03), now + PROBE_MAX_S + 0.1)
    assert sel.probe is None and sel.target == VIDEO_OFF and sel.probes_failed == 1


def test_a_move_up_pads_the_difference_and_the_probe_is_no_congestion() -> None:
    sel = LayerSelector(LAYERS, up_hold=2.0)
    sel.padding_probes = True
    now = until_probe(sel, Feedback(600_000, rtt=0.05), 0.0, 0.5)
    probe = sel.probe
    assert probe is not None
    assert probe.layer == 1 and sel.target == 0
    assert probe.rate == pytest.approx(500_000 * sel.headroom - 150_000)
    # While it runs, the queue and the falling estimate it causes move nobody down.
    assert sel.update(Feedback(300_000, loss=0.15, rtt=0.6), now) == 0
    assert sel.probe_report(QUEUED, now + 0.5) == 0  # failed: stays on layer 0
    # ... nor in the settling time after it.
    assert sel.update(Feedback(280_000, loss=0.15, rtt=0.7), now + 1.0) == 0
    # Later, congestion is congestion again.
    assert sel.update(Feedback(100_000, loss=0.15, rtt=0.9), now + 6.0) == VIDEO_OFF


def test_a_falling_estimate_seen_by_the_caller_fails_the_probe() -> None:
    sel = LayerSelector(LAYERS, up_hold=2.0)
    sel.padding_probes = True
    now = until_probe(sel, Feedback(600_000), 0.0, 0.5)
    assert sel.probe_failed(now) == 0
    assert sel.probe is None and sel.probes_failed == 1
    # The next probe waits twice the hold.
    start = now
    now = until_probe(sel, Feedback(600_000), now, 0.5)
    assert now - start >= 2 * 2.0


def test_without_padding_the_move_up_is_the_probe() -> None:
    sel = LayerSelector(LAYERS, up_hold=2.0)
    assert not sel.padding_probes
    sel.update(Feedback(600_000), 0.0)
    assert sel.update(Feedback(600_000), 2.0) == 1 and sel.probe is None


def test_a_probe_that_failed_at_once_does_not_lengthen_the_wait() -> None:
    sel, now = paused_selector()
    # A browser reports with every NACK: the queue showed after 0.2 s of probe.
    waits = failed_probe_waits(sel, now + 1.0, ProbeReport(0.2, 0.12, 15, 0), 3)
    assert waits[-1] == pytest.approx(waits[0])
