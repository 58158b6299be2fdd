"""SharedPayloadSender's own RTP loop: the bytes on the wire, NACK/RTX and sender reports.

The loop replaces aiortc's ``_run_rtp`` (media/internals/egress.py). These tests hold it to
aiortc's behaviour: every packet byte-identical to what ``RtpPacket.serialize`` would send,
retransmissions identical to ``wrap_rtx``, SRTP that libsrtp's receiving side accepts, and
sender report counters that match what was sent. If one fails after an aiortc, aioice or
pylibsrtp upgrade, read the new source before touching anything else.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aioice.ice import StunProtocol
from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_RTPFB_NACK,
    HeaderExtensionsMap,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    wrap_rtx,
)
from pylibsrtp import Policy, Session

from media import MediaRouter
from media.internals import SharedPayloadSender, sendmmsg, srtp_send
from media.internals.egress import _Egress
from media.internals.srtp_send import _DatagramSink
from signaling import PublishSession, SubscribeSession
from tests.media.peers import CounterVideoTrack, Publisher, Subscriber, wait_for

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)


def parameters(
    extensions: list[tuple[int, str]], mid: str | None = "0", rtx: bool = True
) -> RTCRtpSendParameters:
    return RTCRtpSendParameters(
        codecs=[VP8, RTX] if rtx else [VP8],
        headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in extensions],
        muxId=mid,  # type: ignore[arg-type]
    )


def aiortc_packet(
    params: RTCRtpSendParameters,
    *,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: int,
    abs_send_time: int,
    audio_level: int | None = None,
) -> RtpPacket:
    """The packet aiortc's RTCRtpSender._run_rtp would build (same fields, same order)."""
    payload_type = params.codecs[0].payloadType
    assert payload_type is not None
    packet = RtpPacket(
        payload_type=payload_type,
        sequence_number=sequence_number,
        timestamp=timestamp,
    )
    packet.ssrc = ssrc
    packet.payload = payload
    packet.marker = marker
    packet.extensions.abs_send_time = abs_send_time
    packet.extensions.mid = params.muxId
    if audio_level is not None:
        packet.extensions.audio_level = (False, -audio_level)
    return packet


def extension_map(params: RTCRtpSendParameters) -> HeaderExtensionsMap:
    ext_map = HeaderExtensionsMap()
    ext_map.configure(params)
    return ext_map


EXTENSION_CASES = [
    pytest.param([(1, MID), (3, ABS_SEND_TIME)], "0", id="mid+abs-send-time"),
    pytest.param([(3, ABS_SEND_TIME), (1, MID)], "12", id="ids-in-other-order"),
    pytest.param([(1, MID)], "0", id="mid-only"),
    pytest.param([(3, ABS_SEND_TIME)], "0", id="abs-send-time-only"),
    pytest.param([], "0", id="no-extensions"),
    pytest.param([(1, MID), (3, ABS_SEND_TIME)], None, id="no-mid"),
    pytest.param([(15, MID), (3, ABS_SEND_TIME)], "0", id="two-byte-header"),
    pytest.param([(1, MID), (3, ABS_SEND_TIME)], "m" * 17, id="long-mid-two-byte"),
]


# --------------------------------------------------------------------------------------------
# The send path on real UDP sockets and a real libsrtp session
# --------------------------------------------------------------------------------------------


class Wire:
    """A sink's far end: a UDP socket on 127.0.0.1 and the SRTP session that decrypts."""

    def __init__(self) -> None:
        key = os.urandom(30)
        tx = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)
        tx.allow_repeat_tx = True
        rx = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND)
        self.tx, self.rx = Session(tx), Session(rx)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2)

    def receive(self, count: int) -> list[bytes]:
        return [self.rx.unprotect(self.sock.recv(65536)) for _ in range(count)]

    def nothing_more(self) -> bool:
        self.sock.settimeout(0.05)
        try:
            self.sock.recv(65536)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(2)
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def wire() -> Iterator[Wire]:
    w = Wire()
    yield w
    w.close()


