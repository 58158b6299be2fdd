"""Frame release on ingest (media/internals/jitter.py): a frame leaves when it is complete.

Packets go through the buffer's real ``add()`` (aiortc's, which calls the replaced
``_remove_frame``); the end-to-end effect on a leg is in tests/media/test_relay.py.
"""

from __future__ import annotations

import pytest
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from media.internals.jitter import ReleasingJitterBuffer


def rtp(seq: int, timestamp: int, data: bytes, marker: bool = False) -> RtpPacket:
    packet = RtpPacket(sequence_number=seq, timestamp=timestamp, marker=int(marker))
    packet._data = data  # type: ignore[attr-defined]  # what the receiver's depayload sets
    return packet


def released(buffer: JitterBuffer, packet: RtpPacket) -> list[tuple[int, bytes]]:
    """The frames one add() gives: the receiver's one, then what waits in ``ready``."""
    _pli, frame = buffer.add(packet)
    frames: list[JitterFrame] = [] if frame is None else [frame]
    if isinstance(buffer, ReleasingJitterBuffer):
        frames += buffer.take_ready()
    return [(f.timestamp, f.data) for f in frames]


def video() -> ReleasingJitterBuffer:
    return ReleasingJitterBuffer(512, is_video=True)


@pytest.mark.timeout(5)
def test_a_video_frame_leaves_on_its_marker_packet_not_on_the_next_frame() -> None:
    mine, stock = video(), JitterBuffer(capacity=512, is_video=True)
    frame = [rtp(10, 3000, b"a"), rtp(11, 3000, b"b"), rtp(12, 3000, b"c", marker=True)]
    for packet in frame[:2]:
        assert released(mine, packet) == [] and released(stock, packet) == []
    assert released(mine, frame[2]) == [(3000, b"abc")]
    assert released(stock, frame[2]) == []  # aiortc waits for the next frame's first packet
    assert released(stock, rtp(13, 6000, b"d")) == [(3000, b"abc")]
    assert released(mine, rtp(13, 6000, b"d")) == []
    assert released(mine, rtp(14, 6000, b"e", marker=True)) == [(6000, b"de")]


@pytest.mark.timeout(5)
def test_a_hole_holds_the_frame_until_repaired_then_every_complete_frame_leaves() -> None:
    buffer = video()
    assert released(buffer, rtp(100, 3000, b"a")) == []
    # 101 is lost; the marker packet and two one-packet frames arrive behind the hole.
    assert released(buffer, rtp(102, 3000, b"c", marker=True)) == []
    assert released(buffer, rtp(103, 6000, b"d", marker=True)) == []
    assert released(buffer, rtp(104, 9000, b"e", marker=True)) == []
    # The retransmission completes all three at once (aiortc would give one per packet).
    assert released(buffer, rtp(101, 3000, b"b")) == [
        (3000, b"abc"),
        (6000, b"d"),
        (9000, b"e"),
    ]
    assert released(buffer, rtp(105, 12000, b"f", marker=True)) == [(12000, b"f")]


@pytest.mark.timeout(5)
def test_reordered_packets_and_a_sender_without_marker_bits() -> None:
    buffer = video()
    assert released(buffer, rtp(1, 3000, b"a")) == []
    assert released(buffer, rtp(3, 3000, b"c", marker=True)) == []
    assert released(buffer, rtp(2, 3000, b"b")) == [(3000, b"abc")]
    # No marker at all: the next timestamp ends the frame, as aiortc's rule.
    assert released(buffer, rtp(4, 6000, b"d")) == []
    assert released(buffer, rtp(5, 6000, b"e")) == []
    assert released(buffer, rtp(6, 9000, b"f")) == [(6000, b"de")]
    # A late duplicate of a released packet is ignored (aiortc's misorder rule).
    assert released(buffer, rtp(2, 3000, b"b")) == []


@pytest.mark.timeout(5)
def test_padding_only_packets_are_dropped_not_released_as_empty_frames() -> None:
    buffer = video()
    assert released(buffer, rtp(1, 3000, b"a", marker=True)) == [(3000, b"a")]
    # Padding after the frame (same timestamp, no payload), then the next frame.
    assert released(buffer, rtp(2, 3000, b"")) == []
    assert released(buffer, rtp(3, 3000, b"")) == []
    assert released(buffer, rtp(4, 6000, b"x", marker=True)) == [(6000, b"x")]


@pytest.mark.timeout(5)
def test_audio_packets_leave_one_by_one_without_prefetch() -> None:
    mine, stock = ReleasingJitterBuffer(16, is_video=False), JitterBuffer(16, prefetch=4)
    assert released(mine, rtp(50, 960, b"o1")) == [(960, b"o1")]
    assert released(stock, rtp(50, 960, b"o1")) == []  # aiortc holds four frames (80 ms)
    assert released(mine, rtp(52, 2880, b"o3")) == []  # 51 is late
    assert released(mine, rtp(51, 1920, b"o2")) == [(1920, b"o2"), (2880, b"o3")]


@pytest.mark.timeout(5)
def test_frames_not_collected_are_forgotten_at_the_next_packet() -> None:
    buffer = video()
    assert released(buffer, rtp(1, 3000, b"a")) == []
    buffer.add(rtp(3, 6000, b"c", marker=True))
    # The receiver drops a frame (its worker not started yet): nothing is collected.
    buffer.add(rtp(2, 3000, b"b", marker=True))
    assert [(f.timestamp, f.data) for f in buffer.ready] == [(6000, b"c")]
    assert released(buffer, rtp(4, 9000, b"d", marker=True)) == [(9000, b"d")]
    # The overflow rule (and its PLI) is aiortc's.
    pli, _ = buffer.add(rtp(4 + 600, 99000, b"z"))
    assert pli
