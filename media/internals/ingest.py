"""Ingest: a publisher's reassembled, still-encoded frames, never decoded; and its PLI.

``RTCRtpReceiver`` reassembles frames on the event loop (after NACK, RTX and the jitter buffer)
and puts ``(codec, JitterFrame)`` on the private ``__decoder_queue`` read by a decoder thread.
:func:`install_ingest` replaces that queue, before ``receive()`` starts the thread, with
:class:`IngestQueue`: its ``put()`` runs on the event loop and hands an ``av.Packet`` to a
callback; its ``get()`` blocks the (now idle) worker thread until ``put(None)`` stops it. It
also replaces the private ``__jitter_buffer`` with a :class:`~media.internals.jitter
.ReleasingJitterBuffer` (a frame leaves when it is complete, not when the next one starts) and
maps the timestamps of the further frames one packet completed with the receiver's private
``__timestamp_mapper``, as the receiver does for the first; and a video receiver's private
``__nack_generator`` with a :class:`~media.internals.nack.RetryingNackGenerator` (a packet
still missing is NACKed again, not only when another goes missing).
:func:`send_pli` calls ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)`` addressed to the
publisher's media SSRC, never its RTX SSRC (the RTX map is the private ``__rtx_ssrc``).
:func:`install_audio_level` reads each audio packet's ssrc-audio-level header extension (RFC
6464) before the receiver handles it (an instance attribute over ``_handle_rtp_packet``, the
method ``RTCDtlsTransport._handle_rtp_data`` awaits for every routed packet).
:func:`share_bandwidth_estimate` gives the video receivers of one peer connection one
receive-side bandwidth estimator (the private ``__remote_bitrate_estimator``).
:func:`route_rtx` lets the DTLS transport's RTP router (private ``_rtp_router``) route each
receiver's RTX packets by their SSRC: aiortc registers only the media SSRCs and routes an
unknown SSRC by payload type, so with a camera in layers (several video m-lines sharing the RTX
payload type) the publisher's retransmissions reached no receiver and NACK repaired nothing.
:func:`receive_counts` reads the packets a receiver got per SSRC (private ``__remote_streams``).
"""

from __future__ import annotations

import asyncio
import fractions
import threading
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import TimestampMapper
from aiortc.rtp import RtpPacket

from media.internals.base import AiortcInternalsError
from media.internals.jitter import ReleasedFrame, ReleasingJitterBuffer
from media.internals.nack import retry_nacks
from media.keyframes import is_keyframe
from media.temporal import frame_layer

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
OPUS_TIME_BASE = fractions.Fraction(1, 48000)

# Name-mangled private attributes of RTCRtpReceiver that this module reads or replaces.
_RECEIVER_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_RECEIVER_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_RECEIVER_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"
_RECEIVER_STARTED = "_RTCRtpReceiver__started"
_RECEIVER_BITRATE_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
_RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_RECEIVER_TIMESTAMP_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
_RECEIVER_REMOTE_STREAMS = "_RTCRtpReceiver__remote_streams"
_ROUTES_RTX = "_homeroom_routes_rtx"  # set on a transport's router once route_rtx wrapped it

PacketCallback = Callable[[RTCRtpCodecParameters, av.Packet], None]