class NoConnection:
    """What a StunProtocol reports to (an aioice Connection), here nothing."""

    def protocol_lost(self, protocol: object) -> None:
        pass


async def udp_sink(
    wire: Wire, batched: bool = False, transport: Any = None
) -> tuple[_DatagramSink, Any]:
    """A _DatagramSink wired as resolve() wires it, on an aioice StunProtocol's transport
    (a new one unless given); ``batched``: its packets go through the loop's sendmmsg batch."""
    if transport is None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: StunProtocol(NoConnection()),  # type: ignore[arg-type]
            local_addr=("127.0.0.1", 0),
        )
    sink = _DatagramSink()
    sink.direct = True
    sink.srtp = wire.tx._srtp[0]
    sink.transport = transport
    sink.addr = wire.sock.getsockname()
    if batched:
        assert sendmmsg.AVAILABLE, "sendmmsg through cffi on this machine"
        sink._batch_on(transport, sink.addr)
        assert sink.fd is not None
    return sink, transport


@pytest.mark.timeout(10)
@pytest.mark.parametrize("batched", [False, True], ids=["sendto", "sendmmsg"])
@pytest.mark.parametrize(("extensions", "mid"), EXTENSION_CASES)
async def test_sent_packets_are_aiortcs_bytes(
    wire: Wire, extensions: list[tuple[int, str]], mid: str | None, batched: bool
) -> None:
    params = parameters(extensions, mid)
    egress = _Egress(params)
    ext_map = extension_map(params)
    sink, transport = await udp_sink(wire, batched)
    batch = sendmmsg.batch_for(asyncio.get_running_loop())
    try:
        # VP8-like (equal sizes, short last), H.264-like (uneven), one packet, a keyframe
        # of 71 packets, and a sequence number wrap.
        frames = [
            [os.urandom(1300), os.urandom(1300), os.urandom(777)],
            [os.urandom(20), os.urandom(1300), os.urandom(1300), os.urandom(900), b"\x01"],
            [os.urandom(300)],
            [os.urandom(1300) for _ in range(70)] + [os.urandom(5)],
        ]
        sequence_number, ssrc = 65530, 0x11223344
        for n, payloads in enumerate(frames):
            timestamp = (0xFFFFF000 + 3000 * n) & 0xFFFFFFFF  # wraps too
            abs_send_time = 0xABCDEF - n
            first_byte, tail = egress.frame_header(timestamp, ssrc, abs_send_time, None)
            calls = batch.calls
            sent = sink.send(first_byte, 96, sequence_number, tail, payloads, egress.history)
            if batched:
                # Nothing left yet: the frame waits in the arena for this iteration's flush.
                assert wire.nothing_more()
            received = await asyncio.to_thread(wire.receive, len(payloads))
            # One system call for the whole frame (71 packets for the keyframe).
            assert batch.calls - calls == (1 if batched else 0)
            expected = [
                aiortc_packet(
                    params,
                    sequence_number=(sequence_number + i) & 0xFFFF,
                    timestamp=timestamp,
                    ssrc=ssrc,
                    payload=payload,
                    marker=int(i == len(payloads) - 1),
                    abs_send_time=abs_send_time,
                ).serialize(ext_map)
                for i, payload in enumerate(payloads)
            ]
            assert received == expected
            assert sent == sum(len(p) + 10 for p in expected)  # AES-CM-SHA1-80: 10-byte tag
            assert await asyncio.to_thread(wire.nothing_more)
            sequence_number = (sequence_number + len(payloads)) & 0xFFFF
    finally:
        transport.close()


@pytest.mark.timeout(5)
async def test_audio_level_extension_as_aiortc(wire: Wire) -> None:
    params = parameters([(1, MID), (3, ABS_SEND_TIME), (5, AUDIO_LEVEL)])
    egress = _Egress(params)
    sink, transport = await udp_sink(wire)
    try:
        # RTCEncodedFrame.audio_level set (aiortc computes it from decoded audio only).
        first_byte, tail = egress.frame_header(960, 7, 0x123456, 42)
        sink.send(first_byte, 96, 100, tail, [b"opus"], egress.history)
        (received,) = await asyncio.to_thread(wire.receive, 1)
        packet = aiortc_packet(
            params,
            sequence_number=100,
            timestamp=960,
            ssrc=7,
            payload=b"opus",
            marker=1,
            abs_send_time=0x123456,
            audio_level=42,
        )
        assert received == packet.serialize(extension_map(params))
    finally:
        transport.close()


