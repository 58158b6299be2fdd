"""Keyframe request coalescing: a fake clock, no network."""

from __future__ import annotations

import itertools

import pytest

from media.pli import PliCoalescer


@pytest.mark.timeout(5)
def test_requests_within_interval_are_coalesced() -> None:
    pli = PliCoalescer(interval=0.5)
    assert pli.request(10.0)  # first request goes out at once
    assert not pli.request(10.1)  # deferred
    assert not pli.request(10.2)  # merged into the deferred one
    assert pli.pending and pli.next_due() == pytest.approx(10.5)
    assert not pli.poll(10.49)
    assert pli.poll(10.5)  # one PLI for both
    assert not pli.pending and not pli.poll(10.6)
    assert not pli.request(10.7)  # still within 0.5 s of the PLI at 10.5
    assert pli.poll(11.0)
    assert pli.request(11.6)  # interval over: immediate again


@pytest.mark.timeout(5)
def test_thirty_joins_in_a_second_make_three_plis() -> None:
    pli = PliCoalescer(interval=0.5)
    sent = []
    now = 0.0
    for i in range(30):
        now = i / 30
        if pli.request(now) or pli.poll(now):
            sent.append(now)
    while pli.pending:
        now += 0.01
        if pli.poll(now):
            sent.append(now)
    assert len(sent) == 3
    assert all(b - a >= 0.5 for a, b in itertools.pairwise(sent))


@pytest.mark.timeout(5)
def test_keyframe_arrival_cancels_a_deferred_request() -> None:
    pli = PliCoalescer(interval=0.5)
    assert pli.request(0.0)
    assert not pli.request(0.1)
    pli.keyframe_received()
    assert not pli.pending and pli.next_due() is None
    assert not pli.poll(1.0)


@pytest.mark.timeout(5)
def test_an_answered_pli_lets_the_next_join_ask_after_the_floor() -> None:
    """Back-to-back joins: once the previous PLI's keyframe arrived, the next request waits only
    for the floor (under the encoder's 300 ms), not for the whole interval."""
    pli = PliCoalescer(interval=0.5, min_interval=0.25)
    assert pli.request(0.0)
    pli.keyframe_received()  # the first viewer's keyframe, 0.1 s later
    assert not pli.request(0.15)  # the next viewer joins right after: floor not reached
    assert pli.next_due() == pytest.approx(0.25)
    assert not pli.poll(0.24)
    assert pli.poll(0.25)  # 0.25 s after the previous PLI, not 0.5 s
    # Not answered yet: a third join waits for the full interval (or for the keyframe).
    assert not pli.request(0.3)
    assert pli.next_due() == pytest.approx(0.75)
    pli.keyframe_received()  # that keyframe answers the third join too
    assert not pli.pending and not pli.poll(1.0)
    assert pli.request(1.0)


@pytest.mark.timeout(5)
def test_a_rush_of_joins_answered_quickly_is_served_at_the_floor() -> None:
    """Thirty back-to-back joins, each keyframe arriving 50 ms after its PLI: one PLI per
    0.25 s at most, and none waits the 0.5 s interval."""
    pli = PliCoalescer(interval=0.5, min_interval=0.25)
    sent: list[float] = []
    answer_at: float | None = None
    waits: list[float] = []
    asked_at: float | None = None
    now = 0.0
    joins = [i * 0.1 for i in range(30)]
    while now < 10 and (joins or pli.pending or answer_at is not None):
        if answer_at is not None and now >= answer_at:
            pli.keyframe_received()
            answer_at = None
            if asked_at is not None:
                waits.append(now - asked_at)
                asked_at = None
        if joins and now >= joins[0]:
            joins.pop(0)
            asked_at = now if asked_at is None else asked_at
            if pli.request(now):
                sent.append(now)
                answer_at = now + 0.05
        if pli.poll(now):
            sent.append(now)
            answer_at = now + 0.05
        now = round(now + 0.01, 2)
    assert all(b - a >= 0.25 - 1e-9 for a, b in itertools.pairwise(sent))
    assert max(waits) <= 0.30 + 1e-9


@pytest.mark.timeout(5)
def test_an_unanswered_pli_still_waits_the_interval() -> None:
    pli = PliCoalescer(interval=0.5, min_interval=0.25)
    assert pli.request(0.0)
    assert not pli.request(0.3)  # nothing arrived yet: the floor does not apply
    assert not pli.poll(0.3)
    assert pli.poll(0.5)
    # A floor above the interval is clamped to it; negatives are refused.
    assert PliCoalescer(interval=0.1, min_interval=0.25).min_interval == 0.1
    with pytest.raises(ValueError):
        PliCoalescer(interval=-1)


@pytest.mark.timeout(5)
def test_a_pli_that_could_not_be_sent_does_not_count() -> None:
    pli = PliCoalescer(interval=0.5)
    assert pli.request(0.0)
    pli.not_sent()  # e.g. the publisher's media SSRC was not known yet
    assert pli.request(0.1)  # the next request goes at once
    assert not pli.request(0.2)
