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