@pytest.mark.timeout(10)
async def test_one_sendmmsg_carries_every_viewers_frame() -> None:
    """Two viewers on one socket (the node's shared port): both frames leave in one call,
    each viewer's packets intact and in order."""
    wires = [Wire(), Wire()]
    egress = _Egress(parameters([(1, MID), (3, ABS_SEND_TIME)]))
    sink, transport = await udp_sink(wires[0], batched=True)
    other, _ = await udp_sink(wires[1], batched=True, transport=transport)
    batch = sendmmsg.batch_for(asyncio.get_running_loop())
    try:
        frames = [[os.urandom(1200), os.urandom(1200), os.urandom(99)], [os.urandom(60)]]
        first_byte, tail = egress.frame_header(3000, 0x1234, 0x10, None)
        calls = batch.calls
        for s, payloads in zip((sink, other), frames, strict=True):
            s.send(first_byte, 96, 500, tail, payloads, egress.history)
        assert batch.count == 4
        for w, payloads in zip(wires, frames, strict=True):
            received = await asyncio.to_thread(w.receive, len(payloads))
            assert [RtpPacket.parse(r).payload for r in received] == payloads
            assert [RtpPacket.parse(r).sequence_number for r in received] == list(
                range(500, 500 + len(payloads))
            )
        assert batch.calls - calls == 1
    finally:
        transport.close()
        for w in wires:
            w.close()


class QueuingTransport:
    """A datagram transport that still holds queued datagrams: sendto only records."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sent: list[tuple[bytes, Any]] = []
        self.held = 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.real.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.held

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent.append((bytes(data), addr))
        self.real.sendto(data, addr)


class RefusingLib:
    """libc's sendmmsg answering EAGAIN (the socket's send buffer full)."""

    def __init__(self) -> None:
        self.calls = 0

    def sendmmsg(self, fd: int, msgs: Any, count: int, flags: int) -> int:
        self.calls += 1
        sendmmsg._ffi.errno = errno.EAGAIN
        return -1


@pytest.mark.timeout(10)
@pytest.mark.parametrize("why", ["queued-in-transport", "eagain"])
async def test_batch_falls_back_to_sendto_in_order(
    wire: Wire, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What sendmmsg cannot send now goes through the transport's own sendto, in order: when
    the transport still holds datagrams (uvloop's queue), or when the kernel says EAGAIN."""
    egress = _Egress(parameters([(1, MID)]))
    real, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: StunProtocol(NoConnection()),  # type: ignore[arg-type]
        local_addr=("127.0.0.1", 0),
    )
    queuing = QueuingTransport(real)
    if why == "eagain":
        queuing.held = 0
        refusing = RefusingLib()
        monkeypatch.setattr(sendmmsg, "_lib", refusing)
    sink, _ = await udp_sink(wire, batched=True, transport=queuing)
    try:
        payloads = [os.urandom(700) for _ in range(5)]
        first_byte, tail = egress.frame_header(90, 0x42, 0, None)
        sink.send(first_byte, 96, 7, tail, payloads, egress.history)
        received = await asyncio.to_thread(wire.receive, len(payloads))
        assert [RtpPacket.parse(r).payload for r in received] == payloads
        # Every packet went through sendto, in order (the RTP header is in the clear).
        assert [int.from_bytes(d[2:4], "big") for d, _ in queuing.sent] == list(range(7, 12))
        assert {a for _, a in queuing.sent} == {wire.sock.getsockname()}
        if why == "eagain":
            assert refusing.calls == 1
    finally:
        real.close()


