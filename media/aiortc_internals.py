"""Every touch of aiortc's private internals, in one place (aiortc pinned to 1.16.0).

The forwarding SFU needs three things aiortc does not offer publicly:

* **Ingest** — the reassembled, still-encoded frames of a remote track. ``RTCRtpReceiver``
  reassembles frames on the event loop (after NACK, RTX and the jitter buffer) and puts
  ``(codec, JitterFrame)`` on the private ``__decoder_queue`` read by a decoder thread. We
  replace that queue, before ``receive()`` starts the thread, with :class:`IngestQueue`: its
  ``put()`` runs on the event loop and hands an ``av.Packet`` to a callback; its ``get()`` blocks
  the (now idle) worker thread until ``put(None)`` stops it. Nothing is decoded.
* **Egress** — ``RTCRtpSender._next_encoded_frame`` is overridden by :class:`SharedPayloadSender`
  (the class of a stock sender is swapped) so the sender takes an ``RTCEncodedFrame`` whose RTP
  payloads were packetized once for all subscribers of a track. Its ``_send_keyframe`` (called on
  a subscriber's PLI/FIR) is routed to a callback instead of forcing an encoder keyframe. Its
  ``_run_rtp`` replaces aiortc's per-packet loop (the per-subscriber cost that matters most):
  headers from precomputed bytes, one clock read per frame, SRTP in place with libsrtp and a
  direct ``sendto`` on the nominated ICE pair, while keeping aiortc's sender-report counters,
  NACK/RTX answers and transport stats in step (the send path reaches into aioice and
  pylibsrtp too; see :func:`_check_send_path`).
* **PLI** — ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)`` addressed to the publisher's media SSRC,
  never its RTX SSRC (the RTX map is the private ``__rtx_ssrc``).

:func:`check_internals` verifies every name used here (and the aiortc code the RTP loop
reproduces) and runs at import time, so an aiortc, aioice or pylibsrtp upgrade that moves them
fails loudly at startup instead of silently decoding nothing or sending something else.
"""

from __future__ import annotations

import asyncio
import fractions
import inspect
import logging
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import aioice.ice
import aiortc
import av
import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCDtlsTransport, RTCIceTransport, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import get_encoder, is_rtx
from aiortc.codecs.base import Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtcrtpsender import RTCEncodedFrame, random_sequence_number
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTP_HISTORY_SIZE,
    AnyRtcpPacket,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
)
from aiortc.utils import random32
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

from media.keyframes import is_keyframe

__all__ = [
    "PINNED_AIORTC_VERSION",
    "AiortcInternalsError",
    "EncodedFrameSource",
    "IngestQueue",
    "Packetizer",
    "RTCEncodedFrame",
    "SharedPayloadSender",
    "check_internals",
    "install_ingest",
    "media_ssrc",
    "send_pli",
    "set_stream_id",
    "use_shared_payloads",
]

PINNED_AIORTC_VERSION = "1.16.0"

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
OPUS_TIME_BASE = fractions.Fraction(1, 48000)

# Name-mangled private attributes of RTCRtpReceiver that this module reads or replaces.
_RECEIVER_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_RECEIVER_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_RECEIVER_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"
_RECEIVER_STARTED = "_RTCRtpReceiver__started"

