"""Fan-out of one published track's encoded frames to its subscribers, without transcoding.

Path of a frame: the publisher's receiver reassembles it and calls
:meth:`ForwardedTrack.on_packet` on the event loop (see ``internals.ingest.IngestQueue``); the
frame is packetized once into RTP payloads and the shared ``RTCEncodedFrame`` is appended to each
subscriber's bounded queue; each subscriber's ``SharedPayloadSender`` takes it from there.

Rules (see docs/media.md):

* A subscriber enters the fan-out when its sender first asks for a frame, never earlier, so it
  never receives a backlog; it then skips frames until a keyframe (video) and one is requested.
* Joins overlap the publisher's keyframe with the viewer's ICE/DTLS set-up: a keyframe is
  requested as soon as a subscriber is created (while its offer/answer and connection are
  still under way), and the track keeps the frames since the latest keyframe (the "join
  GOP") while a join is expected. A subscriber whose sender then asks for its first frame
  starts at that keyframe if it is at most ``JOIN_GOP_MAX_AGE`` old (so at most that much video
  arrives in a burst), else it waits for a fresh one as before.
* A subscriber whose queue is full loses its queue and waits for the next keyframe: a slow
  viewer never slows the publisher or the other viewers.
* Keyframe requests are coalesced (:class:`media.pli.PliCoalescer`) before reaching the publisher.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.freezes import FreezeMeter
from media.internals import Packetizer, RTCEncodedFrame
from media.pli import DEFAULT_PLI_INTERVAL, PliCoalescer
from media.stats import SubscriberStats, TrackStats
from media.temporal import FrameLayer, TemporalRates, with_frame_layer

logger = logging.getLogger(__name__)

# Per-subscriber queue bounds. A 1 Mbit/s 30 fps video frame averages ~4 KB, so 60 frames
# (2 s) cost at most ~250 KB per subscriber; 50 Opus frames (1 s) cost ~10 KB.
DEFAULT_VIDEO_QUEUE_FRAMES = 60
DEFAULT_AUDIO_QUEUE_FRAMES = 50

# Join GOP: keep frames since the latest keyframe for this long after a subscriber was created
# (its connection is being set up), start a joining subscriber at a kept keyframe at most
# JOIN_GOP_MAX_AGE old, and never keep more than JOIN_GOP_MAX_FRAMES (shared frames, so ~4 KB
# each at 1 Mbit/s: at most ~60 KB per track, nothing per subscriber).
JOIN_GOP_WINDOW = 5.0
JOIN_GOP_MAX_AGE = 0.4
JOIN_GOP_MAX_FRAMES = 15

RequestPli = Callable[[], Awaitable[bool]]
# Makes a subscriber of a ForwardedTrack: (track, subscriber id, queue bound in frames).
SubscriberFactory = Callable[["ForwardedTrack", str, int], "SubscriberTrack"]


class TrackSource(Protocol):
    """What a :class:`SubscriberTrack` follows: a :class:`ForwardedTrack`, or a camera in
    layers (``media.simulcast.LayeredTrack``)."""

    id: str
    kind: str
    publisher_id: str
    source: str
    stats: TrackStats
    # The publisher's mute: no frames are forwarded.
    paused: bool

    @property
    def pli_interval(self) -> float: ...

    def request_keyframe(self) -> None: ...

    def _attach(self, subscriber: SubscriberTrack) -> None: ...

    def _detach(self, subscriber: SubscriberTrack) -> None: ...


class SubscriberTrack(MediaStreamTrack):
    """One subscriber's view of a :class:`ForwardedTrack`; add it with ``attach_track``.

    Its sender must be a ``SharedPayloadSender`` (``media.internals``): frames come out
    of :meth:`recv_encoded` already packetized, :meth:`recv` is not supported.
    """

    def __init__(self, source: TrackSource, subscriber_id: str, max_frames: int) -> None:
        super().__init__()
        self.kind = source.kind
        # The msid track id the subscriber sees is the published track's id.
        self._id = source.id
        self.subscriber_id = subscriber_id
        self.stats = SubscriberStats()
        self._source = source
        self._max_frames = max_frames
        self._queue: deque[tuple[RTCEncodedFrame, int]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        # The forwarding sender reading this track (``SharedPayloadSender``, set by it): while
        # it waits for a frame, the fan-out sends a frame in its own call (``_send_now``).
        # False after that failed once: the sender's loop sends everything.
        self.direct_sender: Any = None
        self._joined = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it joined on
        self._last_pli = -math.inf
        self.waiting_keyframe = True
        # This viewer's freezes as the SFU sees them (video only).
        self.freezes = FreezeMeter()

    @property
    def source(self) -> TrackSource:
        return self._source

    async def recv(self) -> av.Packet:
        raise TypeError("SubscriberTrack needs a SharedPayloadSender (use media.attach_track)")

    async def recv_encoded(self) -> RTCEncodedFrame | None:
        """The next shared frame; the first call joins the fan-out. None when
        :meth:`interrupt` was called while it waited (the sender looks at the track again)."""
        if not self._joined:
            self._joined = True
            self._loop = asyncio.get_running_loop()
            self._source._attach(self)
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            # The loop read once (each asyncio.get_running_loop() is a getpid() system call
            # in Python 3.11), here 65 times a second per viewer.
            assert self._loop is not None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            if self._interrupted:
                self._interrupted = False
                return None
        frame, size = self._queue.popleft()
        self._count(frame, size)
        return frame

    def _count(self, frame: RTCEncodedFrame, size: int) -> None:
        packets = len(frame.payloads)
        stats = self.stats
        stats.frames_forwarded += 1
        stats.packets_forwarded += packets
        stats.bytes_forwarded += size
        track_stats = self._source.stats
        track_stats.frames_forwarded += 1
        track_stats.packets_forwarded += packets
        track_stats.bytes_forwarded += size

    def request_keyframe(self) -> None:
        """This subscriber's PLI/FIR (from its SharedPayloadSender): passed on at most once per
        PLI interval per subscriber, so a viewer on a lossy link (whose decoder keeps asking)
        cannot make the publisher send keyframes, which cost every viewer, any faster than the
        coalescer's unanswered rate. While it waits for its first keyframe its own requests are
        redundant (the join already asked, and the retry timer repeats)."""
        self.stats.keyframe_requests += 1
        now = asyncio.get_running_loop().time()
        if self.waiting_keyframe and self._joined:
            return
        if self._joined and self.kind == "video" and self._video_sent():
            self.freezes.decoder_stopped(now)  # its decoder waits for a keyframe from now
        if now - self._last_pli < self._source.pli_interval:
            self.stats.keyframe_requests_throttled += 1
            return
        self._last_pli = now
        self._ask_keyframe()

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
    ) -> None:
        """What this viewer's RTCP just said about its link (from its SharedPayloadSender):
        REMB estimate (bit/s) and its age (s), the last report's fraction lost, RTT (s);
        ``report``: a new receiver report (else a REMB alone); ``received``: the bit rate of
        this stream the viewer received in the last report window, ``loss_since`` when the
        loss's window started (loop time), ``sent`` what this stream sent over the window
        ``received`` was measured over. Only a track in layers acts on it."""

    def receive_report(self, oldest_missing: float | None) -> None:
        """The viewer's receiver report (from its SharedPayloadSender, video): the oldest frame
        it has not received yet was sent at ``oldest_missing`` (loop time; None: none)."""
        if self.readyState != "live":
            return
        if not self._video_sent():
            # Nothing is sent (mute, video paused): a frame lost before is no freeze now.
            self.freezes.idle()
            return
        self.freezes.received(asyncio.get_running_loop().time(), oldest_missing)
        self._freeze_stats()

    def _video_sent(self) -> bool:
        """Frames are meant for this viewer now (not muted; a track in layers: not paused)."""
        return not self._source.paused

    def _freeze_stats(self) -> None:
        stats, freezes = self.stats, self.freezes
        stats.freezes = freezes.count
        stats.freeze_s = round(freezes.duration, 3)

    def _ask_keyframe(self) -> None:
        self._source.request_keyframe()

    def stop(self) -> None:
        if self.readyState == "live":
            self._source._detach(self)
        super().stop()
        self._wake()

    def _offer(self, frame: RTCEncodedFrame, size: int, keyframe: bool) -> None:
        # Hot path: once per frame per subscriber (not per packet).
        if self.waiting_keyframe:
            if not keyframe:
                self.stats.frames_skipped += 1
                return
            self.waiting_keyframe = False
        queue = self._queue
        if len(queue) >= self._max_frames:
            queue.clear()
            self.stats.queue_drops += 1
            self._source.stats.queue_drops += 1
            if not keyframe:
                # Everything queued is gone, so later delta frames are undecodable.
                self.waiting_keyframe = True
                self.freezes.decoder_stopped(asyncio.get_running_loop().time())
                self._ask_keyframe()
                return
        if keyframe and self.kind == "video":
            # (Every audio frame is a keyframe, and an audio decoder is never marked stopped.)
            self.freezes.keyframe_sent(asyncio.get_running_loop().time())
            self._freeze_stats()
        if not queue:
            waiter = self._waiter
            sender = self.direct_sender
            if (
                sender
                and waiter is not None
                and not waiter.done()
                and self._send_now(sender, frame)
            ):
                self._count(frame, size)
                return
        queue.append((frame, size))
        self._wake()

    def _send_now(self, sender: Any, frame: RTCEncodedFrame) -> bool:
        # The sender waits for a frame (its queue is empty): it sends this one in this call.
        try:
            return bool(sender._send_now(self, frame))
        except Exception:
            # Never let one viewer's send break the fan-out to the others: its loop sends.
            logger.exception("sending a frame at once failed; the sender's loop takes over")
            self.direct_sender = False  # not again for this track
            return False

    def _restart_at_keyframe(self) -> None:
        self._queue.clear()
        self.waiting_keyframe = self.kind == "video"
        self.freezes.idle()  # a join, the publisher's mute or resume: no freeze of the link

    _interrupted = False

    def interrupt(self) -> None:
        """Make a waiting :meth:`recv_encoded` return None (e.g. the video was paused: its
        sender then sends padding while it waits)."""
        if self._waiter is not None:
            self._interrupted = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class LegSubscriberTrack(SubscriberTrack):
    """A node-to-node leg's copy of a :class:`ForwardedTrack`: every frame, each with the
    temporal layer the publisher gave it written into its payload descriptors
    (``media.temporal.with_frame_layer``). The next node's ingest reads it back as this node's
    did, so its screen viewers get the temporal layers their links carry, by the same code."""

    def __init__(self, source: ForwardedTrack, subscriber_id: str, max_frames: int) -> None:
        super().__init__(source, subscriber_id, max_frames)
        self._track = source

    def _offer(self, frame: RTCEncodedFrame, size: int, keyframe: bool) -> None:
        layer = self._track.frame_layer
        if layer is not None:
            payloads = with_frame_layer(frame.payloads, layer)
            frame = RTCEncodedFrame(payloads, frame.timestamp, frame.audio_level)
            size = sum(map(len, payloads))
        super()._offer(frame, size, keyframe)


class ForwardedTrack:
    """A published track: ingests encoded frames and fans them out to subscribers."""

    def __init__(
        self,
        kind: str,
        request_pli: RequestPli,
        *,
        track_id: str | None = None,
        publisher_id: str = "",
        source: str = "",
        pli_interval: float = DEFAULT_PLI_INTERVAL,
        queue_frames: int | None = None,
        subscriber: SubscriberFactory | None = None,
    ) -> None:
        self.id = track_id or str(uuid.uuid4())
        self.kind = kind
        self.publisher_id = publisher_id
        self.source = source
        self.stats = TrackStats()
        self.paused = False
        self.ended = False
        self._request_pli = request_pli
        self._pli = PliCoalescer(pli_interval)
        self._pli_timer: asyncio.TimerHandle | None = None
        self._pli_tasks: set[asyncio.Task[None]] = set()
        self._queue_frames = queue_frames or (
            DEFAULT_VIDEO_QUEUE_FRAMES if kind == "video" else DEFAULT_AUDIO_QUEUE_FRAMES
        )
        self._packetizer: Packetizer | None = None
        self._codec_name = ""
        self._subscribers: dict[str, SubscriberTrack] = {}
        # Subscribers whose sender has asked for a frame: the fan-out list.
        self._active: list[SubscriberTrack] = []
        # Join GOP: (frame, size, temporal layer) since the latest keyframe, that keyframe's
        # arrival time, and until when to keep it (a subscriber was created and may soon ask
        # for frames).
        self._gop: list[tuple[RTCEncodedFrame, int, FrameLayer | None]] = []
        self._gop_at = 0.0
        self._gop_until = 0.0
        self.on_ended: Callable[[ForwardedTrack], None] | None = None
        # A screen share's viewers get the temporal layers their link carries (media.screen):
        # each layer's rate, and the temporal layer of the frame being fanned out (or replayed
        # from the join GOP) now (None: it has none).
        self._make_subscriber: SubscriberFactory = subscriber or SubscriberTrack
        self.temporal = TemporalRates()
        self.frame_layer: FrameLayer | None = None

    # -- ingest (called by IngestQueue on the event loop) ------------------------------------

    def on_packet(self, codec: RTCRtpCodecParameters, packet: av.Packet) -> None:
        stats = self.stats
        stats.frames_received += 1
        stats.bytes_received += packet.size
        keyframe = packet.is_keyframe
        if keyframe:
            stats.keyframes_received += 1
            self._pli.keyframe_received()
        # media.internals.ingest: a VP8 frame's temporal layer, if it has one.
        layer = packet.opaque if isinstance(packet.opaque, FrameLayer) else None
        if layer is not None:
            self.temporal.add(layer.tid, packet.size)
        if self.paused:
            stats.frames_paused += 1
            return
        keep = bool(self._gop_until) and self._keep_gop()
        if not self._active and not keep:
            # Nobody listens: do not even packetize.
            return
        if codec.name != self._codec_name:
            self._packetizer = Packetizer(codec)
            self._codec_name = codec.name
        assert self._packetizer is not None
        frame = self._packetizer.pack(packet)
        size = sum(map(len, frame.payloads))
        if keep:
            gop = self._gop
            if keyframe:
                gop.clear()
                self._gop_at = asyncio.get_running_loop().time()
            if gop or keyframe:
                if len(gop) < JOIN_GOP_MAX_FRAMES:
                    gop.append((frame, size, layer))
                else:
                    gop.clear()
        self.frame_layer = layer
        for subscriber in self._active:
            subscriber._offer(frame, size, keyframe)

    def on_end(self) -> None:
        """The publisher's receiver stopped (BYE, disconnect, transceiver stopped)."""
        self.stop()

    # -- subscribers ------------------------------------------------------------------------

    def subscribe(self, subscriber_id: str, whole: bool = False) -> SubscriberTrack:
        """A new track for ``subscriber_id``; it joins the fan-out on its first frame request.
        ``whole``: every frame, whatever the track's subscriber type (a node-to-node leg)."""
        if self.ended:
            raise MediaStreamError("track has ended")
        old = self._subscribers.get(subscriber_id)
        if old is not None:
            old.stop()
        make = LegSubscriberTrack if whole else self._make_subscriber
        subscriber = make(self, subscriber_id, self._queue_frames)
        self._subscribers[subscriber_id] = subscriber
        self.stats.subscribers[subscriber_id] = subscriber.stats
        self.expect_join()
        return subscriber

    def expect_join(self) -> None:
        """A subscriber was just created: its connection takes a while, so have a keyframe
        ready (the join GOP) when its sender asks for the first frame."""
        if self.kind == "video" and not self.paused and not self.ended:
            self._gop_until = asyncio.get_running_loop().time() + JOIN_GOP_WINDOW
            self.request_keyframe()

    def unsubscribe(self, subscriber_id: str) -> None:
        subscriber = self._subscribers.get(subscriber_id)
        if subscriber is not None:
            subscriber.stop()

    @property
    def pli_interval(self) -> float:
        return self._pli.interval

    @property
    def subscriber_ids(self) -> list[str]:
        return list(self._subscribers)

    def _attach(self, subscriber: SubscriberTrack) -> None:
        if subscriber.readyState != "live" or subscriber in self._active:
            return
        subscriber._restart_at_keyframe()
        self._active.append(subscriber)
        gop = self._gop
        if (
            gop
            and not self.paused
            and asyncio.get_running_loop().time() - self._gop_at <= JOIN_GOP_MAX_AGE
        ):
            self.stats.join_gop_starts += 1
            for frame, size, layer in gop:
                self.frame_layer = layer
                subscriber._offer(frame, size, frame is gop[0][0])
            self.frame_layer = None
            return
        self.request_keyframe()

    def _keep_gop(self) -> bool:
        if asyncio.get_running_loop().time() < self._gop_until:
            return True
        self._gop_until = 0.0
        self._gop.clear()
        return False

    def _detach(self, subscriber: SubscriberTrack) -> None:
        if self._subscribers.get(subscriber.subscriber_id) is subscriber:
            del self._subscribers[subscriber.subscriber_id]
        if subscriber in self._active:
            self._active.remove(subscriber)

    # -- mute -------------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop forwarding (mute); subscribers' senders simply get no frames."""
        if self.paused:
            return
        self.paused = True
        self._gop.clear()
        for subscriber in self._active:
            subscriber._restart_at_keyframe()

    def resume(self) -> None:
        """Forward again, starting at a fresh keyframe."""
        if not self.paused:
            return
        self.paused = False
        for subscriber in self._active:
            subscriber._restart_at_keyframe()
        if self._active:
            self.request_keyframe()

    def reference_lost(self) -> None:
        """A frame never arrived (the ingest gave up a hole: ``media.internals.jitter``):
        until the next keyframe every frame refers to what is gone. Each viewer restarts at
        that keyframe, asked for at once (coalesced, and again while one waits) rather than
        getting frames its decoder would draw wrong; the join GOP goes too."""
        if self.kind != "video":
            return
        self._gop.clear()
        for subscriber in self._active:
            subscriber._restart_at_keyframe()
        if self._active:
            self.request_keyframe()

    # -- keyframe requests ------------------------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, coalesced to one PLI per interval."""
        if self.kind != "video" or self.ended:
            return
        self.stats.keyframe_requests += 1
        loop = asyncio.get_running_loop()
        if self._pli.request(loop.time()):
            self._send_pli()
        self._schedule_pli_timer()

    def _schedule_pli_timer(self) -> None:
        if self._pli_timer is not None:
            return
        due = self._pli.next_due()
        if due is None and self._someone_waits():
            # Retry while a subscriber still waits: a PLI can be lost, or sent before the
            # publisher's media SSRC was known.
            due = asyncio.get_running_loop().time() + self._pli.interval
        if due is not None:
            self._pli_timer = asyncio.get_running_loop().call_at(due, self._on_pli_timer)

    def _on_pli_timer(self) -> None:
        self._pli_timer = None
        if self.ended:
            return
        now = asyncio.get_running_loop().time()
        if self._pli.poll(now) or (
            not self._pli.pending and self._someone_waits() and self._pli.request(now)
        ):
            self._send_pli()
        self._schedule_pli_timer()

    def _someone_waits(self) -> bool:
        return not self.paused and any(s.waiting_keyframe for s in self._active)

    def _send_pli(self) -> None:
        task = asyncio.ensure_future(self._do_send_pli())
        self._pli_tasks.add(task)
        task.add_done_callback(self._pli_tasks.discard)

    async def _do_send_pli(self) -> None:
        try:
            if await self._request_pli():
                self.stats.plis_sent += 1
            else:
                self._pli.not_sent()
        except Exception:  # a PLI is best effort; the retry timer covers a failure
            logger.debug("PLI to publisher of %s failed", self.id, exc_info=True)
            self._pli.not_sent()

    # -- end --------------------------------------------------------------------------------

    def stop(self) -> None:
        """End the track for every subscriber (unpublish or publisher gone)."""
        if self.ended:
            return
        self.ended = True
        if self._pli_timer is not None:
            self._pli_timer.cancel()
            self._pli_timer = None
        for subscriber in list(self._subscribers.values()):
            subscriber.stop()
        self._active.clear()
        self._gop.clear()
        if self.on_ended is not None:
            self.on_ended(self)