@pytest.mark.timeout(5)
async def test_batch_flushes_a_full_arena_at_once(wire: Wire) -> None:
    """More packets than the arena holds in one iteration: the full arena is sent at once and
    the rest with the iteration's flush, all in order."""
    egress = _Egress(parameters([(1, MID)]))
    sink, transport = await udp_sink(wire, batched=True)
    wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    try:
        count = sendmmsg.SLOTS + 10
        payloads = [i.to_bytes(2, "big") + bytes(100) for i in range(count)]
        first_byte, tail = egress.frame_header(90, 0x42, 0, None)
        sink.send(first_byte, 96, 0, tail, payloads, egress.history)
        received = await asyncio.to_thread(wire.receive, count)
        assert [RtpPacket.parse(r).payload for r in received] == payloads
    finally:
        transport.close()


# --------------------------------------------------------------------------------------------
# NACK: retransmissions from the history, as aiortc's _retransmit would send them
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(5)
@pytest.mark.parametrize("rtx", [True, False], ids=["rtx", "no-rtx"])
@pytest.mark.parametrize(("extensions", "mid"), EXTENSION_CASES[:3])
async def test_retransmission_is_aiortcs_wrap_rtx(
    wire: Wire, rtx: bool, extensions: list[tuple[int, str]], mid: str | None
) -> None:
    params = parameters(extensions, mid, rtx=rtx)
    egress = _Egress(params)
    ext_map = extension_map(params)
    sink, transport = await udp_sink(wire)
    try:
        payloads = [os.urandom(1300), os.urandom(400)]
        first_byte, tail = egress.frame_header(90000, 0xCAFE, 0x010203, None)
        sink.send(first_byte, 96, 65535, tail, payloads, egress.history)
        egress.rtx_sequence_number = 500
        rtx_ssrc = 0xBEEF
        for sequence_number, payload, marker in ((65535, payloads[0], 0), (0, payloads[1], 1)):
            packet = aiortc_packet(
                params,
                sequence_number=sequence_number,
                timestamp=90000,
                ssrc=0xCAFE,
                payload=payload,
                marker=marker,
                abs_send_time=0x010203,
            )
            if rtx:
                rtx_sequence_number = egress.rtx_sequence_number
                packet = wrap_rtx(packet, 97, rtx_sequence_number, rtx_ssrc)
            assert egress.retransmission(sequence_number, rtx_ssrc) == packet.serialize(ext_map)
        assert egress.retransmission(1, rtx_ssrc) is None  # never sent
        assert egress.retransmission(65535 - 128, rtx_ssrc) is None  # not in the history
        assert await asyncio.to_thread(wire.receive, 2)
    finally:
        transport.close()


# --------------------------------------------------------------------------------------------
# End to end: real peers, the real loop
# --------------------------------------------------------------------------------------------