# Name-mangled private attributes of RTCRtpSender that SharedPayloadSender's RTP loop reads or
# keeps up to date, as aiortc's own _run_rtp does (the RTCP loop and getStats read them).
_SENDER_STARTED = "_RTCRtpSender__started"
_SENDER_RTP_STARTED = "_RTCRtpSender__rtp_started"
_SENDER_RTP_EXITED = "_RTCRtpSender__rtp_exited"
_SENDER_NTP_TIMESTAMP = "_RTCRtpSender__ntp_timestamp"
_SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
_SENDER_PACKET_COUNT = "_RTCRtpSender__packet_count"
_SENDER_OCTET_COUNT = "_RTCRtpSender__octet_count"
_SENDER_SR_COUNTERS = (
    _SENDER_NTP_TIMESTAMP,
    _SENDER_RTP_TIMESTAMP,
    _SENDER_PACKET_COUNT,
    _SENDER_OCTET_COUNT,
)
# RTCDtlsTransport's transmit counters (its getStats), kept as its _send_rtp keeps them.
_DTLS_TX_BYTES = "_RTCDtlsTransport__tx_bytes"
_DTLS_TX_PACKETS = "_RTCDtlsTransport__tx_packets"
# aioice (not pinned by this project, a dependency of aiortc): the nominated pair per component.
_ICE_NOMINATED = "_nominated"
# pylibsrtp (idem): a Session's libsrtp context (``srtp_t *``), and the call its protect() makes.
_SRTP_SESSION = "_srtp"
_srtp_protect = _srtp_lib.srtp_protect
_SRTP_MAX_TRAILER = pylibsrtp.SRTP_MAX_TRAILER_LEN

logger = logging.getLogger(__name__)


class AiortcInternalsError(RuntimeError):
    """aiortc's private internals are not what this module was written against."""


def check_internals() -> None:
    """Raise :class:`AiortcInternalsError` if any private name used here has moved."""
    problems: list[str] = []
    if aiortc.__version__ != PINNED_AIORTC_VERSION:
        problems.append(f"aiortc {aiortc.__version__} installed, {PINNED_AIORTC_VERSION} pinned")

    # Instance attributes exist only after __init__: read them from the constructor's source.
    receiver_init = inspect.getsource(RTCRtpReceiver.__init__)
    for name in ("__decoder_queue", "__decoder_thread", "__rtx_ssrc", "__started"):
        if f"self.{name}" not in receiver_init:
            problems.append(f"RTCRtpReceiver.__init__ no longer sets self.{name}")
    receive_src = inspect.getsource(RTCRtpReceiver.receive)
    if "self.__decoder_queue" not in receive_src or "threading.Thread" not in receive_src:
        problems.append("RTCRtpReceiver.receive() no longer starts a thread on __decoder_queue")
    handle_src = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    if "self.__decoder_queue.put((codec, encoded_frame))" not in handle_src:
        problems.append("RTCRtpReceiver._handle_rtp_packet() no longer puts (codec, frame)")
    stop_src = inspect.getsource(RTCRtpReceiver)
    if "self.__decoder_queue.put(None)" not in stop_src:
        problems.append("RTCRtpReceiver no longer stops its decoder with put(None)")
    send_rtcp_pli = getattr(RTCRtpReceiver, "_send_rtcp_pli", None)
    if not callable(send_rtcp_pli):
        problems.append("RTCRtpReceiver._send_rtcp_pli is missing")
    elif list(inspect.signature(send_rtcp_pli).parameters) != ["self", "media_ssrc"]:
        problems.append("RTCRtpReceiver._send_rtcp_pli(media_ssrc) changed its signature")

    _check_sender(problems)
    _check_send_path(problems)

    for cls in (type(get_encoder(_VP8)), type(get_encoder(_H264))):
        if not callable(getattr(cls, "pack", None)):
            problems.append(f"{cls.__name__}.pack is missing")
    if problems:
        raise AiortcInternalsError(
            "aiortc (or aioice, pylibsrtp) internals used by media/aiortc_internals.py have "
            "changed: " + "; ".join(problems)
        )


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _require(problems: list[str], obj: Any, what: str, *fragments: str) -> None:
    """``obj``'s source must contain every fragment (each is code this module relies on)."""
    source = _source(obj)
    for fragment in fragments:
        if fragment not in source:
            problems.append(f"{what} no longer contains {fragment!r}")


