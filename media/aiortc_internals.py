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
  a subscriber's PLI/FIR) is routed to a callback instead of forcing an encoder keyframe.
* **PLI** — ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)`` addressed to the publisher's media SSRC,
  never its RTX SSRC (the RTX map is the private ``__rtx_ssrc``).

:func:`check_internals` verifies every name used here and runs at import time, so an aiortc
upgrade that moves them fails loudly at startup instead of silently decoding nothing.
"""

from __future__ import annotations

import asyncio
import fractions
import inspect
import threading
from collections.abc import Callable
from typing import Any, Protocol

import aiortc
import av
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import get_encoder
from aiortc.codecs.base import Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTCEncodedFrame

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

    if "self._stream_id" not in inspect.getsource(RTCRtpSender.__init__):
        problems.append("RTCRtpSender.__init__ no longer sets self._stream_id")
    for name in ("_next_encoded_frame", "_send_keyframe", "_run_rtp"):
        if not callable(getattr(RTCRtpSender, name, None)):
            problems.append(f"RTCRtpSender.{name} is missing")
    run_rtp = getattr(RTCRtpSender, "_run_rtp", None)
    if run_rtp is not None and "await self._next_encoded_frame(codec)" not in (
        inspect.getsource(run_rtp)
    ):
        problems.append("RTCRtpSender._run_rtp no longer calls self._next_encoded_frame(codec)")
    for field in ("payloads", "timestamp", "audio_level"):
        if field not in inspect.signature(RTCEncodedFrame.__init__).parameters:
            problems.append(f"RTCEncodedFrame has no {field!r}")
    sender_rtcp_src = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    if "self._send_keyframe()" not in sender_rtcp_src:
        problems.append("RTCRtpSender no longer calls _send_keyframe() on PLI/FIR")

    for cls in (type(get_encoder(_VP8)), type(get_encoder(_H264))):
        if not callable(getattr(cls, "pack", None)):
            problems.append(f"{cls.__name__}.pack is missing")
    if problems:
        raise AiortcInternalsError(
            "aiortc internals used by media/aiortc_internals.py have changed: "
            + "; ".join(problems)
        )


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


class SharedPayloadSender(RTCRtpSender):
    """An RTCRtpSender that sends RTCEncodedFrames produced once per frame for all subscribers.

    Never constructed directly: :func:`use_shared_payloads` swaps the class of the sender the
    peer connection created, so aiortc's own wiring (transport, SSRCs, RTCP) stays untouched.
    Per subscriber only sequence numbers, SSRC, timestamp offset, header extensions and SRTP
    remain (aiortc's ``_run_rtp``).
    """

    async def _next_encoded_frame(self, codec: RTCRtpCodecParameters) -> RTCEncodedFrame | None:
        track: Any = self.track
        try:
            frame: RTCEncodedFrame = await track.recv_encoded()
        except MediaStreamError:
            # Keep the RTP loop (and this transceiver) alive for a later replaceTrack(): the
            # stock loop would exit and the sender could never send again. With no track,
            # aiortc's loop idles (polls every 20 ms) until a new one is set.
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
    sender.__class__ = SharedPayloadSender
    assert isinstance(sender, SharedPayloadSender)
    return sender


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """The msid stream id the client sees (``event.streams[0].id``), e.g. the publisher's id."""
    # aiortc gives every sender of a peer connection the same random stream id.
    sender._stream_id = stream_id


check_internals()