async def forwarding_pair(
    router: MediaRouter,
) -> tuple[Publisher, Subscriber, str, SharedPayloadSender]:
    publisher = Publisher(PublishSession("teacher", router))
    publisher.pc.addTrack(CounterVideoTrack())
    answer = await publisher.negotiate()
    track_id = answer.published[0].track_id
    subscriber = Subscriber(SubscribeSession("s1", router))
    await subscriber.subscribe([track_id])
    sender = subscriber.session.pc.getTransceivers()[0].sender
    assert isinstance(sender, SharedPayloadSender)
    return publisher, subscriber, track_id, sender


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("direct", "batched"),
    [(True, True), (True, False), (False, False)],
    ids=["sendmmsg", "direct-datagrams", "aiortc-send-rtp"],
)
async def test_every_send_mode_decodes(
    monkeypatch: pytest.MonkeyPatch, direct: bool, batched: bool
) -> None:
    monkeypatch.setattr(srtp_send, "DIRECT_DATAGRAMS", direct)
    monkeypatch.setattr(srtp_send, "BATCH_DATAGRAMS", batched)
    batch = sendmmsg.batch_for(asyncio.get_running_loop())
    calls, packets = batch.calls, batch.packets
    # Frames sent in the fan-out's own call (SharedPayloadSender._send_now), not by the loop.
    sent_now: list[bool] = []
    send_now = SharedPayloadSender._send_now

    def counting(self: SharedPayloadSender, track: Any, frame: Any) -> bool:
        sent = send_now(self, track, frame)
        sent_now.append(sent)
        return sent

    monkeypatch.setattr(SharedPayloadSender, "_send_now", counting)
    router = MediaRouter()
    publisher, subscriber, track_id, sender = await forwarding_pair(router)
    try:
        received = subscriber.by_track(track_id)
        await wait_for(lambda: received.frames >= 20, 8, "20 decoded frames")
        # The frames went the way asked: through the loop's sendmmsg batch or not at all.
        if batched:
            assert batch.calls > calls and batch.packets - packets >= 20
        else:
            assert batch.calls == calls
        # On a direct pair most frames leave from the fan-out (the loop takes those that
        # arrive while it is busy); through aiortc's send path, none.
        if direct:
            assert sum(sent_now) >= 10, sent_now.count(True)
        else:
            assert not any(sent_now)
        assert batch.dropped == 0
        tail = received.counters[-10:]
        assert all(b > a for a, b in itertools.pairwise(tail)), tail
        transport_stats = next(
            s for s in (await sender.getStats()).values() if s.type == "transport"
        )
        outbound = next(s for s in (await sender.getStats()).values() if s.type == "outbound-rtp")
        assert transport_stats.packetsSent >= outbound.packetsSent > 0
        assert transport_stats.bytesSent > outbound.bytesSent > 0
    finally:
        await subscriber.close()
        await publisher.close()
        router.close()


@pytest.mark.timeout(20)
async def test_nack_is_answered_with_rtx_from_the_history() -> None:
    router = MediaRouter()
    publisher, subscriber, _, sender = await forwarding_pair(router)
    try:
        receiver = subscriber.pc.getTransceivers()[0].receiver
        seen: list[RtpPacket] = []
        handle = receiver._handle_rtp_packet

        async def record(packet: RtpPacket, arrival_time_ms: int) -> None:
            seen.append(packet)
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = record  # type: ignore[method-assign]
        await wait_for(lambda: len(seen) >= 10, 8, "media packets at the subscriber")
        media = [p for p in seen if p.ssrc == sender._ssrc]
        lost = media[-2]
        nack = RtcpRtpfbPacket(
            fmt=RTCP_RTPFB_NACK, ssrc=1234, media_ssrc=sender._ssrc, lost=[lost.sequence_number]
        )
        before = len(seen)
        await receiver._send_rtcp(nack)
        await wait_for(
            lambda: any(p.ssrc == sender._rtx_ssrc for p in seen[before:]), 3, "an RTX packet"
        )
        rtx = next(p for p in seen[before:] if p.ssrc == sender._rtx_ssrc)
        assert rtx.payload_type != lost.payload_type
        assert rtx.payload[:2] == lost.sequence_number.to_bytes(2, "big")
        assert rtx.payload[2:] == lost.payload
        assert rtx.timestamp == lost.timestamp and rtx.marker == lost.marker
        assert rtx.extensions.mid == lost.extensions.mid
    finally:
        await subscriber.close()
        await publisher.close()
        router.close()


def test_a_filler_joins_the_first_frame_with_data_the_viewer_holds_after_it() -> None:
    """The filler's timestamp: the next packet with a payload that the same NACK does not ask
    for (a padding has none; a packet asked for with it is missing too), so that aiortc's
    jitter buffer never makes a frame of fillers and paddings alone."""
    egress = _Egress(parameters([], None, rtx=True))

    def sent(sequence_number: int, timestamp: int, payload: bytes) -> None:
        _, tail = egress.frame_header(timestamp, 0xCAFE, 0, None)
        egress.history[sequence_number % len(egress.history)] = (sequence_number, 96, tail, payload)

    sent(65534, 1000, b"a")  # frame 1000
    sent(65535, 2000, b"b")  # frame 2000, two packets
    sent(0, 2000, b"c")
    sent(1, 2000, b"")  # a keep-alive padding
    sent(2, 5000, b"d")  # the next frame
    assert egress.filler_timestamp(65535, {65535, 0}) == 5000
    assert egress.filler_timestamp(65535, {65535}) == 2000
    assert egress.filler_timestamp(1, {1}) == 5000
    assert egress.filler_timestamp(2, {2}) is None  # nothing sent after it yet
    filler = egress.retransmission(65535, 0xBEEF, filler=5000)
    assert filler is not None
    packet = RtpPacket.parse(filler)
    assert packet.ssrc == 0xBEEF and packet.timestamp == 5000 and not packet.marker
    assert packet.payload == (65535).to_bytes(2, "big")  # the original sequence number alone