def _check_sender(problems: list[str]) -> None:
    """RTCRtpSender: what SharedPayloadSender overrides, calls, reads and keeps in step."""
    missing = [
        f"RTCRtpSender.{name} is missing"
        for name in (
            "send",
            "stop",
            "replaceTrack",
            "_next_encoded_frame",
            "_send_keyframe",
            "_run_rtp",
            "_run_rtcp",
            "_retransmit",
            "_handle_rtcp_packet",
        )
        if not callable(getattr(RTCRtpSender, name, None))
    ]
    if missing:
        problems.extend(missing)
        return
    _require(
        problems,
        RTCRtpSender.__init__,
        "RTCRtpSender.__init__",
        "self._stream_id =",
        "self._ssrc = random32()",
        "self._rtx_ssrc = random32()",
        "self._enabled = True",
        "self.__started = False",
        "self.__rtp_started = asyncio.Event()",
        "self.__rtp_exited = asyncio.Event()",
        *(f"self.{name.removeprefix('_RTCRtpSender')} = 0" for name in _SENDER_SR_COUNTERS),
    )
    # send() starts our _run_rtp with the first codec, once; stop() waits for its events.
    _require(
        problems,
        RTCRtpSender.send,
        "RTCRtpSender.send",
        "if not self.__started:",
        "self._run_rtp(parameters.codecs[0])",
        "self.__rtp_header_extensions_map.configure(parameters)",
        "self.__mid = parameters.muxId",
        'codec.parameters["apt"] == parameters.codecs[0].payloadType',
        "self.__started = True",
    )
    _require(
        problems,
        RTCRtpSender.stop,
        "RTCRtpSender.stop",
        "self.__rtp_started.wait()",
        "self.__rtp_exited.wait()",
    )
    if list(inspect.signature(RTCRtpSender._run_rtp).parameters) != ["self", "codec"]:
        problems.append("RTCRtpSender._run_rtp(codec) changed its signature")
    # What aiortc's own loop does per packet, and so what ours must do per frame.
    _require(
        problems,
        RTCRtpSender._run_rtp,
        "RTCRtpSender._run_rtp",
        "self.__rtp_started.set()",
        "await self._next_encoded_frame(codec)",
        "uint32_add(timestamp_origin, enc_frame.timestamp)",
        "packet.extensions.abs_send_time = (",
        "clock.current_ntp_time() >> 14",
        "packet.extensions.mid = self.__mid",
        "packet.extensions.audio_level = (False, -enc_frame.audio_level)",
        "packet.marker = (i == len(enc_frame.payloads) - 1) and 1 or 0",
        "packet.serialize(self.__rtp_header_extensions_map)",
        "await self.transport._send_rtp(packet_bytes)",
        "self.__ntp_timestamp = clock.current_ntp_time()",
        "self.__rtp_timestamp = packet.timestamp",
        "self.__octet_count += len(payload)",
        "self.__packet_count += 1",
        "self.__rtp_exited.set()",
    )
    # The RTCP loop reports the counters our loop keeps.
    _require(
        problems,
        RTCRtpSender._run_rtcp,
        "RTCRtpSender._run_rtcp",
        "ntp_timestamp=self.__ntp_timestamp",
        "rtp_timestamp=self.__rtp_timestamp",
        "packet_count=self.__packet_count",
        "octet_count=self.__octet_count",
    )
    _require(
        problems,
        RTCRtpSender._handle_rtcp_packet,
        "RTCRtpSender._handle_rtcp_packet",
        "self._send_keyframe()",
        "await self._retransmit(seq)",
    )
    _require(
        problems,
        RTCRtpSender._retransmit,
        "RTCRtpSender._retransmit",
        "wrap_rtx(",
        "ssrc=self._rtx_ssrc",
    )
    for field in ("payloads", "timestamp", "audio_level"):
        if field not in inspect.signature(RTCEncodedFrame.__init__).parameters:
            problems.append(f"RTCEncodedFrame has no {field!r}")
    for field in ("mid", "abs_send_time", "audio_level"):
        if not hasattr(HeaderExtensions(), field):
            problems.append(f"aiortc.rtp.HeaderExtensions has no {field!r}")
    if RTP_HISTORY_SIZE != 128:
        problems.append(f"aiortc.rtp.RTP_HISTORY_SIZE is {RTP_HISTORY_SIZE}, not 128")


