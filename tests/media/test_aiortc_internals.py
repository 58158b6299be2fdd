"""The private aiortc internals media/internals/ relies on (aiortc pinned 1.16.0).

If one of these fails after an aiortc upgrade, the forwarding SFU is broken: read the new
aiortc source and update media/internals/ before touching anything else.
"""

from __future__ import annotations

import asyncio
import datetime
import fractions
import inspect
import queue
import threading

import aiortc
import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import TimestampMapper, decoder_worker
from aiortc.rtp import RtpPacket

from media import internals
from media.internals import (
    AiortcInternalsError,
    IngestQueue,
    SharedPayloadSender,
    check_internals,
    egress,
    install_ingest,
    send_pli,
    sources,
    use_shared_payloads,
)
from media.internals.checks import verify
from media.internals.jitter import ReleasingJitterBuffer

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


@pytest.mark.timeout(5)
def test_pinned_version_and_check_passes() -> None:
    assert aiortc.__version__ == internals.PINNED_AIORTC_VERSION
    check_internals()
    verify()
    # And the aiortc code the RTP loop and the send path reproduce, read from its source.
    assert sources.source_problems() == []


@pytest.mark.timeout(5)
def test_the_check_needs_no_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """An install of compiled files only: inspect.getsource fails everywhere."""

    def no_source(obj: object) -> str:
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    verify()
    assert sources.source_problems() == [
        "aiortc is installed without sources: its code was not checked"
    ]


@pytest.mark.timeout(5)
def test_the_check_names_a_changed_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run_rtp(self: RTCRtpSender, codec: object, extra: int) -> None:
        await asyncio.sleep(0)

    monkeypatch.setattr(RTCRtpSender, "_run_rtp", run_rtp)
    with pytest.raises(AiortcInternalsError, match=r"RTCRtpSender._run_rtp\(codec\) is now"):
        verify()


@pytest.mark.timeout(5)
def test_check_fails_loudly_when_a_private_name_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_send_rtcp_pli")
    with pytest.raises(AiortcInternalsError, match="_send_rtcp_pli"):
        verify()
    monkeypatch.undo()
    monkeypatch.delattr(RTCRtpSender, "_next_encoded_frame")
    with pytest.raises(AiortcInternalsError, match="_next_encoded_frame"):
        verify()


@pytest.mark.timeout(5)
def test_check_fails_when_the_jitter_buffer_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    """ReleasingJitterBuffer relies on add() calling _remove_frame() once per packet."""

    def add(self: JitterBuffer, packet: object) -> tuple[bool, None]:
        return False, None

    monkeypatch.setattr(JitterBuffer, "add", add)
    with pytest.raises(AiortcInternalsError, match=r"JitterBuffer\.add no longer uses _origin"):
        verify()
    assert any("JitterBuffer.add no longer contains" in p for p in sources.source_problems())
    monkeypatch.undo()
    monkeypatch.setattr(TimestampMapper, "map", lambda self, ts, extra=0: ts)
    with pytest.raises(AiortcInternalsError, match=r"TimestampMapper.map\(timestamp\) is now"):
        verify()


def _vp8(sequence_number: int, timestamp: int, payload: bytes = b"\x10\x00") -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=sequence_number, timestamp=timestamp)
    packet._data = payload[1:]  # type: ignore[attr-defined]  # depayloaded, as the receiver does
    return packet


def test_a_jump_of_the_skip_frees_a_viewers_jitter_buffer_from_a_hole() -> None:
    """What restart_sequence relies on in aiortc's receiver: a frame behind a hole is held
    until 512 packets have come, and a jump of SEQUENCE_SKIP past the last packet sent drops
    everything held at once, so the resumed video's frames come out."""
    buffer = JitterBuffer(capacity=egress.SEQUENCE_SKIP, is_video=True)
    buffer.add(_vp8(100, 1000))
    # 101 lost (in the queue that paused the video); 102 came.
    assert buffer.add(_vp8(102, 2000)) == (False, None)
    assert buffer.add(_vp8(103, 3000))[1] is None  # held behind the hole
    resumed = 104 + egress.SEQUENCE_SKIP  # the keyframe after the pause, past the skip
    pli, frame = buffer.add(_vp8(resumed, 9000))
    assert pli and frame is None  # it asks for the keyframe already on its way
    _, frame = buffer.add(_vp8(resumed + 1, 12000))
    assert frame is not None and frame.timestamp == 9000  # the resumed video plays
    # Without the skip, the same keyframe right after would have stayed held.
    held = JitterBuffer(capacity=egress.SEQUENCE_SKIP, is_video=True)
    for number, timestamp in ((100, 1000), (102, 2000), (103, 3000), (104, 9000), (105, 12000)):
        assert held.add(_vp8(number, timestamp))[1] is None