@pytest.mark.timeout(20)
async def test_a_packet_from_before_a_switch_is_answered_with_a_filler() -> None:
    """A packet of the video before a switch down (or a pause) is never sent again (the link
    is queued), but its NACK gets its header alone: aiortc's jitter buffer would hold every
    frame after the hole, the new layer's too, until 512 packets had come (a 15 fps video
    frozen for 17 s); with the filler the viewer's video goes on at once."""
    router = MediaRouter()
    publisher, subscriber, track_id, sender = await forwarding_pair(router)
    loop = asyncio.get_running_loop()
    try:
        receiver = subscriber.pc.getTransceivers()[0].receiver
        seen: list[RtpPacket] = []
        dropped: list[RtpPacket] = []
        handle = receiver._handle_rtp_packet

        async def record(packet: RtpPacket, arrival_time_ms: int) -> None:
            seen.append(packet)
            if packet.ssrc == sender._ssrc and len(seen) > 20 and not dropped:
                # Lost on the way, and the track switched right after it was sent.
                dropped.append(packet)
                sender.track.switched_down_at = loop.time()  # type: ignore[attr-defined]
                return
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = record  # type: ignore[method-assign]
        received = subscriber.by_track(track_id)
        await wait_for(lambda: bool(dropped), 8, "a packet dropped")
        decoded = len(received.times)
        await wait_for(
            lambda: any(p.ssrc == sender._rtx_ssrc for p in seen), 3, "the viewer's NACK answered"
        )
        filler = next(p for p in seen if p.ssrc == sender._rtx_ssrc)
        assert filler.payload == dropped[0].sequence_number.to_bytes(2, "big")  # OSN alone
        # Joined to the frame after it, which the viewer holds: a frame of nothing would reach
        # aiortc's decoder as an empty packet, FFmpeg's end of stream.
        after = next(
            p
            for p in seen
            if p.ssrc == sender._ssrc
            and p.sequence_number == (dropped[0].sequence_number + 1) & 0xFFFF
        )
        assert filler.timestamp == after.timestamp and not filler.marker
        assert sender.fillers == 1 and sender.retransmissions == 0
        # The video plays on (30 fps): 15 frames after the hole within a second or so.
        await wait_for(lambda: len(received.times) >= decoded + 15, 3, "frames after the hole")
    finally:
        await subscriber.close()
        await publisher.close()
        router.close()