def _check_send_path(problems: list[str]) -> None:
    """The layers under RTCDtlsTransport._send_rtp that the direct datagram path skips."""
    _require(
        problems,
        RTCDtlsTransport.__init__,
        "RTCDtlsTransport.__init__",
        "self._tx_srtp: Session = None",
        "self.__tx_bytes = 0",
        "self.__tx_packets = 0",
    )
    _require(
        problems,
        RTCDtlsTransport._setup_srtp,
        "RTCDtlsTransport._setup_srtp",
        "self._tx_srtp = Session(tx_policy)",
    )
    _require(
        problems,
        RTCDtlsTransport._send_rtp,
        "RTCDtlsTransport._send_rtp",
        "if self._state != State.CONNECTED:",
        "data = self._tx_srtp.protect(data)",
        "await self.transport._send(data)",
        "self.__tx_bytes += len(data)",
        "self.__tx_packets += 1",
    )
    _require(
        problems,
        RTCDtlsTransport._set_state,
        "RTCDtlsTransport._set_state",
        "self._state = state",
    )
    _require(
        problems,
        RTCIceTransport.__init__,
        "RTCIceTransport.__init__",
        "self._connection = gatherer._connection",
        "self._send = self._connection.send",
    )
    connection = aioice.ice.Connection
    _require(problems, connection.__init__, "aioice Connection.__init__", "self._nominated")
    _require(problems, connection.send, "aioice Connection.send", "await self.sendto(data, 1)")
    _require(
        problems,
        connection.sendto,
        "aioice Connection.sendto",
        "active_pair = self._nominated.get(component)",
        "await active_pair.protocol.send_data(data, active_pair.remote_addr)",
    )
    _require(
        problems,
        StunProtocol.send_data,
        "aioice StunProtocol.send_data",
        "self.transport.sendto(data, addr)",
    )
    _require(
        problems,
        aioice.ice.CandidatePair,
        "aioice CandidatePair",
        "self.protocol = protocol",
        "def remote_addr(self)",
    )
    _require(
        problems,
        StunProtocol.connection_made,
        "aioice StunProtocol.connection_made",
        "self.transport = ",
    )
    # pylibsrtp: the libsrtp context and call behind Session.protect().
    _require(
        problems,
        pylibsrtp.Session.__init__,
        "pylibsrtp Session.__init__",
        "self._srtp = ffi.gc(srtp,",
    )
    _require(
        problems,
        pylibsrtp.Session.protect,
        "pylibsrtp Session.protect",
        "self.__process(packet, lib.srtp_protect, SRTP_MAX_TRAILER_LEN)",
    )
    _require(
        problems,
        getattr(pylibsrtp.Session, "_Session__process", None),
        "pylibsrtp Session.__process",
        "_srtp_assert(func(self._srtp[0], self._cdata, len_p))",
        "return self._buffer[0 : len_p[0]]",
    )
    signature = _srtp_ffi.getctype(_srtp_ffi.typeof(_srtp_protect))
    if signature != "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)":
        problems.append(f"libsrtp srtp_protect is now {signature}")
    if not isinstance(getattr(pylibsrtp, "ERRORS", None), list):
        problems.append("pylibsrtp.ERRORS is missing")


_VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
_H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=97)


# --------------------------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------------------------

PacketCallback = Callable[[RTCRtpCodecParameters, av.Packet], None]