def test_a_frame_of_nothing_ends_aiortcs_decoder() -> None:
    """Why a filler joins a frame the viewer holds (egress.filler_timestamp): a frame made of
    fillers alone reaches aiortc's decoder as an empty packet, which FFmpeg takes for the end
    of the stream: the decoder decodes nothing after it."""
    decoder = aiortc.codecs.get_decoder(VP8)
    assert decoder.decode(JitterFrame(data=b"", timestamp=0)) == []
    with pytest.raises(av.error.EOFError):
        decoder.decode(JitterFrame(data=b"\x00" * 10, timestamp=3000))


@pytest.mark.timeout(5)
async def test_ingest_maps_the_further_frames_a_packet_completed() -> None:
    """Frames beyond the one the receiver takes get its timestamp mapping too, in order."""
    frames = ReleasingJitterBuffer(512, is_video=True)
    mapper = TimestampMapper()
    got: list[tuple[int, bytes]] = []
    ingest = IngestQueue(
        "video",
        lambda codec, p: got.append((int(p.pts or 0), bytes(p))),
        lambda: None,
        frames=frames,
        timestamps=mapper,
    )
    frames.ready += [JitterFrame(b"\x11b", 93000), JitterFrame(b"\x11c", 96000)]
    # What the receiver does with the first: map it, then put it.
    ingest.put((VP8, JitterFrame(b"\x10\x02\x00a", mapper.map(90000))))
    assert got == [(0, b"\x10\x02\x00a"), (3000, b"\x11b"), (6000, b"\x11c")]
    assert frames.ready == []


@pytest.mark.timeout(5)
async def test_ingest_tells_of_a_hole_given_up_before_the_frames_behind_it() -> None:
    frames = ReleasingJitterBuffer(512, is_video=True)
    events: list[str] = []
    ingest = IngestQueue(
        "video",
        lambda codec, p: events.append(f"frame {bytes(p)[-1:].decode()}"),
        lambda: None,
        frames=frames,
        timestamps=TimestampMapper(),
        on_gap=lambda: events.append("gap"),
    )

    def receive(packet: RtpPacket) -> None:  # what RTCRtpReceiver does with each packet
        packet._data = b"\x10\x02\x00" + packet.payload  # type: ignore[attr-defined]
        _pli, frame = frames.add(packet)
        if frame is not None:
            ingest.put((VP8, frame))

    def rtp(seq: int, timestamp: int, name: bytes) -> RtpPacket:
        return RtpPacket(sequence_number=seq, timestamp=timestamp, marker=1, payload=name)

    receive(rtp(1, 3000, b"a"))
    for seq in range(3, 12):  # 2 is lost for good: 0.5 s later the frames behind it leave
        receive(rtp(seq, 6000 * seq, bytes([ord("a") + seq - 1])))
    assert events[:2] == ["frame a", "gap"]
    assert events[2:] == [f"frame {c}" for c in "defghijk"]  # c (at the head) dropped
    receive(rtp(12, 72000, b"l"))
    assert events[-1] == "frame l" and events.count("gap") == 1


@pytest.mark.timeout(5)
async def test_private_attributes_exist_on_real_objects() -> None:
    pc = RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video")
        receiver, sender = transceiver.receiver, transceiver.sender
        assert isinstance(receiver._RTCRtpReceiver__decoder_queue, queue.Queue)  # type: ignore[attr-defined]
        assert receiver._RTCRtpReceiver__decoder_thread is None  # type: ignore[attr-defined]
        assert receiver._RTCRtpReceiver__rtx_ssrc == {}  # type: ignore[attr-defined]
        assert receiver._RTCRtpReceiver__started is False  # type: ignore[attr-defined]
        stock = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
        assert type(stock) is JitterBuffer and stock.capacity == 512
        assert stock._packets == [None] * 512 and stock._origin is None and stock._is_video
        mapper = receiver._RTCRtpReceiver__timestamp_mapper  # type: ignore[attr-defined]
        assert isinstance(mapper, TimestampMapper)
        assert isinstance(sender._stream_id, str)
        assert type(sender) is RTCRtpSender
    finally:
        await pc.close()


