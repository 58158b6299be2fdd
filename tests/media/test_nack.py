"""NACK on ingest asked again (media/internals/nack.py): a packet still missing is NACKed
again after NACK_RETRY_S, up to NACK_TRIES times, even when no new gap opens.

Packets go through the generator's real ``add()`` (aiortc's, then the retry rule), with a
clock the test moves; the receiver sends a NACK of every ``missing`` packet when it is True.
"""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcrtpreceiver import NackGenerator, RemoteStreamTrack
from aiortc.rtp import RtpPacket

from media.internals import install_ingest
from media.internals.nack import (
    _RECEIVER_NACK_GENERATOR,
    NACK_RETRY_S,
    NACK_TRIES,
    RetryingNackGenerator,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def packet(seq: int) -> RtpPacket:
    return RtpPacket(sequence_number=seq)


def nacks(generator: NackGenerator, clock: Clock, seqs: range, step: float) -> list[list[int]]:
    """The NACKs the receiver sends while packets ``seqs`` arrive ``step`` seconds apart."""
    sent = []
    for seq in seqs:
        clock.now += step
        if generator.add(packet(seq)):
            sent.append(sorted(generator.missing))
    return sent


@pytest.mark.timeout(5)
def test_a_packet_whose_retransmission_was_lost_is_asked_for_again_when_the_loss_stopped() -> None:
    clock = Clock()
    mine, stock = RetryingNackGenerator(clock), NackGenerator()
    for generator in (mine, stock):
        generator.add(packet(1))
        assert generator.add(packet(3))  # 2 is missing: the first NACK, both alike
    # 2's retransmission is lost too; no packet goes missing after it (a 15 fps layer).
    stock_clock = Clock()
    assert nacks(stock, stock_clock, range(4, 20), 1 / 15) == []  # aiortc never asks again
    sent = nacks(mine, clock, range(4, 20), 1 / 15)
    assert sent == [[2]] * (NACK_TRIES - 1)  # asked twice more, then given up
    assert mine.retries == NACK_TRIES - 1 and mine.missing == set()
    # The retransmission that comes late is taken; nothing else is asked for.
    assert not mine.add(packet(2))


@pytest.mark.timeout(5)
def test_retries_are_spaced_a_round_trip_apart_and_a_repaired_packet_is_not_asked_again() -> None:
    clock = Clock()
    mine = RetryingNackGenerator(clock)
    mine.add(packet(1))
    assert mine.add(packet(3))
    clock.now += NACK_RETRY_S / 2
    assert not mine.add(packet(4))  # too soon: its retransmission may be on its way
    clock.now += NACK_RETRY_S / 2
    assert mine.add(packet(5)) and mine.missing == {2}
    assert not mine.add(packet(2))  # repaired
    clock.now += NACK_RETRY_S * 3
    assert not mine.add(packet(6)) and mine.retries == 1
    # A new gap is NACKed at once, and lists only what is still missing.
    assert mine.add(packet(8)) and sorted(mine.missing) == [7]


@pytest.mark.timeout(5)
async def test_install_ingest_gives_a_video_receiver_the_retrying_generator() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        video = pc.addTransceiver("video").receiver
        audio = pc.addTransceiver("audio").receiver
        video._track = RemoteStreamTrack(kind="video")  # type: ignore[attr-defined]
        audio._track = RemoteStreamTrack(kind="audio")  # type: ignore[attr-defined]
        assert type(getattr(video, _RECEIVER_NACK_GENERATOR)) is NackGenerator
        install_ingest(video, lambda c, p: None, lambda: None)
        install_ingest(audio, lambda c, p: None, lambda: None)
        assert isinstance(getattr(video, _RECEIVER_NACK_GENERATOR), RetryingNackGenerator)
        assert getattr(audio, _RECEIVER_NACK_GENERATOR) is None  # audio is never NACKed
    finally:
        await pc.close()
