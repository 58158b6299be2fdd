"""Egress: one packetization per frame for every subscriber of a track, and the sender that
sends it.

``RTCRtpSender._next_encoded_frame`` is overridden by :class:`SharedPayloadSender` (the class of
a stock sender is swapped) so the sender takes an ``RTCEncodedFrame`` whose RTP payloads were
packetized once for all subscribers of a track. Its ``_send_keyframe`` (called on a subscriber's
PLI/FIR) is routed to a callback instead of forcing an encoder keyframe. Its ``_run_rtp``
replaces aiortc's per-packet loop (the per-subscriber cost that matters most): headers from
precomputed bytes, one clock read per frame, SRTP in place and a direct ``sendto``
(``srtp_send``), while keeping aiortc's sender-report counters, NACK/RTX answers and transport
stats in step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any, Protocol

import av
from aiortc import RTCRtpSender
from aiortc.codecs import get_encoder, is_rtx
from aiortc.codecs.base import Encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtcrtpsender import RTCEncodedFrame, random_sequence_number
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RTP_HISTORY_SIZE,
    AnyRtcpPacket,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    unpack_remb_fci,
)
from aiortc.utils import random32

from media.internals import srtp_send
from media.internals.base import AiortcInternalsError
from media.internals.srtp_send import (
    _DTLS_TX_BYTES,
    _DTLS_TX_PACKETS,
    _EXTENSION_HEADER,
    _RTP_HEAD,
    _RTP_TAIL,
    _RTX_HEAD,
    _DatagramSink,
    _ntp_now,
)

# Name-mangled private attributes of RTCRtpSender that SharedPayloadSender's RTP loop reads or
# keeps up to date, as aiortc's own _run_rtp does (the RTCP loop and getStats read them).
_SENDER_STARTED = "_RTCRtpSender__started"
_SENDER_RTP_STARTED = "_RTCRtpSender__rtp_started"
_SENDER_RTP_EXITED = "_RTCRtpSender__rtp_exited"
_SENDER_NTP_TIMESTAMP = "_RTCRtpSender__ntp_timestamp"
_SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
_SENDER_PACKET_COUNT = "_RTCRtpSender__packet_count"
_SENDER_OCTET_COUNT = "_RTCRtpSender__octet_count"
# aiortc's smoothed round-trip time from the receiver's reports (seconds, or None).
_SENDER_RTT = "_RTCRtpSender__rtt"
# The middle 32 bits of the NTP time of the last sender report aiortc's RTCP loop sent, and
# when (time.time()): a receiver report's LSR names the report it answers.
_SENDER_LSR = "_RTCRtpSender__lsr"
_SENDER_LSR_TIME = "_RTCRtpSender__lsr_time"
# Sender reports kept to match receiver reports against (aiortc keeps only the last one, so a
# queue on the link longer than its 0.5-1.5 s report interval left it without a sample):
# 8 s of them at the fast pace below.
SR_HISTORY = 32
# A viewer's layered video whose link shows a sign of congestion (its last windows delivered
# under FAST_SR_DELIVERED of what was sent, or the layer selection sees a queue of
# FAST_SR_QUEUE_S): a sender report after a frame at most every FAST_SR_INTERVAL_S, beside
# aiortc's (every 0.5-1.5 s). Each is answered with an RTT sample, and the layer selection
# sees a queue grow 3-4 times sooner: a Chromium viewer's 600 kbit/s link under the top layer
# had its samples 1.45 s apart, 0.23 s then 0.76 s of queue, and the move down came 3.1 s
# after the link narrowed, its queue full. A healthy link gets none of them.
FAST_SR_INTERVAL_S = 0.25
FAST_SR_DELIVERED = 0.95
FAST_SR_QUEUE_S = 0.05
_SENDER_SR_COUNTERS = (
    _SENDER_NTP_TIMESTAMP,
    _SENDER_RTP_TIMESTAMP,
    _SENDER_PACKET_COUNT,
    _SENDER_OCTET_COUNT,
)

logger = logging.getLogger(__name__)


class Packetizer:
    """Turns one encoded frame into RTP payloads with aiortc's packetizer for the codec.

    One per forwarded track, so payloads are built once per frame and shared by every
    subscriber. VP8 and H.264 are re-packetized (aiortc's VP8 picture id continues across
    frames); Opus passes through.
    """

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self._encoder: Encoder = get_encoder(codec)

    def pack(self, packet: av.Packet) -> RTCEncodedFrame:
        payloads, timestamp = self._encoder.pack(packet)
        # audio_level None: forwarded audio carries no level extension (see docs/media.md).
        return RTCEncodedFrame(payloads, timestamp, None)  # type: ignore[arg-type]


class EncodedFrameSource(Protocol):
    """What a :class:`SharedPayloadSender` reads: a track yielding shared RTCEncodedFrames."""

    async def recv_encoded(self) -> RTCEncodedFrame | None: ...

    def request_keyframe(self) -> None: ...

    def link_feedback(
        self,
        estimate: int | None,
        estimate_age: float | None,
        loss: float,
        rtt: float | None,
        report: bool,
        received: float | None = None,
        loss_since: float | None = None,
        sent: float | None = None,
    ) -> None: ...

    def receive_report(self, oldest_missing: float | None) -> None: ...


# While a viewer's video is paused for its link: one padding packet of PADDING_BYTES every
# PADDING_INTERVAL_S on the video stream (16 kbit/s with its headers).
PADDING_INTERVAL_S = 0.1
PADDING_BYTES = 140
# While the viewer's last report showed the padding waiting over PADDING_QUEUE_S on its link
# (``lag``), one every PADDING_QUEUED_INTERVAL_S (reports still name one each).
PADDING_QUEUE_S = 0.2
PADDING_QUEUED_INTERVAL_S = 0.5

# Retransmissions may take this share of a stream's own bytes (and hold up to
# RTX_BUDGET_MAX bytes unused): a viewer losing 20 % of its packets needs about 25 %, and an
# aiortc viewer whose queue overflows much more (its jitter buffer holds a frame with a packet
# missing until 128 packets later: with 30 % its decoder stayed stuck after a link narrowed).
RTX_SHARE = 1.0
RTX_BUDGET_MAX = 60_000

# A packet is sent again at most once per RTT, and at least once this often (a retransmission
# dropped by a full queue must be answered at the next ask: a packet that leaves the history
# unrepaired stalls an aiortc viewer's jitter buffer for 128 packets).
RESEND_WAIT_MAX_S = 0.25

# Sequence numbers skipped when the video resumes after a pause: aiortc 1.16's video jitter
# buffer's capacity (``RTCRtpReceiver``: ``JitterBuffer(capacity=512, is_video=True)``), so
# that everything it still holds is older than it can keep (:meth:`restart_sequence`).
SEQUENCE_SKIP = 512

# Keep-alive paddings whose send time is kept (10 a second: 6 s).
KEEPALIVES = 64

# A viewer's loss is measured over at least this many seconds of its reports.
LOSS_WINDOW_S = 1.0
# Bytes on the wire around an RTP payload: RTP header with mid and abs-send-time (24), SRTP
# tag (10), UDP and IPv4 (28).
PACKET_OVERHEAD = 62

# Send times of a video sender's last frames, kept to tell from a receiver report's highest
# sequence number how long ago the oldest frame the viewer has not received was sent (its
# freezes, media/freezes.py): 64 frames, about 2-3 s of video, two small ints per frame.
FRAME_TIMES = 64


def oldest_missing(frames: deque[tuple[int, float]], highest: int) -> float | None:
    """When the oldest frame after the packet ``highest`` (16-bit sequence number) was sent,
    from ``(first sequence number, send time)`` per frame, oldest first; None if none is."""
    found = None
    for first, sent_at in reversed(frames):
        if not 0 < (first - highest) & 0xFFFF < 0x8000:
            break  # this frame starts at or before the highest packet received
        found = sent_at
    return found


class _Egress:
    """What one forwarding sender's RTP loop precomputes from its negotiated parameters.

    Built once in ``send()`` (aiortc ignores later calls too): payload type, RTX payload type,
    and the header extension block. The extension bytes come from aiortc's own serializer
    (``HeaderExtensionsMap.set``), probed once: the block is the same for every packet except
    the 3 bytes of abs-send-time, which are patched once per frame.
    """

    __slots__ = (
        "abs_send_time_at",
        "ext_map",
        "extension",
        "history",
        "mid",
        "payload_type",
        "rtx_payload_type",
        "rtx_sequence_number",
    )

    def __init__(self, parameters: RTCRtpSendParameters) -> None:
        payload_type = parameters.codecs[0].payloadType
        assert payload_type is not None, "negotiated codecs have payload types"
        self.payload_type: int = payload_type
        # As RTCRtpSender.send(): the RTX codec whose apt is the first (sending) codec.
        self.rtx_payload_type: int | None = next(
            (
                c.payloadType
                for c in parameters.codecs
                if is_rtx(c) and c.parameters.get("apt") == self.payload_type
            ),
            None,
        )
        self.rtx_sequence_number = random_sequence_number()
        self.mid = parameters.muxId
        self.ext_map = HeaderExtensionsMap()
        self.ext_map.configure(parameters)
        # The last RTP_HISTORY_SIZE packets, for NACK, as (sequence number, marker and
        # payload type byte, timestamp/SSRC/extension bytes, payload): nothing is copied.
        self.history: list[tuple[int, int, bytes, bytes] | None] = [None] * RTP_HISTORY_SIZE
        low, high = self.extension_block(0), self.extension_block(0xFFFFFF)
        self.extension = low
        self.abs_send_time_at: int | None = None  # None: not negotiated, the block is constant
        if low != high:
            # The 3 bytes that differ are abs-send-time's: patch them per frame.
            at = next((i for i, (a, b) in enumerate(zip(low, high, strict=False)) if a != b), 0)
            patched = low[:at] + b"\xff\xff\xff" + low[at + 3 :]
            if len(low) != len(high) or low[at : at + 3] != b"\0\0\0" or patched != high:
                at = -1  # pragma: no cover - aiortc's serializer changed: use it per frame
            self.abs_send_time_at = at

    def extension_block(self, abs_send_time: int, audio_level: int | None = None) -> bytes:
        """The RTP header extension block (profile, length, elements) aiortc would send."""
        values = HeaderExtensions(mid=self.mid, abs_send_time=abs_send_time)
        if audio_level is not None:
            values.audio_level = (False, -audio_level)
        profile, value = self.ext_map.set(values)
        return _EXTENSION_HEADER.pack(profile, len(value) >> 2) + value if value else b""

    def frame_header(
        self, timestamp: int, ssrc: int, abs_send_time: int, audio_level: int | None
    ) -> tuple[int, bytes]:
        """A frame's first header byte and the header bytes after the sequence number
        (timestamp, SSRC, extension block): the same for every packet of the frame."""
        extension = self.frame_extension(abs_send_time, audio_level)
        return (0x90 if extension else 0x80), _RTP_TAIL.pack(timestamp, ssrc) + extension

    def frame_extension(self, abs_send_time: int, audio_level: int | None) -> bytes:
        at = self.abs_send_time_at
        if audio_level is not None or (at is not None and at < 0):
            return self.extension_block(abs_send_time, audio_level)
        if at is None:
            return self.extension  # no abs-send-time negotiated: constant (mid only, or none)
        ext = self.extension
        return ext[:at] + abs_send_time.to_bytes(3, "big") + ext[at + 3 :]

    def retransmission(
        self, sequence_number: int, rtx_ssrc: int, *, filler: int | None = None
    ) -> bytes | None:
        """The packet to answer a NACK of ``sequence_number`` with, from the history.

        RFC 4588 RTX when negotiated, else the packet itself: the same bytes as aiortc's
        ``_retransmit`` (``wrap_rtx`` + ``serialize``) would build. None when too old.

        ``filler`` (an RTP timestamp): the packet's header alone, with that timestamp, no
        marker and an empty payload (RTX: the original sequence number only). A receiver
        takes it as padding: the sequence number is no longer missing, and nothing is decoded
        from it (aiortc's jitter buffer stops waiting for it; a browser stops asking for it).
        """
        entry = self.history[sequence_number % len(self.history)]
        if entry is None or entry[0] != sequence_number:
            return None
        _, second_byte, tail, payload = entry
        if filler is not None:
            payload = b""
            second_byte &= 0x7F
            tail = filler.to_bytes(4, "big") + tail[4:]
        first_byte = 0x90 if len(tail) > 8 else 0x80  # tail: timestamp, SSRC, extensions
        if self.rtx_payload_type is None:
            return _RTP_HEAD.pack(first_byte, second_byte, sequence_number) + tail + payload
        rtx_sequence_number = self.rtx_sequence_number
        self.rtx_sequence_number = (rtx_sequence_number + 1) & 0xFFFF
        return (
            _RTX_HEAD.pack(
                first_byte,
                (second_byte & 0x80) | self.rtx_payload_type,
                rtx_sequence_number,
                tail[:4],
                rtx_ssrc,
            )
            + tail[8:]
            + sequence_number.to_bytes(2, "big")  # OSN: the original sequence number
            + payload
        )

    def filler_timestamp(self, sequence_number: int, missing: Collection[int]) -> int | None:
        """The RTP timestamp for a filler of ``sequence_number``: the one of the first packet
        with a payload after it that the viewer did not ask for with it (it holds that one).
        aiortc's jitter buffer joins packets with one timestamp into a frame, and a frame of
        fillers alone reached its decoder as an empty packet, which FFmpeg takes for the end
        of the stream: that decoder decoded nothing ever again. Joined to a frame the viewer
        holds, a filler adds nothing to it. None if no such packet was sent yet."""
        history = self.history
        for step in range(1, len(history)):
            number = (sequence_number + step) & 0xFFFF
            entry = history[number % len(history)]
            if entry is None or entry[0] != number:
                return None
            if entry[3] and number not in missing:
                return int.from_bytes(entry[2][:4], "big")
        return None


class SharedPayloadSender(RTCRtpSender):
    """An RTCRtpSender that sends RTCEncodedFrames produced once per frame for all subscribers.

    Never constructed directly: :func:`use_shared_payloads` swaps the class of the sender the
    peer connection created, so aiortc's own wiring (transport, SSRCs, RTCP) stays untouched.

    Its RTP loop (:meth:`_run_rtp`, replacing aiortc's) does per frame: one clock read, the
    header bytes after the sequence number (timestamp, SSRC, the mid + abs-send-time block);
    per packet (:class:`_DatagramSink`): one ``struct.pack_into`` (first byte, marker/payload
    type, sequence number), those bytes and the payload shared by every subscriber copied into
    one buffer, libsrtp's ``srtp_protect`` in place and one ``sendto``. The packets are
    byte-identical to aiortc's (tested). It keeps what aiortc's loop keeps: the RTCP sender
    report counters (``__packet_count``, ``__octet_count``, ``__ntp_timestamp``,
    ``__rtp_timestamp``, updated once per frame) and a history of the last 128 packets, which
    :meth:`_retransmit` answers NACKs from (RTX-wrapped when RTX was negotiated).
    """

    _egress: _Egress | None = None

    async def send(self, parameters: RTCRtpSendParameters) -> None:
        if not getattr(self, _SENDER_STARTED):
            self._egress = _Egress(parameters)
        await super().send(parameters)

    async def _run_rtp(self, codec: RTCRtpCodecParameters) -> None:
        getattr(self, _SENDER_RTP_STARTED).set()
        try:
            await self._forward(codec)
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        except Exception:
            # __rtp_exited must be set below or stop() hangs (as in aiortc's loop).
            logger.exception("forwarding RTP loop of a %s sender failed", self.kind)
        track = self.track
        if track is not None:
            track.stop()
            self.replaceTrack(None)
        getattr(self, _SENDER_RTP_EXITED).set()

    # The RTP loop's state (set when it starts) is the sender's, so that the fan-out can also
    # send a frame in its own call (:meth:`_send_now`) while the loop waits for one.
    _sink: _DatagramSink | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _video = False
    _sequence_number = 0
    _timestamp_origin = 0
    _timestamp = 0  # the last frame's
    _sent_at = 0.0  # when the last frame was sent (loop time)
    _packet_count = 0
    _octet_count = 0

    async def _forward(self, codec: RTCRtpCodecParameters) -> None:
        egress = self._egress
        assert egress is not None and egress.payload_type == codec.payloadType
        history = egress.history
        history_size = len(history)
        payload_type = egress.payload_type
        marker_type = 0x80 | payload_type
        head = _RTP_HEAD.pack
        self._sequence_number = random_sequence_number()
        self._timestamp = self._timestamp_origin = random32()
        self._packet_count = getattr(self, _SENDER_PACKET_COUNT)
        self._octet_count = getattr(self, _SENDER_OCTET_COUNT)
        sink = self._sink = _DatagramSink()
        loop = self._loop = asyncio.get_running_loop()
        self.frame_times = deque(maxlen=FRAME_TIMES)
        video = self._video = self.kind == "video"
        self._sent_at = loop.time()
        while True:
            track = self.track
            if track is None:
                await asyncio.sleep(0.02)  # idle until replaceTrack(), as aiortc's loop
                continue
            if video and getattr(track, "video_paused", False):
                # Video paused for the viewer's link: a small padding packet now and then
                # keeps its browser reporting on this stream (about once a second, with the
                # loss and the RTT) and estimating the link, so the layer selection learns
                # within a second or two that the link recovered; with only the audio's
                # reports (one every 5 s) it took 6-10 s.
                # Sparser while the viewer's last report showed a queue: the queue that
                # paused the video drains at what the voice leaves of the link, and a drop-tail
                # queue counts packets (ten paddings a second took slots from the voice's 50).
                # (The lag is known within the interval the paddings go at.)
                interval = self._padding_interval
                queued = self.lag is not None and self.lag - interval > PADDING_QUEUE_S
                interval = PADDING_QUEUED_INTERVAL_S if queued else PADDING_INTERVAL_S
                self._padding_interval = interval
                try:
                    async with asyncio.timeout(interval):
                        frame = await self._next_encoded_frame(codec)
                except TimeoutError:
                    # The padding carries the last frame's timestamp (a new one would start
                    # a frame of nothing in a receiver's jitter buffer: aiortc's then fed its
                    # decoder garbage and asked for keyframe after keyframe). The next sender
                    # report's clock goes on, as the stream will after the pause
                    # (StreamRewriter): aiortc's RTCP loop sends the last NTP time set, and a
                    # frozen one made every report look like the one before and the RTT from
                    # them grow without end.
                    ntp = _ntp_now()
                    elapsed = int((loop.time() - self._sent_at) * codec.clockRate)
                    timestamp = self._timestamp
                    await self._send_padding(timestamp, self._sequence_number)
                    self._keepalive_sent(self._sequence_number, loop.time())
                    self._sequence_number = (self._sequence_number + 1) & 0xFFFF
                    setattr(self, _SENDER_NTP_TIMESTAMP, ntp)
                    setattr(self, _SENDER_RTP_TIMESTAMP, (timestamp + elapsed) & 0xFFFFFFFF)
                    continue
            else:
                frame = await self._next_encoded_frame(codec)
            if frame is None or not frame.payloads:
                continue
            dtls = self.transport
            if srtp_send.DIRECT_DATAGRAMS and sink.resolve(dtls):
                self._send_direct(frame, dtls)
                continue
            # A relayed (TURN) pair: through aiortc's coroutine chain, one packet at a time.
            payloads = frame.payloads
            ntp, timestamp, first_byte, tail, frame_octets = self._frame_header(frame)
            sequence_number = self._sequence_number
            last = len(payloads) - 1
            send_rtp = dtls._send_rtp
            for i, payload in enumerate(payloads):
                second_byte = marker_type if i == last else payload_type
                history[sequence_number % history_size] = (
                    sequence_number,
                    second_byte,
                    tail,
                    payload,
                )
                await send_rtp(head(first_byte, second_byte, sequence_number) + tail + payload)
                sequence_number = (sequence_number + 1) & 0xFFFF
            self._sequence_number = sequence_number
            self._sent(ntp, timestamp, last + 1, frame_octets)

    def _frame_header(self, frame: RTCEncodedFrame) -> tuple[int, int, int, bytes, int]:
        """Once per frame: one clock read, the bytes after the sequence number, the frame's
        send time (video) and its share of the retransmission budget; returns (NTP time,
        RTP timestamp, first header byte, header bytes after the sequence number, payload
        bytes)."""
        egress = self._egress
        assert egress is not None and self._loop is not None
        ntp = _ntp_now()
        timestamp = self._timestamp = (self._timestamp_origin + frame.timestamp) & 0xFFFFFFFF
        first_byte, tail = egress.frame_header(
            timestamp, self._ssrc, (ntp >> 14) & 0x00FFFFFF, frame.audio_level
        )
        sent_at = self._sent_at = self._loop.time()
        if self._video and self.frame_times is not None:
            self.frame_times.append((self._sequence_number, sent_at))
        frame_octets = sum(map(len, frame.payloads))
        # Retransmissions may add at most RTX_SHARE of what the stream sends.
        self._rtx_budget = min(self._rtx_budget + RTX_SHARE * frame_octets, RTX_BUDGET_MAX)
        return ntp, timestamp, first_byte, tail, frame_octets

    def _send_direct(self, frame: RTCEncodedFrame, dtls: Any) -> None:
        """One frame on the direct path (the sink resolved): synchronous, no await."""
        egress, sink = self._egress, self._sink
        assert egress is not None and sink is not None
        payloads = frame.payloads
        ntp, timestamp, first_byte, tail, frame_octets = self._frame_header(frame)
        sent_bytes = sink.send(
            first_byte, egress.payload_type, self._sequence_number, tail, payloads, egress.history
        )
        count = len(payloads)
        self._sequence_number = (self._sequence_number + count) & 0xFFFF
        # RTCDtlsTransport's own counters (its getStats), as _send_rtp keeps them.
        setattr(dtls, _DTLS_TX_BYTES, getattr(dtls, _DTLS_TX_BYTES) + sent_bytes)
        setattr(dtls, _DTLS_TX_PACKETS, getattr(dtls, _DTLS_TX_PACKETS) + count)
        self._sent(ntp, timestamp, count, frame_octets)

    def _sent(self, ntp: int, timestamp: int, packets: int, octets: int) -> None:
        # What aiortc's RTCP loop puts in the next sender report (and getStats reads).
        self._packet_count += packets
        self._octet_count += octets
        setattr(self, _SENDER_NTP_TIMESTAMP, ntp)
        setattr(self, _SENDER_RTP_TIMESTAMP, timestamp)
        setattr(self, _SENDER_PACKET_COUNT, self._packet_count)
        setattr(self, _SENDER_OCTET_COUNT, self._octet_count)
        if self._fast_reports and self._loop is not None:
            now = self._loop.time()
            if now - self._fast_sr_at >= FAST_SR_INTERVAL_S:
                self._fast_sr_at = now
                self._loop.create_task(self._send_sender_report())

    _fast_sr_at = -1e9
    _fast_reports = False  # :meth:`_congested` at the last receiver report
    # The LSRs of the sender reports :meth:`_send_sender_report` sent (the last SR_HISTORY).
    _fast_lsrs: set[int] | None = None

    def _congested(self) -> bool:
        """A layered video's link shows a sign of congestion (FAST_SR_* above)."""
        selector = getattr(self.track, "selector", None)
        if selector is None:
            return False
        sent, received = self.sent_bps, self.received_bps
        if sent and received is not None and received < FAST_SR_DELIVERED * sent:
            return True
        return bool(selector.queue_delay() >= FAST_SR_QUEUE_S)

    async def _send_sender_report(self) -> None:
        """One sender report now, as aiortc's RTCP loop builds it (the last packet's NTP and
        RTP timestamps, the counts): unless nothing was sent since the last one."""
        ntp: int = getattr(self, _SENDER_NTP_TIMESTAMP)
        lsr = (ntp >> 16) & 0xFFFFFFFF
        if self._sr_times is None:
            self._sr_times = {}
        if self._fast_lsrs is None:
            self._fast_lsrs = set()
        if lsr in self._sr_times:
            return
        at = time.time()
        setattr(self, _SENDER_LSR, lsr)
        setattr(self, _SENDER_LSR_TIME, at)
        self._remember_sr(lsr, at)
        self._fast_lsrs.add(lsr)
        report = RtcpSrPacket(
            ssrc=self._ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=getattr(self, _SENDER_RTP_TIMESTAMP),
                packet_count=self._packet_count & 0xFFFFFFFF,
                octet_count=self._octet_count & 0xFFFFFFFF,
            ),
        )
        await self._send_rtcp([report])

    def _remember_sr(self, lsr: int, at: float) -> None:
        assert self._sr_times is not None
        self._sr_times[lsr] = at
        while len(self._sr_times) > SR_HISTORY:
            oldest = next(iter(self._sr_times))
            del self._sr_times[oldest]
            if self._fast_lsrs is not None:
                self._fast_lsrs.discard(oldest)

    def _send_now(self, track: Any, frame: RTCEncodedFrame) -> bool:
        """Called by ``track``'s fan-out while this sender's loop waits for a frame: send
        ``frame`` at once, in the fan-out's own call (no future, task step and coroutine
        resumptions per frame and viewer). False when the loop must send it: not the current
        track, disabled, paused video, no direct pair (relayed, not yet resolved), or not
        connected (the loop then ends as aiortc's would)."""
        if self.track is not track or not self._enabled or not frame.payloads:
            return False
        sink = self._sink
        if sink is None or not srtp_send.DIRECT_DATAGRAMS:
            return False
        if self._video and getattr(track, "video_paused", False):
            return False
        dtls = self.transport
        try:
            if not sink.resolve(dtls):
                return False
        except ConnectionError:
            return False
        self._send_direct(frame, dtls)
        return True

    def _sent_before(self, sequence_number: int, at: float) -> bool:
        """Whether the frame of ``sequence_number`` was sent before loop time ``at`` (False
        when it is not among the last FRAME_TIMES frames)."""
        sent = self._frame_sent_at(sequence_number)
        return sent is not None and sent < at

    def _frame_sent_at(self, sequence_number: int) -> float | None:
        """When the frame of ``sequence_number`` was sent (None: not among the last
        FRAME_TIMES frames)."""
        for first, sent in reversed(self.frame_times or ()):
            if (sequence_number - first) & 0xFFFF < 0x8000:  # at or after this frame's start
                return sent
        return None

    async def _send_padding(self, timestamp: int, sequence_number: int) -> None:
        """One padding-only RTP packet (RFC 3550 5.1: P bit, the payload all padding, its
        last byte the padding's length) on this stream, with the last frame's timestamp."""
        egress = self._egress
        assert egress is not None
        first_byte, tail = egress.frame_header(
            timestamp, self._ssrc, (_ntp_now() >> 14) & 0x00FFFFFF, None
        )
        padding = bytes(PADDING_BYTES - 1) + bytes([PADDING_BYTES])
        head = _RTP_HEAD.pack(first_byte | 0x20, egress.payload_type, sequence_number)
        # Kept in the history like a frame's packet, its payload empty: a viewer that lost
        # it asks for it (aiortc's jitter buffer holds every frame after it until it comes,
        # 512 packets later otherwise) and gets it back as a filler (:meth:`_retransmit`).
        egress.history[sequence_number % len(egress.history)] = (
            sequence_number,
            egress.payload_type,
            tail,
            b"",
        )
        await self.transport._send_rtp(head + tail + padding)

    async def _retransmit(self, sequence_number: int) -> None:
        """A subscriber's NACK: resend the packet from this loop's history (RTX if negotiated)."""
        egress = self._egress
        if egress is None:
            return
        track: Any = self.track
        if (
            getattr(track, "video_paused", False)
            and getattr(track, "forwarding_sender", None) is self
        ):
            # Nothing into the queue that paused the video, not even a filler (a drop-tail
            # queue counts packets: each small one took a slot from the voice): the
            # sequence jump on resuming (a camera's, LayeredSubscriberTrack) frees aiortc's
            # jitter buffer of every hole at once.
            return
        # A packet is sent again at most once per RTT: a browser asks for a missing packet
        # again before the first retransmission could arrive when its link is queued, and
        # answering every ask filled that queue with copies (the loss rose to 50-80 % at a
        # layer the link carried), as libwebrtc's and mediasoup's senders avoid too.
        now = asyncio.get_running_loop().time()
        if self._resent is None:
            self._resent = {}
        last = self._resent.get(sequence_number)
        wait = min(max(self.last_rtt or 0.0, 0.05), RESEND_WAIT_MAX_S)
        if last is not None and now - last < wait:
            return
        self._resent[sequence_number] = now
        if len(self._resent) > RTP_HISTORY_SIZE:
            del self._resent[next(iter(self._resent))]
        switched: float | None = getattr(track, "switched_down_at", None)
        if switched is not None and self._sent_before(sequence_number, switched):
            # A packet of the layer the viewer left (or of the video before a pause): its
            # decoder starts again at the new layer's keyframe and needs none of it, and on
            # the queued link that made the switch, resending the old layer's losses kept the
            # queue full. Its header alone (a filler, ~60 bytes) tells the receiver to stop
            # waiting: aiortc's jitter buffer held every frame after the hole, the new
            # layer's too, until 512 packets had come (10-17 s of a low layer, seen as an
            # aiortc viewer frozen after a switch down or a pause), and browsers ask for it
            # again and again.
            timestamp = egress.filler_timestamp(sequence_number, self._nacked)
            data = (
                None
                if timestamp is None
                else egress.retransmission(sequence_number, self._rtx_ssrc, filler=timestamp)
            )
            if data is not None:
                self.fillers += 1
                await self.transport._send_rtp(data)
            return
        data = egress.retransmission(sequence_number, self._rtx_ssrc)
        if data is None:
            self.retransmissions_missed += 1  # older than the history: the viewer waits on
            return
        if len(data) > self._rtx_budget:
            # Within a share of what the stream sends: a queued link's viewer asks again and
            # again for what its queue dropped, and answering all of it (with no video sent,
            # a paused viewer's whole history) kept that queue full.
            return
        self._rtx_budget -= len(data)
        self.retransmissions += 1
        await self.transport._send_rtp(data)

    # What this viewer's RTCP said about its link: REMB estimate (bit/s), its loss (0-1, the
    # worst of its streams' over the last LOSS_WINDOW_S, :meth:`_take_reports`). RTT is
    # aiortc's own smoothed one (:meth:`link`); ``last_rtt`` the last report's sample alone.
    remb_bitrate: int | None = None
    remb_at: float | None = None
    # NACKed packets resent from this viewer's history, and NACKs of packets no longer in it.
    retransmissions: int = 0
    retransmissions_missed: int = 0
    # NACKs answered with a filler (the packet's header alone: a packet of the video before
    # a switch down or a pause, or a keep-alive padding), and the sequence numbers of the
    # NACK being answered.
    fillers: int = 0
    _nacked: frozenset[int] = frozenset()
    # Sequence numbers skipped on resuming (:meth:`restart_sequence`): (first, count).
    _skipped: tuple[int, int] | None = None

    def restart_sequence(self) -> None:
        """Skip SEQUENCE_SKIP sequence numbers before the next frame (the video resumes after
        a pause). aiortc's receiver holds every frame behind a packet it never got (a padding
        or a frame packet lost in the queue that paused the video, asked for once, when the
        next packet came, and answered with a filler or lost again) until its jitter buffer
        overflows, 512 packets later: 10-15 s of a low layer. A jump of the buffer's capacity
        makes it drop all of that at once (and ask for the keyframe that is on its way
        anyway). Browsers find frames by their own boundaries and only NACK the gap for a
        while (nothing is sent: none of it was sent). The loss measured over the window with
        the jump leaves the skip out (:meth:`_take_reports`)."""
        self._skipped = (self._sequence_number, SEQUENCE_SKIP)
        self._sequence_number = (self._sequence_number + SEQUENCE_SKIP) & 0xFFFF
        self._keepalives = None
        self.lag = self.lag_at = None

    # Send times of the last KEEPALIVES padding packets sent while the video is paused, by
    # sequence number; how long the newest of them the viewer had received at its last
    # report had waited on the link (seconds: its queue now, within a padding interval) and
    # when that was measured (loop time).
    _keepalives: dict[int, float] | None = None
    _padding_interval = PADDING_INTERVAL_S
    lag: float | None = None
    lag_at: float | None = None

    def _keepalive_sent(self, sequence_number: int, at: float) -> None:
        if self._keepalives is None:
            self._keepalives = {}
        self._keepalives[sequence_number] = at
        while len(self._keepalives) > KEEPALIVES:
            del self._keepalives[next(iter(self._keepalives))]

    def _take_lag(self, highest: int) -> None:
        """A report's highest sequence number received: the time since that packet was sent
        is the link's queue (a report follows the packet it names within a padding or frame
        interval, when packets arrive at all). A keep-alive padding's send time, or its
        frame's (a video packet still in the queue when the video was paused)."""
        keepalives = self._keepalives
        sent_at = keepalives.get(highest) if keepalives else None
        if keepalives and sent_at is None and (highest - next(iter(keepalives))) & 0xFFFF < 0x8000:
            return  # a padding no longer kept (the newest are)
        if sent_at is None:
            sent_at = self._frame_sent_at(highest)
        if sent_at is not None:
            now = asyncio.get_running_loop().time()
            self.lag, self.lag_at = now - sent_at, now

    fraction_lost: float = 0.0
    # The RTT sample of the last report (seconds; None if it gave none): aiortc keeps a
    # smoothed one (0.85 of the previous plus 0.15 of the new sample), which after a queue on
    # the link drained still says "congested" for many seconds, and takes a sample only from
    # a report that answers the last sender report; the layer selection wants the link as it
    # is now, queue or not.
    last_rtt: float | None = None
    # Per reported SSRC: (loop time, extended highest sequence number, cumulative lost) at the
    # start of its loss window, and (packets lost, expected, end, start) of its last full
    # window.
    _loss_marks: dict[int, tuple[float, int, int]] | None = None
    # This stream's (packets, payload octets) sent at the start of its window, and the bit
    # rate the viewer received of it in the last window (None: not known yet).
    _sent_mark: tuple[int, int] | None = None
    received_bps: float | None = None
    sent_bps: float | None = None  # what it sent over the same window
    # (bits received, bits sent, seconds) of the last window.
    _last_window: tuple[float, float, float] | None = None
    rates_at: float | None = None  # when that window ended (loop time)
    _losses: dict[int, tuple[int, int, float, float]] | None = None
    # When the window of ``fraction_lost`` started (loop time; None: no window yet).
    loss_since: float | None = None
    # (first sequence number, loop time) of the last FRAME_TIMES video frames sent.
    frame_times: deque[tuple[int, float]] | None = None

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            # REMB: no encoder to steer on the forwarding path; kept for the host's stats
            # (and the layer selector).
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if self._ssrc in ssrcs:
                self.remb_bitrate = bitrate
                self.remb_at = asyncio.get_running_loop().time()
                self._link_feedback(report=False)
            return
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self._nacked = frozenset(packet.lost)  # what the viewer misses (fillers)
        reported = isinstance(packet, RtcpRrPacket | RtcpSrPacket) and any(
            report.ssrc == self._ssrc for report in packet.reports
        )
        if reported:
            assert isinstance(packet, RtcpRrPacket | RtcpSrPacket)
            self._take_reports(packet.reports)
            for report in packet.reports:
                if report.ssrc == self._ssrc:
                    self._receive_report(report.highest_sequence & 0xFFFF)
                    self._take_lag(report.highest_sequence & 0xFFFF)
        if reported:
            assert isinstance(packet, RtcpRrPacket | RtcpSrPacket)
            self.last_rtt = self._rtt_sample(packet.reports)
        await super()._handle_rtcp_packet(packet)
        if reported:
            assert isinstance(packet, RtcpRrPacket | RtcpSrPacket)
            self._link_feedback(report=True)  # after aiortc's handler updated the RTT
            self._fast_reports = self._video and self._congested()
            if packet.reports[0].ssrc == self._ssrc:
                self._share_reports(packet)

    _sr_times: dict[int, float] | None = None
    _rtt_lsr: int | None = None  # the sender report the last RTT sample answered
    # Loop time each recently retransmitted sequence number was last sent again.
    _resent: dict[int, float] | None = None
    # Bytes of retransmission the stream may still send (RTX_SHARE of every frame sent).
    _rtx_budget: float = 0.0

    def _rtt_sample(self, reports: list[Any]) -> float | None:
        """The RTT this report's block for this sender's stream shows (seconds), from the
        sender report it answers among the last SR_HISTORY sent; None if it answers none, or
        the same one as the last sample."""
        if self._sr_times is None:
            self._sr_times = {}
        lsr: int | None = getattr(self, _SENDER_LSR)
        if lsr is not None and lsr not in self._sr_times:
            self._remember_sr(lsr, getattr(self, _SENDER_LSR_TIME))
        elif (
            lsr is not None
            and self._fast_lsrs is not None
            and lsr in self._fast_lsrs
            and self._sr_times[lsr] != getattr(self, _SENDER_LSR_TIME)
        ):
            # aiortc's loop sent a report with the same timestamps as one of ours (no packet
            # between them): a receiver report naming it may answer either.
            self._sr_times[lsr] = -1.0
        for report in reports:
            if report.ssrc != self._ssrc or self._sr_times.get(report.lsr, -1.0) < 0:
                continue
            if report.lsr == self._rtt_lsr:
                # Another report answering the same sender report (a browser reports with
                # every NACK): the same round trip again, no news about the queue now.
                return None
            self._rtt_lsr = report.lsr
            return time.time() - self._sr_times[report.lsr] - report.dlsr / 65536
        return None

    def _take_reports(self, reports: list[Any]) -> None:
        """The link's loss from a receiver report's blocks: the viewer's streams together
        (they all cross its one link; with its video paused only the audio and the padding
        still say how lossy the link is), each over at least LOSS_WINDOW_S. A browser sends a
        report with every NACK, tens a second on a lossy link, and a block's own fraction
        lost covers only the few packets since the previous one (1 of 2 lost reads 50 %)."""
        now = asyncio.get_running_loop().time()
        if self._loss_marks is None or self._losses is None:
            self._loss_marks, self._losses = {}, {}
        router = getattr(self.transport, "_rtp_router", None)
        for report in reports:
            if router is not None and report.ssrc not in router.senders:
                # A retransmission stream's block (RTX): its few packets, sent into a queue
                # that lost the originals, are no measure of the link.
                continue
            mark = self._loss_marks.get(report.ssrc)
            sent = (getattr(self, _SENDER_PACKET_COUNT), getattr(self, _SENDER_OCTET_COUNT))
            if mark is None or report.highest_sequence < mark[1]:
                self._loss_marks[report.ssrc] = (now, report.highest_sequence, report.packets_lost)
                if report.ssrc == self._ssrc:
                    self._sent_mark = sent
                continue
            since, highest, lost = mark
            if now - since < LOSS_WINDOW_S:
                continue
            expected = report.highest_sequence - highest
            skipped = self._skipped
            if (
                report.ssrc == self._ssrc
                and skipped is not None
                and 0 < (skipped[0] - highest) & 0xFFFF <= expected
            ):
                # The skip is in this window: its numbers were never sent. aiortc's receiver
                # counts them lost, a browser's takes the jump for a restarted stream and
                # counts them neither lost nor received (libwebrtc: a gap over 450): the
                # window cannot say what was lost or delivered. A new one starts here.
                self._skipped = None
                self._loss_marks[report.ssrc] = (
                    now,
                    report.highest_sequence,
                    report.packets_lost,
                )
                self._sent_mark = sent
                continue
            missing = min(max(report.packets_lost - lost, 0), max(expected, 0))
            self._losses[report.ssrc] = (missing, max(expected, 0), now, since)
            self._loss_marks[report.ssrc] = (now, report.highest_sequence, report.packets_lost)
            if report.ssrc == self._ssrc and self._sent_mark is not None:
                # What this stream delivered to the viewer in the window: on a saturated
                # link, the share of it this stream gets (the layer selection's measure of
                # the link when the viewer's estimate has not caught up with it).
                packets = sent[0] - self._sent_mark[0]
                size = (sent[1] - self._sent_mark[1]) / packets if packets > 0 else 0.0
                received = expected - (report.packets_lost - lost)
                window = (
                    max(received, 0) * (size + PACKET_OVERHEAD) * 8,
                    max(packets, 0) * (size + PACKET_OVERHEAD) * 8,
                    now - since,
                )
                # Over this window and the one before: a keyframe's burst sent just before a
                # report is in flight, not missing.
                both = [window] if self._last_window is None else [self._last_window, window]
                seconds = sum(w[2] for w in both)
                self.received_bps = sum(w[0] for w in both) / seconds
                self.sent_bps = sum(w[1] for w in both) / seconds
                self._last_window = window
                self.rates_at = now
                self._sent_mark = sent
        # A stream that stopped (a paused video) leaves the reports: its last window too.
        # The link's loss: all its streams' last windows together (a padding stream's window
        # of 5 packets alone reads 20 % for one packet lost).
        fresh = [w for w in self._losses.values() if now - w[2] <= 3 * LOSS_WINDOW_S]
        expected_all = sum(w[1] for w in fresh)
        self.fraction_lost = sum(w[0] for w in fresh) / expected_all if expected_all else 0.0
        self.loss_since = min((w[3] for w in fresh), default=None)

    def _share_reports(self, packet: RtcpRrPacket | RtcpSrPacket) -> None:
        """A report names only the streams the viewer receives now: the leg's other forwarding
        senders (a video paused for the viewer's link gets no reports of its own, and would
        never learn that the link recovered) take it too, without an RTT sample."""
        router = getattr(self.transport, "_rtp_router", None)
        if router is None:
            return
        named = {report.ssrc for report in packet.reports}
        for ssrc, sender in list(router.senders.items()):
            if ssrc in named or not isinstance(sender, SharedPayloadSender):
                continue
            sender._take_reports(packet.reports)
            sender.last_rtt = None
            sender._link_feedback(report=True)

    def _receive_report(self, highest: int) -> None:
        """Tell the track how far behind the viewer's receiving is (its freezes)."""
        track: Any = self.track
        if track is None or self.frame_times is None:
            return
        track.receive_report(oldest_missing(self.frame_times, highest))

    def _link_feedback(self, report: bool) -> None:
        """Tell the track (a viewer's layer selection) what the viewer's RTCP just said."""
        track: Any = self.track
        if track is None:
            return
        if getattr(track, "forwarding_sender", False) is None:
            track.forwarding_sender = self  # a layered track's (restart_sequence on resume)
        age = None
        if self.remb_at is not None:
            age = asyncio.get_running_loop().time() - self.remb_at
        estimate, loss, _smoothed = self.link()
        if estimate is not None:
            # The viewer's estimate is of its video (only video carries abs-send-time): less
            # what the video's queue took from the others, it is what the video may have.
            estimate = max(int(estimate - self._others_short()), 0)
        track.link_feedback(
            estimate,
            age,
            loss,
            self.last_rtt,
            report,
            self._carried(),
            self.loss_since,
            self.sent_bps,
        )

    def _carried(self) -> float | None:
        """What the viewer's link carried in the last window that this stream could have
        had (bit/s): all its streams received, less what the others sent. A full drop-tail
        queue shares the link by arrival rate, so this stream's own share overstates what it
        could have beside the others (a layer of 340 kbit/s and a voice of 55 kbit/s on a
        150 kbit/s link: 129 kbit/s of video arrive, and the voice loses 60 %; alone beside
        the voice the video would have 95)."""
        own = self.received_bps
        if own is None:
            return None
        return max(own - self._others_short(), 0.0)

    def _others_short(self) -> float:
        """What the viewer's other streams sent in the last window and did not receive
        (bit/s): the link's share this stream took from them."""
        router = getattr(self.transport, "_rtp_router", None)
        if router is None or self.rates_at is None:
            return 0.0
        short = 0.0
        for sender in set(router.senders.values()):
            if sender is self or not isinstance(sender, SharedPayloadSender):
                continue
            if sender.rates_at is None or abs(sender.rates_at - self.rates_at) > 2 * LOSS_WINDOW_S:
                continue  # nothing measured lately (a paused or muted stream sends nothing)
            short += max((sender.sent_bps or 0.0) - (sender.received_bps or 0.0), 0.0)
        return short

    def link(self) -> tuple[int | None, float, float | None]:
        """(REMB estimate in bit/s or None, fraction lost 0-1, RTT in seconds or None)."""
        rtt: float | None = getattr(self, _SENDER_RTT)
        return self.remb_bitrate, self.fraction_lost, rtt

    async def _next_encoded_frame(self, codec: RTCRtpCodecParameters) -> RTCEncodedFrame | None:
        track: Any = self.track
        if getattr(track, "direct_sender", False) is None:
            track.direct_sender = self  # its fan-out may send frames through _send_now
        try:
            frame: RTCEncodedFrame | None = await track.recv_encoded()
        except MediaStreamError:
            # Keep the RTP loop (and this transceiver) alive for a later replaceTrack(): the
            # stock loop would exit and the sender could never send again. With no track,
            # the loop idles (polls every 20 ms) until a new one is set.
            if self.track is track:
                self.replaceTrack(None)
            return None
        if not self._enabled:
            return None
        return frame

    def _send_keyframe(self) -> None:
        # The subscriber's PLI/FIR: the frames are not ours to encode, ask the publisher.
        track: Any = self.track
        if track is not None:
            track.request_keyframe()


def use_shared_payloads(sender: RTCRtpSender) -> SharedPayloadSender:
    """Make a stock sender send pre-packetized frames; its track must be EncodedFrameSource."""
    if type(sender) is not RTCRtpSender and not isinstance(sender, SharedPayloadSender):
        raise AiortcInternalsError(f"cannot convert {type(sender).__name__}")
    if type(sender) is RTCRtpSender and getattr(sender, _SENDER_STARTED):
        # aiortc's own RTP loop is already running: it cannot be replaced any more.
        raise AiortcInternalsError("use_shared_payloads() must run before the sender starts")
    sender.__class__ = SharedPayloadSender
    assert isinstance(sender, SharedPayloadSender)
    return sender


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """The msid stream id the client sees (``event.streams[0].id``), e.g. the publisher's id."""
    # aiortc gives every sender of a peer connection the same random stream id.
    sender._stream_id = stream_id


def route_keyframe_requests(sender: RTCRtpSender, request_keyframe: Callable[[], None]) -> None:
    """A publisher's sender of pre-encoded frames: the server's PLI/FIR (aiortc calls
    ``_send_keyframe``, which only flags its own encoder) goes to ``request_keyframe``, so the
    source that encodes the frames can answer it, as a browser's encoder does."""
    if type(sender) is not RTCRtpSender:
        raise AiortcInternalsError(f"cannot route keyframe requests of {type(sender).__name__}")
    sender._send_keyframe = request_keyframe  # type: ignore[method-assign]