class IngestQueue:
    """Stands in for a receiver's decoder queue: frames go to a callback, never to a decoder.

    ``put()`` is called by ``RTCRtpReceiver._handle_rtp_packet`` on the event loop, so the
    callback runs there too (no thread hop, no backlog). The receiver's worker thread still
    starts and blocks in ``get()`` until ``put(None)``, which is how aiortc stops it.
    """

    def __init__(
        self,
        kind: str,
        on_packet: PacketCallback,
        on_end: Callable[[], None],
        *,
        frames: ReleasingJitterBuffer | None = None,
        timestamps: TimestampMapper | None = None,
        on_gap: Callable[[], None] | None = None,
    ) -> None:
        self._time_base = VIDEO_TIME_BASE if kind == "video" else OPUS_TIME_BASE
        self._on_packet = on_packet
        self._on_end = on_end
        self._stopped = threading.Event()
        self._loop = asyncio.get_event_loop()
        # The receiver's jitter buffer and timestamp mapper (install_ingest): further frames
        # completed by the packet that completed the one put() gets.
        self._frames = frames
        self._timestamps = timestamps
        # Called before the first frame after a hole the jitter buffer gave up (its
        # reference is lost), and the count of those seen.
        self._on_gap = on_gap
        self._gaps = 0

    def put(self, item: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        if item is None:
            # Called on the loop by __stop_decoder (BYE, disconnect, stop); wake the thread.
            self._stopped.set()
            self._loop.call_soon_threadsafe(self._on_end)
            return
        codec, frame = item
        if self._frames is not None and self._frames.holes_skipped != self._gaps:
            self._gaps = self._frames.holes_skipped
            if self._on_gap is not None:
                self._on_gap()
        self._forward(codec, frame)
        if self._frames is not None and self._timestamps is not None:
            for more in self._frames.take_ready():
                more.timestamp = self._timestamps.map(more.timestamp)
                self._forward(codec, more)

    def _forward(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        packet = av.Packet(frame.data)
        # The receiver already maps RTP timestamps to start at 0 (TimestampMapper).
        packet.pts = frame.timestamp
        packet.time_base = self._time_base
        packet.is_keyframe = is_keyframe(codec.name, frame.data)
        if codec.name == "VP8" and isinstance(frame, ReleasedFrame):
            # Its temporal layer (None without one), read from the payload descriptor the
            # depacketizer strips (media.temporal).
            packet.opaque = frame_layer(frame.first_payload)
        self._on_packet(codec, packet)

    def get(self) -> None:
        self._stopped.wait()
        return None


def install_ingest(
    receiver: RTCRtpReceiver,
    on_packet: PacketCallback,
    on_end: Callable[[], None],
    on_gap: Callable[[], None] | None = None,
) -> IngestQueue:
    """Route a receiver's encoded frames to ``on_packet(codec, packet)``, each as soon as it is
    complete; ``on_gap()`` before the first frame after a hole that was given up (a lost frame:
    the next ones refer to it).

    Call inside the peer connection's ``track`` event, before ``receive()`` starts the worker
    (no packet has reached the jitter buffer yet).
    """
    if getattr(receiver, _RECEIVER_STARTED) or getattr(receiver, _RECEIVER_DECODER_THREAD):
        raise AiortcInternalsError("install_ingest() must run before the receiver starts")
    track = receiver.track
    if track is None:
        raise AiortcInternalsError("receiver has no remote track yet")
    stock = getattr(receiver, _RECEIVER_JITTER_BUFFER)
    frames = ReleasingJitterBuffer(stock.capacity, is_video=track.kind == "video")
    ingest = IngestQueue(
        track.kind,
        on_packet,
        on_end,
        frames=frames,
        timestamps=getattr(receiver, _RECEIVER_TIMESTAMP_MAPPER),
        on_gap=on_gap,
    )
    setattr(receiver, _RECEIVER_JITTER_BUFFER, frames)
    setattr(receiver, _RECEIVER_DECODER_QUEUE, ingest)
    retry_nacks(receiver)
    route_rtx(receiver)
    return ingest


def route_rtx(receiver: RTCRtpReceiver) -> None:
    """Route the RTX packets of every receiver of ``receiver``'s transport to that receiver.

    aiortc's ``RtpRouter.route_rtp`` knows the media SSRC of each m-line (from the remote
    description's ``a=ssrc`` lines) but not its RTX SSRC, which only the receiver's private
    ``__rtx_ssrc`` map holds (set by ``receive()``, once connected). A packet of an unknown
    SSRC goes to the one receiver of its payload type, or nowhere if several share it: with
    a camera in layers on three video m-lines (one RTX payload type) every retransmission
    the publisher sent was dropped before any receiver, so a lost packet was never repaired
    (its frame and the ones after it were held until the jitter buffer gave up and asked for
    a keyframe). Wrapped on the router instance, once per transport: a packet of an SSRC the
    router does not know first adds every receiver's RTX SSRCs to the router's SSRC table
    (``ssrc_table``); aiortc's routing then finds the receiver, which unwraps the packet.
    """
    router = receiver.transport._rtp_router
    if getattr(router, _ROUTES_RTX, False):
        return
    route: Callable[[RtpPacket], Any] = router.route_rtp
    table: dict[int, Any] = router.ssrc_table

    def route_rtp(packet: RtpPacket) -> Any:
        if packet.ssrc not in table:
            for known in list(router.receivers):
                for rtx_ssrc in getattr(known, _RECEIVER_RTX_SSRC, {}):
                    table.setdefault(rtx_ssrc, known)
        return route(packet)

    setattr(router, "route_rtp", route_rtp)  # noqa: B010 (an instance's)
    setattr(router, _ROUTES_RTX, True)


def receive_counts(receiver: RTCRtpReceiver) -> dict[str, int]:
    """Packets ``receiver`` handled: ``media`` (its media SSRCs) and ``rtx`` (retransmissions
    and padding on its RTX SSRCs), from aiortc's per-SSRC receive statistics."""
    rtx_ssrcs: dict[int, int] = getattr(receiver, _RECEIVER_RTX_SSRC)
    streams: dict[int, Any] = getattr(receiver, _RECEIVER_REMOTE_STREAMS)
    counts = {"media": 0, "rtx": 0}
    for ssrc, stream in list(streams.items()):
        counts["rtx" if ssrc in rtx_ssrcs else "media"] += stream.packets_received
    return counts


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


AudioLevelCallback = Callable[[float, bool, int], None]


def install_audio_level(receiver: RTCRtpReceiver, on_level: AudioLevelCallback) -> None:
    """Call ``on_level(loop time, voice, -dBov)`` for every RTP packet of ``receiver`` that
    carries the ssrc-audio-level extension (RFC 6464), before aiortc handles the packet.

    aiortc parses the extension into ``packet.extensions.audio_level`` when it was negotiated
    (``(voice, level)``) and otherwise leaves it None; only the receiver given is wrapped.
    """
    handle: Callable[..., Any] = receiver._handle_rtp_packet
    loop = asyncio.get_event_loop()

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        level = packet.extensions.audio_level
        if level is not None:
            on_level(loop.time(), level[0], level[1])
        await handle(packet, arrival_time_ms)

    setattr(receiver, "_handle_rtp_packet", handle_rtp_packet)  # noqa: B010 (an instance's)


def share_bandwidth_estimate(receiver: RTCRtpReceiver, first: RTCRtpReceiver) -> None:
    """Make ``receiver`` feed (and send REMB from) ``first``'s bandwidth estimator.

    aiortc gives every video receiver an estimator of its own, and each sends REMB with what
    its own stream alone can carry (at most 1.5x that stream's rate + 10 kbit/s). A browser
    takes every REMB as the estimate of its whole connection, so a publisher sending a camera
    in three layers on three m-lines is told it can send about one layer's rate in all: its
    layers starve each other and fall to the encoder's floor (Chromium 156: 30 kbit/s each,
    seen in tests/live/shaped_scenario.py). One estimator over every stream of the connection,
    as libwebrtc's receiver has (abs-send-time is one clock per sending connection), gives one
    estimate for all of them, with every SSRC in the REMB.
    """
    if receiver is first:
        return
    shared = getattr(first, _RECEIVER_BITRATE_ESTIMATOR)
    if shared is None or getattr(receiver, _RECEIVER_BITRATE_ESTIMATOR) is None:
        return  # audio receivers have none
    setattr(receiver, _RECEIVER_BITRATE_ESTIMATOR, shared)
