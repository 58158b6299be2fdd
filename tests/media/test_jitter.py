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
def test_audio_behind_a_lost_packet_leaves_after_60_ms_not_after_16_packets() -> None:
    mine, stock = ReleasingJitterBuffer(16, is_video=False), JitterBuffer(16, prefetch=4)
    assert released(mine, rtp(1, 960, b"o1")) == [(960, b"o1")]
    for buffer in (mine, stock):
        buffer.add(rtp(2, 1920, b"o2"))  # the last one both have released or hold
    # 3 is lost (audio is never retransmitted): 4, 5, 6 wait for a reordered 3, 60 ms.
    assert released(mine, rtp(4, 3840, b"o4")) == []
    assert released(mine, rtp(5, 4800, b"o5")) == []
    assert released(mine, rtp(6, 5760, b"o6")) == []
    assert released(mine, rtp(7, 6720, b"o7")) == [
        (3840, b"o4"), (4800, b"o5"), (5760, b"o6"), (6720, b"o7"),
    ]  # fmt: skip
    assert released(mine, rtp(3, 2880, b"o3")) == []  # too late: dropped
    assert released(mine, rtp(8, 7680, b"o8")) == [(7680, b"o8")]
    # aiortc holds everything behind the hole until its 16 slots overflow (320 ms).
    held = [released(stock, rtp(seq, 960 * seq, b"x")) for seq in range(4, 18)]
    assert held == [[]] * 14


@pytest.mark.timeout(5)
def test_a_video_hole_nothing_repairs_is_given_up_after_half_a_second_of_media() -> None:
    buffer = video()
    stock = JitterBuffer(capacity=512, is_video=True)
    # A one-packet-per-frame layer at 15 fps (6000 ticks a frame): frame 2's packet is lost
    # with its retransmission, and the loss stops (aiortc's receiver NACKs it no more).
    assert released(buffer, rtp(1, 6000, b"f1", marker=True)) == [(6000, b"f1")]
    stock.add(rtp(1, 6000, b"f1", marker=True))
    seq, frames = 3, []
    while seq < 11:  # 8 frames behind the hole, the last 0.47 s past the first
        frames += released(buffer, rtp(seq, 6000 * seq, b"f%d" % seq, marker=True))
        assert stock.add(rtp(seq, 6000 * seq, b"x", marker=True)) == (False, None)
        seq += 1
    assert frames == []  # still waiting: a retransmission may come
    # The 9th is 0.5 s past the first one held: the hole is given up with the frame at the
    # head (the buffer cannot tell where the lost packet belonged), every frame behind it
    # leaves, and the count of holes given up tells the ingest (the forwarder then asks for a
    # keyframe: no PLI flag for the receiver to send besides).
    pli, frame = buffer.add(rtp(seq, 6000 * seq, b"f11", marker=True))
    assert not pli and frame is not None
    out = [(frame.timestamp, frame.data)] + [(f.timestamp, f.data) for f in buffer.take_ready()]
    assert [ts // 6000 for ts, _ in out] == list(range(4, 12))
    assert buffer.holes_skipped == 1
    assert released(buffer, rtp(12, 72000, b"f12", marker=True)) == [(72000, b"f12")]
    # aiortc's buffer still holds them all (until 512 packets: 34 s of such a layer).
    assert stock.add(rtp(11, 66000, b"x", marker=True)) == (False, None)


@pytest.mark.timeout(5)
def test_a_given_up_frame_is_dropped_whole_and_the_next_frame_may_still_be_repaired() -> None:
    buffer = video()
    assert released(buffer, rtp(1, 3000, b"a1", marker=True)) == [(3000, b"a1")]
    # Frame B (6000): its packet 3 lost for good; frame C (9000): its first packet 5 late.
    buffer.add(rtp(2, 6000, b"b1"))
    buffer.add(rtp(4, 6000, b"b3", marker=True))
    buffer.add(rtp(6, 9000, b"c2", marker=True))
    # Frames after C arrive until B is 0.5 s old (45000 ticks): B is dropped, C still waits.
    pli, frame = buffer.add(rtp(7, 51000, b"d", marker=True))
    assert not pli and frame is None
    assert buffer.holes_skipped == 1
    # C's first packet arrives (a retransmission): C and D leave, C whole.
    assert released(buffer, rtp(5, 9000, b"c1")) == [(9000, b"c1c2"), (51000, b"d")]
    # B's retransmission coming now is not released as a fragment of a frame.
    assert released(buffer, rtp(3, 6000, b"b2")) == []


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
