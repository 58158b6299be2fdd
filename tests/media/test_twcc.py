"""Transport-cc feedback (media/twcc.py) read back with a parser written from the draft."""

from __future__ import annotations

import struct
from types import SimpleNamespace

from aiortc.rtp import RtpPacket

from media.internals.transport_cc import TransportCcSender
from media.twcc import MAX_STATUSES, TransportFeedback


def parse(packet: bytes) -> dict[str, object]:
    """draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1, as a receiver reads it."""
    first, pt, length = struct.unpack("!BBH", packet[:4])
    assert first >> 6 == 2 and first & 0x1F == 15 and pt == 205
    assert (length + 1) * 4 == len(packet)
    end = len(packet) - (packet[-1] if first & 0x20 else 0)
    sender, media, base, count, ref_count = struct.unpack("!IIHHI", packet[4:20])
    pos, statuses = 20, []
    while len(statuses) < count:
        (chunk,) = struct.unpack("!H", packet[pos : pos + 2])
        pos += 2
        if chunk >> 15 == 0:  # run length
            statuses += [(chunk >> 13) & 3] * (chunk & 0x1FFF)
        elif (chunk >> 14) & 1:  # two-bit vector
            statuses += [(chunk >> (12 - 2 * i)) & 3 for i in range(7)]
        else:
            statuses += [(chunk >> (13 - i)) & 1 for i in range(14)]
    statuses = statuses[:count]
    reference_us = (ref_count >> 8) * 64_000
    arrivals: dict[int, int] = {}
    t = reference_us
    for i, status in enumerate(statuses):
        if status == 1:
            t += packet[pos] * 250
            pos += 1
        elif status == 2:
            t += struct.unpack("!h", packet[pos : pos + 2])[0] * 250
            pos += 2
        else:
            continue
        arrivals[(base + i) & 0xFFFF] = t
    assert pos <= end
    return {"sender": sender, "media": media, "count": ref_count & 0xFF, "arrivals": arrivals}


def test_every_packet_is_reported_with_its_arrival_to_250_us_and_gaps_as_lost() -> None:
    fb = TransportFeedback(sender_ssrc=1234, media_ssrc=99)
    arrivals = {10: 1_000_000, 11: 1_001_000, 13: 1_030_250, 14: 1_130_000, 15: 1_129_000}
    for seq, at in arrivals.items():
        fb.record(seq, at)
    (packet,) = fb.build()
    read = parse(packet)
    assert read["sender"] == 1234 and read["media"] == 99 and read["count"] == 0
    # 12 is missing (reported not received); 14 is 100 ms after 13 (a large delta) and 15
    # arrived before 14 (a negative delta): all exact to the 250 µs tick.
    assert read["arrivals"] == arrivals
    assert (fb.received, fb.lost) == (5, 1)
    assert fb.build() == []


def test_sequence_numbers_wrap_and_late_packets_are_not_reported_twice() -> None:
    fb = TransportFeedback(sender_ssrc=1)
    fb.record(65534, 5_000_000)
    fb.record(65535, 5_000_500)
    fb.record(0, 5_001_000)
    first = parse(fb.build()[0])
    assert first["arrivals"] == {65534: 5_000_000, 65535: 5_000_500, 0: 5_001_000}
    fb.record(65535, 5_002_000)  # a duplicate of a reported one: left out
    fb.record(2, 5_003_000)
    second = parse(fb.build()[0])
    assert second["count"] == 1 and second["arrivals"] == {2: 5_003_000}
    assert fb.lost == 1  # 1 never came


def test_a_long_burst_is_split_over_several_packets() -> None:
    fb = TransportFeedback(sender_ssrc=1)
    total = MAX_STATUSES + 500
    for seq in range(total):
        fb.record(seq, 1_000_000 + seq * 100)
    packets = fb.build()
    assert len(packets) == 2
    got: dict[int, int] = {}
    for p in packets:
        got.update(parse(p)["arrivals"])  # type: ignore[arg-type]
    assert (
        len(got) == total and got[total - 1] == round((1_000_000 + (total - 1) * 100) / 250) * 250
    )


async def test_a_packet_is_reported_as_arriving_when_its_datagram_left_the_socket() -> None:
    """Not when the loop got round to routing it (after forwarding the packets before it)."""
    now = [1.0]
    sender = TransportCcSender(clock=lambda: now[0])
    receiver = SimpleNamespace(_RTCRtpReceiver__rtcp_ssrc=4321)
    packet = RtpPacket(payload_type=96, sequence_number=7, ssrc=0xABCDEF01)
    packet.extensions.transport_sequence_number = 300
    sender.stamp(packet.serialize() + b"srtp-tag")  # the header is clear in SRTP
    sender.stamp(b"\x16\xfe\xfd" + bytes(20))  # DTLS: not RTP
    now[0] = 1.040  # 40 ms later: routed
    sender.record(receiver, packet)  # type: ignore[arg-type]
    unstamped = RtpPacket(payload_type=96, sequence_number=8, ssrc=0xABCDEF01)
    unstamped.extensions.transport_sequence_number = 301
    sender.record(receiver, unstamped)  # type: ignore[arg-type]
    try:
        assert sender._feedback is not None
        read = parse(sender._feedback.build()[0])
        assert read["sender"] == 4321
        assert read["arrivals"] == {300: 1_000_000, 301: 1_040_000}
    finally:
        sender.close()