@pytest.mark.timeout(20)
async def test_sender_reports_count_what_was_sent() -> None:
    router = MediaRouter()
    publisher, subscriber, track_id, sender = await forwarding_pair(router)
    try:
        stats = router.get(track_id).stats.subscribers["s1"]
        reports: list[tuple[RtcpSrPacket, int, int]] = []
        send_rtcp = sender._send_rtcp

        async def record(packets: list[Any]) -> None:
            for packet in packets:
                if isinstance(packet, RtcpSrPacket):
                    # The forwarder counts a frame when the loop takes it; the loop sends it
                    # before its next await, so here both must agree exactly.
                    reports.append((packet, stats.packets_forwarded, stats.bytes_forwarded))
            await send_rtcp(packets)

        sender._send_rtcp = record  # type: ignore[method-assign]
        await wait_for(
            lambda: any(r[0].sender_info.packet_count > 0 for r in reports), 6, "a sender report"
        )
        for report, packets, octets in reports:
            info = report.sender_info
            assert report.ssrc == sender._ssrc
            assert (info.packet_count, info.octet_count) == (packets, octets)
        info = reports[-1][0].sender_info
        # NTP time of the last frame sent, RTP timestamp of that frame.
        now = srtp_send._ntp_now()
        assert 0 <= (now - info.ntp_timestamp) / 2**32 < 2
        # The subscriber's view of the same reports.
        receiver = subscriber.pc.getReceivers()[0]
        for _ in range(150):
            remote = [
                s for s in (await receiver.getStats()).values() if s.type == "remote-outbound-rtp"
            ]
            if remote and remote[0].packetsSent > 0:
                break
            await asyncio.sleep(0.02)
        assert remote, "no sender report reached the subscriber"
        assert (remote[0].packetsSent, remote[0].bytesSent) in {
            (r.sender_info.packet_count, r.sender_info.octet_count) for r, _, _ in reports
        }
        outbound = next(s for s in (await sender.getStats()).values() if s.type == "outbound-rtp")
        assert outbound.packetsSent == stats.packets_forwarded
        assert outbound.bytesSent == stats.bytes_forwarded
    finally:
        await subscriber.close()
        await publisher.close()
        router.close()


class QueuedSelector:
    """A layer selection that sees a queue on its viewer's link (media.layers.LayerSelector's
    ``queue_delay``)."""

    def queue_delay(self) -> float:
        return 0.4


@pytest.mark.timeout(20)
async def test_a_congested_layered_viewer_gets_sender_reports_four_times_a_second() -> None:
    """A layered video whose link shows a queue gets a sender report after a frame at most
    every 0.25 s beside aiortc's own (every 0.5-1.5 s), each with the last frame's
    timestamps, and receiver reports answering them give RTT samples; a healthy link gets
    aiortc's alone."""
    router = MediaRouter()
    publisher, subscriber, _track_id, sender = await forwarding_pair(router)
    loop = asyncio.get_running_loop()
    try:
        times: list[float] = []
        send_rtcp = sender._send_rtcp

        async def record(packets: list[Any]) -> None:
            if any(isinstance(p, RtcpSrPacket) for p in packets):
                times.append(loop.time())
            await send_rtcp(packets)

        sender._send_rtcp = record  # type: ignore[method-assign]
        samples: list[float] = []
        rtt_sample = sender._rtt_sample

        def sampled(reports: list[Any]) -> float | None:
            rtt = rtt_sample(reports)
            if rtt is not None:
                samples.append(rtt)
            return rtt

        sender._rtt_sample = sampled  # type: ignore[method-assign]
        await wait_for(lambda: len(samples) >= 1, 6, "an RTT sample")
        start = loop.time()
        await asyncio.sleep(3)
        healthy = [t for t in times if t >= start]
        assert len(healthy) <= 7  # aiortc's pace: 2-6 in 3 s
        sender.track.selector = QueuedSelector()  # type: ignore[union-attr]
        await wait_for(lambda: sender._fast_reports, 4, "the queue seen at a receiver report")
        start, count = loop.time(), len(samples)
        await asyncio.sleep(3)
        fast = [t for t in times if t >= start]
        assert len(fast) >= 10, fast  # 12 at 4 a second, and aiortc's
        gaps = [b - a for a, b in itertools.pairwise(fast)]
        assert sorted(gaps)[len(gaps) // 2] <= 0.3, gaps
        # aiortc's viewer reports about once a second, each answering the newest report:
        # every sample is a loopback round trip, none a report's age.
        assert len(samples) > count and all(0 <= rtt < 0.1 for rtt in samples), samples
    finally:
        await subscriber.close()
        await publisher.close()
        router.close()


def test_stock_loop_is_not_running_for_forwarding_senders() -> None:
    # The override is what send() starts: the class swap replaces aiortc's _run_rtp.
    assert SharedPayloadSender._run_rtp is not RTCRtpSender._run_rtp
    assert SharedPayloadSender._retransmit is not RTCRtpSender._retransmit
