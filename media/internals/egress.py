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
from collections import deque
from collections.abc import Callable
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
    RTP_HISTORY_SIZE,
    AnyRtcpPacket,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRrPacket,
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

    async def recv_encoded(self) -> RTCEncodedFrame: ...

    def request_keyframe(self) -> None: ...

    def link_feedback(
        self,
        estimate: int | None,
        estimate_age: float | None,
        loss: float,
        rtt: float | None,
        report: bool,
    ) -> None: ...

    def receive_report(self, oldest_missing: float | None) -> None: ...


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

    def retransmission(self, sequence_number: int, rtx_ssrc: int) -> bytes | None:
        """The packet to answer a NACK of ``sequence_number`` with, from the history.

        RFC 4588 RTX when negotiated, else the packet itself: the same bytes as aiortc's
        ``_retransmit`` (``wrap_rtx`` + ``serialize``) would build. None when too old.
        """
        entry = self.history[sequence_number % len(self.history)]
        if entry is None or entry[0] != sequence_number:
            return None
        _, second_byte, tail, payload = entry
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

    async def _forward(self, codec: RTCRtpCodecParameters) -> None:
        egress = self._egress
        assert egress is not None and egress.payload_type == codec.payloadType
        history = egress.history
        history_size = len(history)
        payload_type = egress.payload_type
        marker_type = 0x80 | payload_type
        head = _RTP_HEAD.pack
        ssrc = self._ssrc
        sequence_number = random_sequence_number()
        timestamp_origin = random32()
        packet_count = getattr(self, _SENDER_PACKET_COUNT)
        octet_count = getattr(self, _SENDER_OCTET_COUNT)
        sink = _DatagramSink()
        loop = asyncio.get_running_loop()
        frame_times: deque[tuple[int, float]] = deque(maxlen=FRAME_TIMES)
        self.frame_times = frame_times
        video = self.kind == "video"
        while True:
            if self.track is None:
                await asyncio.sleep(0.02)  # idle until replaceTrack(), as aiortc's loop
                continue
            frame = await self._next_encoded_frame(codec)
            if frame is None:
                continue
            payloads = frame.payloads
            if not payloads:
                continue

            # Once per frame: one clock read, the bytes after the sequence number.
            ntp = _ntp_now()
            timestamp = (timestamp_origin + frame.timestamp) & 0xFFFFFFFF
            first_byte, tail = egress.frame_header(
                timestamp, ssrc, (ntp >> 14) & 0x00FFFFFF, frame.audio_level
            )
            last = len(payloads) - 1
            if video:
                frame_times.append((sequence_number, loop.time()))

            dtls = self.transport
            if srtp_send.DIRECT_DATAGRAMS and sink.resolve(dtls):
                sent_bytes = sink.send(
                    first_byte, payload_type, sequence_number, tail, payloads, history
                )
                sequence_number = (sequence_number + last + 1) & 0xFFFF
                octet_count += sum(map(len, payloads))
                # RTCDtlsTransport's own counters (its getStats), as _send_rtp keeps them.
                setattr(dtls, _DTLS_TX_BYTES, getattr(dtls, _DTLS_TX_BYTES) + sent_bytes)
                setattr(dtls, _DTLS_TX_PACKETS, getattr(dtls, _DTLS_TX_PACKETS) + last + 1)
            else:
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
                    octet_count += len(payload)
                    sequence_number = (sequence_number + 1) & 0xFFFF

            # What aiortc's RTCP loop puts in the next sender report (and getStats reads).
            packet_count += last + 1
            setattr(self, _SENDER_NTP_TIMESTAMP, ntp)
            setattr(self, _SENDER_RTP_TIMESTAMP, timestamp)
            setattr(self, _SENDER_PACKET_COUNT, packet_count)
            setattr(self, _SENDER_OCTET_COUNT, octet_count)

    async def _retransmit(self, sequence_number: int) -> None:
        """A subscriber's NACK: resend the packet from this loop's history (RTX if negotiated)."""
        egress = self._egress
        if egress is None:
            return
        data = egress.retransmission(sequence_number, self._rtx_ssrc)
        if data is None:
            self.retransmissions_missed += 1  # older than the history: the viewer waits on
            return
        self.retransmissions += 1
        await self.transport._send_rtp(data)

    # What this viewer's RTCP said about its link: REMB estimate (bit/s), the last report's
    # fraction lost (0-1, the worst of its streams'). RTT is aiortc's own (:meth:`link`).
    remb_bitrate: int | None = None
    remb_at: float | None = None
    # NACKed packets resent from this viewer's history, and NACKs of packets no longer in it.
    retransmissions: int = 0
    retransmissions_missed: int = 0
    fraction_lost: float = 0.0
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
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == self._ssrc:
                    # The link's loss: the worst of the viewer's streams in this report (all
                    # of them cross its one link; and with its video paused, only the audio
                    # still says how lossy the link is).
                    self.fraction_lost = max(r.fraction_lost for r in packet.reports) / 256
                    self._receive_report(report.highest_sequence & 0xFFFF)
        await super()._handle_rtcp_packet(packet)
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket) and any(
            report.ssrc == self._ssrc for report in packet.reports
        ):
            self._link_feedback(report=True)  # after aiortc's handler updated the RTT

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
        age = None
        if self.remb_at is not None:
            age = asyncio.get_running_loop().time() - self.remb_at
        estimate, loss, rtt = self.link()
        track.link_feedback(estimate, age, loss, rtt, report)

    def link(self) -> tuple[int | None, float, float | None]:
        """(REMB estimate in bit/s or None, fraction lost 0-1, RTT in seconds or None)."""
        rtt: float | None = getattr(self, _SENDER_RTT)
        return self.remb_bitrate, self.fraction_lost, rtt

    async def _next_encoded_frame(self, codec: RTCRtpCodecParameters) -> RTCEncodedFrame | None:
        track: Any = self.track
        try:
            frame: RTCEncodedFrame = await track.recv_encoded()
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