@pytest.mark.timeout(5)
async def test_ingest_queue_with_aiortcs_own_decoder_worker() -> None:
    """put() hands av.Packets to the callback on the loop; get() blocks; put(None) stops."""
    loop = asyncio.get_running_loop()
    packets: list[tuple[str, av.Packet]] = []
    ended = asyncio.Event()
    ingest = IngestQueue("video", lambda codec, p: packets.append((codec.name, p)), ended.set)
    track_queue: asyncio.Queue[object] = asyncio.Queue()
    worker = threading.Thread(
        target=decoder_worker, args=(loop, ingest, track_queue, threading.Event())
    )
    worker.start()
    ingest.put((VP8, JitterFrame(b"\x10\x02\x00keyframe", 3000)))
    ingest.put((VP8, JitterFrame(b"\x11delta", 6000)))
    assert [name for name, _ in packets] == ["VP8", "VP8"]
    key, delta = packets[0][1], packets[1][1]
    assert bytes(key) == b"\x10\x02\x00keyframe" and key.pts == 3000
    assert key.time_base == fractions.Fraction(1, 90000)
    assert key.is_keyframe and not delta.is_keyframe
    assert worker.is_alive()  # blocked in get(), decoding nothing
    ingest.put(None)
    await asyncio.to_thread(worker.join, 2)
    assert not worker.is_alive()
    await asyncio.wait_for(ended.wait(), 1)
    assert await asyncio.wait_for(track_queue.get(), 1) is None  # the remote track ends

    audio: list[av.Packet] = []
    opus = IngestQueue("audio", lambda codec, p: audio.append(p), lambda: None)
    opus.put((OPUS, JitterFrame(b"\xfc\xff\xfe", 960)))
    assert audio[0].time_base == fractions.Fraction(1, 48000) and audio[0].is_keyframe


@pytest.mark.timeout(5)
async def test_install_ingest_replaces_the_decoder_queue_only_before_start() -> None:
    pc = RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("video").receiver
        with pytest.raises(AiortcInternalsError, match="no remote track"):
            install_ingest(receiver, lambda c, p: None, lambda: None)
        from aiortc.rtcrtpreceiver import RemoteStreamTrack

        receiver._track = RemoteStreamTrack(kind="video")
        ingest = install_ingest(receiver, lambda c, p: None, lambda: None)
        assert receiver._RTCRtpReceiver__decoder_queue is ingest  # type: ignore[attr-defined]
        frames = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
        assert isinstance(frames, ReleasingJitterBuffer) and frames.capacity == 512
        receiver._RTCRtpReceiver__started = True  # type: ignore[attr-defined]
        with pytest.raises(AiortcInternalsError, match="before the receiver starts"):
            install_ingest(receiver, lambda c, p: None, lambda: None)
        # Not really started: let close() skip the receiver's RTCP shutdown.
        receiver._RTCRtpReceiver__started = False  # type: ignore[attr-defined]
    finally:
        await pc.close()


@pytest.mark.timeout(5)
async def test_pli_goes_to_the_media_ssrc_not_rtx(monkeypatch: pytest.MonkeyPatch) -> None:
    pc = RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("video").receiver
        sent: list[int] = []

        async def record(media_ssrc: int) -> None:
            sent.append(media_ssrc)

        monkeypatch.setattr(receiver, "_send_rtcp_pli", record)
        assert not await send_pli(receiver)  # nothing known yet: no PLI
        media_ssrc, rtx_ssrc = 1111, 2222
        receiver._RTCRtpReceiver__rtx_ssrc[rtx_ssrc] = media_ssrc  # type: ignore[attr-defined]
        assert await send_pli(receiver)  # before media: from the negotiated RTX map
        now = datetime.datetime.now(datetime.UTC)
        active = receiver._RTCRtpReceiver__active_ssrc  # type: ignore[attr-defined]
        # RTX padding probes arrive first and most recently: still not the PLI target.
        active[media_ssrc] = now - datetime.timedelta(seconds=1)
        active[rtx_ssrc] = now
        assert await send_pli(receiver)
        assert sent == [media_ssrc, media_ssrc]
    finally:
        await pc.close()


@pytest.mark.timeout(5)
async def test_shared_payload_sender_swap_and_keyframe_routing() -> None:
    pc = RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:

        class Source(aiortc.MediaStreamTrack):
            kind = "video"
            requests = 0

            async def recv(self) -> av.Packet:
                await asyncio.Future()  # never: the sender does not start in this test
                raise AssertionError

            def request_keyframe(self) -> None:
                self.requests += 1

        track = Source()
        sender = use_shared_payloads(pc.addTransceiver(track, direction="sendonly").sender)
        assert isinstance(sender, SharedPayloadSender)
        sender._send_keyframe()  # what aiortc calls on a subscriber's PLI/FIR
        assert track.requests == 1
        with pytest.raises(AiortcInternalsError):

            class Other(RTCRtpSender):
                pass

            other = pc.addTransceiver("audio").sender
            other.__class__ = Other
            use_shared_payloads(other)
    finally:
        await pc.close()