class IngestQueue:
    """Stands in for a receiver's decoder queue: frames go to a callback, never to a decoder.

    ``put()`` is called by ``RTCRtpReceiver._handle_rtp_packet`` on the event loop, so the
    callback runs there too (no thread hop, no backlog). The receiver's worker thread still
    starts and blocks in ``get()`` until ``put(None)``, which is how aiortc stops it.
    """

    def __init__(self, kind: str, on_packet: PacketCallback, on_end: Callable[[], None]) -> None:
        self._time_base = VIDEO_TIME_BASE if kind == "video" else OPUS_TIME_BASE
        self._on_packet = on_packet
        self._on_end = on_end
        self._stopped = threading.Event()
        self._loop = asyncio.get_event_loop()

    def put(self, item: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        if item is None:
            # Called on the loop by __stop_decoder (BYE, disconnect, stop); wake the thread.
            self._stopped.set()
            self._loop.call_soon_threadsafe(self._on_end)
            return
        codec, frame = item
        packet = av.Packet(frame.data)
        # The receiver already maps RTP timestamps to start at 0 (TimestampMapper).
        packet.pts = frame.timestamp
        packet.time_base = self._time_base
        packet.is_keyframe = is_keyframe(codec.name, frame.data)
        self._on_packet(codec, packet)

    def get(self) -> None:
        self._stopped.wait()
        return None


def install_ingest(
    receiver: RTCRtpReceiver, on_packet: PacketCallback, on_end: Callable[[], None]
) -> IngestQueue:
    """Route a receiver's encoded frames to ``on_packet(codec, packet)``.

    Call inside the peer connection's ``track`` event, before ``receive()`` starts the worker.
    """
    if getattr(receiver, _RECEIVER_STARTED) or getattr(receiver, _RECEIVER_DECODER_THREAD):
        raise AiortcInternalsError("install_ingest() must run before the receiver starts")
    track = receiver.track
    if track is None:
        raise AiortcInternalsError("receiver has no remote track yet")
    ingest = IngestQueue(track.kind, on_packet, on_end)
    setattr(receiver, _RECEIVER_DECODER_QUEUE, ingest)
    return ingest


def media_ssrc(receiver: RTCRtpReceiver) -> int | None:
    """The publisher's media SSRC: the most recent active source that is not an RTX SSRC."""
    rtx_ssrcs: dict[int, int] = getattr(receiver, _RECEIVER_RTX_SSRC)
    sources = [s for s in receiver.getSynchronizationSources() if s.source not in rtx_ssrcs]
    if sources:
        return max(sources, key=lambda s: s.timestamp).source
    # Before any media packet, the negotiated RTX map still names the media SSRCs.
    return next(iter(rtx_ssrcs.values()), None)


async def send_pli(receiver: RTCRtpReceiver) -> bool:
    """Ask the publisher for a keyframe; False if its media SSRC is not known yet."""
    ssrc = media_ssrc(receiver)
    if ssrc is None:
        return False
    await receiver._send_rtcp_pli(ssrc)
    return True


# --------------------------------------------------------------------------------------------
# Egress
# --------------------------------------------------------------------------------------------


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


_RTP_HEAD = struct.Struct("!BBH")  # V/P/X/CC, M/PT, sequence number
_RTP_TAIL = struct.Struct("!LL")  # timestamp, SSRC
_RTX_HEAD = struct.Struct("!BBH4sL")
_EXTENSION_HEADER = struct.Struct("!HH")
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_DTLS_CONNECTED = DtlsState.CONNECTED

# Send each frame's packets straight to the UDP transport of the nominated ICE pair (no
# coroutine chain per packet) when that pair is a plain UDP pair; False sends every packet
# through aiortc's RTCDtlsTransport._send_rtp instead.
DIRECT_DATAGRAMS = True


def _ntp_now() -> int:
    """NTP time (32.32 fixed point) as aiortc's ``clock.current_ntp_time()``, from one read."""
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return ((seconds + _NTP_EPOCH_OFFSET) << 32) | ((nanoseconds << 32) // 1_000_000_000)


class _PacketBuffer:
    """Scratch memory where each packet is built and SRTP-protected in place (one per thread:
    an event loop sends one frame at a time, synchronously)."""

    def __init__(self) -> None:
        self.length = _srtp_ffi.new("int *")
        self.grow(4096)

    def grow(self, size: int) -> None:
        self.size = size
        self.cdata = _srtp_ffi.new("char[]", size)
        self.buffer = _srtp_ffi.buffer(self.cdata)


_THREAD = threading.local()


def _packet_buffer() -> _PacketBuffer:
    try:
        packet: _PacketBuffer = _THREAD.packet
    except AttributeError:
        packet = _THREAD.packet = _PacketBuffer()
    return packet


class _DatagramSink:
    """Where one sender's packets go: SRTP and the nominated UDP pair, resolved per frame.

    Does what ``RTCDtlsTransport._send_rtp`` -> ``Connection.send`` -> ``sendto`` ->
    ``StunProtocol.send_data`` does for each RTP packet, without a coroutine per layer: each
    packet is built in one buffer and protected there by libsrtp's ``srtp_protect`` on the
    transport's own SRTP session (the call pylibsrtp's ``Session.protect`` makes, without its
    per-call allocation and copies), then goes to the pair's UDP transport with ``sendto``.

    The resolution is cached while the DTLS transport, its SRTP session and the nominated pair
    stay the same (a pair does not change after nomination in aioice).
    """

    __slots__ = ("addr", "direct", "dtls", "pair", "session", "srtp", "transport")

    def __init__(self) -> None:
        self.dtls: Any = None
        self.pair: Any = None
        self.direct = False
        self.session: pylibsrtp.Session | None = None  # owns the libsrtp context in srtp
        self.srtp: Any = None
        self.transport: Any = None
        self.addr: Any = None

    def resolve(self, dtls: RTCDtlsTransport) -> bool:
        """True if packets can go straight to the UDP transport; raises ConnectionError."""
        if dtls._state is not _DTLS_CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        pair = getattr(dtls.transport._connection, _ICE_NOMINATED).get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        if pair is not self.pair or dtls is not self.dtls or dtls._tx_srtp is not self.session:
            protocol = pair.protocol
            # A relayed (TURN) pair's send_data may wait for a channel binding: not direct.
            self.direct = type(protocol) is StunProtocol
            # Keep the Session referenced: it frees the libsrtp context when collected.
            self.session = dtls._tx_srtp
            if self.direct:
                self.srtp = getattr(self.session, _SRTP_SESSION)[0]
                self.transport = protocol.transport
                self.addr = pair.remote_addr
            self.pair, self.dtls = pair, dtls
        return self.direct

    def send(
        self,
        first_byte: int,
        payload_type: int,
        sequence_number: int,
        tail: bytes,
        payloads: list[bytes],
        history: list[Any],
    ) -> int:
        """Build, protect and send one frame's packets; returns the bytes sent (SRTP)."""
        packet = _packet_buffer()
        head_length = 4 + len(tail)
        needed = head_length + max(map(len, payloads)) + _SRTP_MAX_TRAILER
        if needed > packet.size:
            packet.grow(needed)
        cdata, buffer, length = packet.cdata, packet.buffer, packet.length
        pack_head = _RTP_HEAD.pack_into
        protect, srtp = _srtp_protect, self.srtp
        sendto, addr = self.transport.sendto, self.addr
        history_size = len(history)
        last = len(payloads) - 1
        marker_type = 0x80 | payload_type
        sent = 0
        for i, payload in enumerate(payloads):
            second_byte = marker_type if i == last else payload_type
            pack_head(buffer, 0, first_byte, second_byte, sequence_number)
            buffer[4:head_length] = tail
            end = head_length + len(payload)
            buffer[head_length:end] = payload
            length[0] = end
            status = protect(srtp, cdata, length)
            if status:
                raise pylibsrtp.Error(pylibsrtp.ERRORS[status])
            history[sequence_number % history_size] = (
                sequence_number,
                second_byte,
                tail,
                payload,
            )
            data = buffer[0 : length[0]]  # bytes: the transport may queue it
            sendto(data, addr)
            sent += len(data)
            sequence_number = (sequence_number + 1) & 0xFFFF
        return sent


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

            dtls = self.transport
            if DIRECT_DATAGRAMS and sink.resolve(dtls):
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
        if data is not None:
            await self.transport._send_rtp(data)

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            return  # REMB: there is no encoder to steer on the forwarding path
        await super()._handle_rtcp_packet(packet)

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


check_internals()