# --------------------------------------------------------------------------------------------
# SharedPayloadSender's RTP loop (replaces RTCRtpSender._run_rtp) and its direct send path
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(5)
async def test_send_loop_private_attributes_exist_on_real_objects() -> None:
    import aioice.ice
    from aiortc.rtcdtlstransport import State as DtlsState
    from pylibsrtp import Policy, Session

    pc = RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        sender = pc.addTransceiver("video").sender
        # The RTP loop's events and the counters the RTCP loop / getStats read.
        assert isinstance(sender._RTCRtpSender__rtp_started, asyncio.Event)  # type: ignore[attr-defined]
        assert isinstance(sender._RTCRtpSender__rtp_exited, asyncio.Event)  # type: ignore[attr-defined]
        assert sender._RTCRtpSender__started is False  # type: ignore[attr-defined]
        for name in egress._SENDER_SR_COUNTERS:
            assert getattr(sender, name) == 0, name
        assert isinstance(sender._ssrc, int) and isinstance(sender._rtx_ssrc, int)
        # What the direct path reads on the transports.
        dtls = sender.transport
        assert dtls._state is DtlsState.NEW and dtls._tx_srtp is None
        assert dtls._RTCDtlsTransport__tx_bytes == 0
        assert dtls._RTCDtlsTransport__tx_packets == 0
        connection = dtls.transport._connection
        assert isinstance(connection, aioice.ice.Connection)
        assert connection._nominated == {}
        session = Session(Policy(key=bytes(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND))
        assert session._srtp[0] is not None
    finally:
        await pc.close()


def _no_fragments(*args: object, **kwargs: object) -> None:
    """A stand-in whose code uses none of the names, and whose source contains none of the
    code, that the checks look for."""


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    ("owner", "name", "expected"),
    [
        ("RTCRtpSender", "_run_rtcp", "_run_rtcp"),
        ("RTCRtpSender", "_retransmit", "_retransmit"),
        ("RTCRtpSender", "_handle_rtcp_packet", "_handle_rtcp_packet"),
        ("RTCRtpSender", "stop", "RTCRtpSender.stop"),
        ("RTCDtlsTransport", "_send_rtp", "_send_rtp"),
        ("StunProtocol", "send_data", "send_data"),
        ("Connection", "sendto", "Connection.sendto"),
        ("Connection", "check_start", "Connection.check_start"),
        ("Connection", "query_consent", "Connection.query_consent"),
        ("StunProtocol", "send_stun", "StunProtocol.send_stun"),
        ("StunProtocol", "request", "StunProtocol.request"),
        ("Session", "protect", "Session.protect"),
        ("Session", "_Session__process", "Session.__process"),
    ],
)
def test_check_fails_loudly_when_the_send_path_moves(
    monkeypatch: pytest.MonkeyPatch, owner: str, name: str, expected: str
) -> None:
    import aioice.ice
    import pylibsrtp
    from aiortc import RTCDtlsTransport

    owners = {
        "RTCRtpSender": RTCRtpSender,
        "RTCDtlsTransport": RTCDtlsTransport,
        "StunProtocol": aioice.ice.StunProtocol,
        "Connection": aioice.ice.Connection,
        "Session": pylibsrtp.Session,
    }
    monkeypatch.setattr(owners[owner], name, _no_fragments)
    with pytest.raises(AiortcInternalsError, match=expected):
        verify()
    assert [p for p in sources.source_problems() if expected in p]


@pytest.mark.timeout(5)
def test_check_fails_when_a_sender_counter_is_renamed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(egress, "_SENDER_SR_COUNTERS", ("_RTCRtpSender__packets_sent_renamed",))
    with pytest.raises(AiortcInternalsError, match="__packets_sent_renamed"):
        verify()
    assert [p for p in sources.source_problems() if "__packets_sent_renamed" in p]


@pytest.mark.timeout(5)
async def test_use_shared_payloads_refuses_a_started_sender() -> None:
    pc = RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        sender = pc.addTransceiver("video").sender
        sender._RTCRtpSender__started = True  # type: ignore[attr-defined]
        with pytest.raises(AiortcInternalsError, match="before the sender starts"):
            use_shared_payloads(sender)
        sender._RTCRtpSender__started = False  # type: ignore[attr-defined]
        assert isinstance(use_shared_payloads(sender), SharedPayloadSender)
    finally:
        await pc.close()
