"""A camera (or screen) published in several layers, and each viewer's view of it.

The publisher sends the same camera as separate encodings, one m-line (one receiver, one
:class:`~media.forwarder.ForwardedTrack`) per layer, lowest first. A :class:`LayeredTrack`
groups them as one published track; each viewer gets a :class:`LayeredSubscriberTrack` that
forwards ONE layer at a time, the one its link carries (``media.layers.LayerSelector``, fed by
the viewer's own RTCP through its forwarding sender), never decoding anything:

* A viewer is in the fan-out of the layer it receives only (a :class:`_LayerTap` in that
  layer's subscriber list), plus, while switching, of the target layer: per frame it costs what
  plain forwarding costs.
* A switch happens on a keyframe of the target layer (the tap asks for one when it joins,
  coalesced per layer by that layer's PLI coalescer, and repeats while it waits). Until then the
  viewer keeps the current layer, so its decoder never gets a frame it cannot decode.
* Timestamps and VP8 picture ids are rewritten (``media.rewrite``) so the viewer's decoder sees
  one continuous stream; sequence numbers are the forwarding sender's own.
* Audio first: when even the lowest layer does not fit, the viewer leaves every layer (video
  paused, its audio untouched) and comes back by the selector's up rule.

Layer rates are measured on ingest (bytes per second of each layer); a layer that sent nothing
for ``LAYER_IDLE_S`` counts as not sent (a browser drops its top layer when its own uplink is
short).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError

from media.forwarder import (
    DEFAULT_VIDEO_QUEUE_FRAMES,
    ForwardedTrack,
    SubscriberTrack,
)
from media.internals import RTCEncodedFrame
from media.layers import VIDEO_OFF, Feedback, Layer, LayerSelector
from media.rewrite import StreamRewriter
from media.stats import TrackStats

# A REMB older than this (s) says nothing about the link now (a viewer that receives no video
# stops sending one for it).
STALE_ESTIMATE_S = 3.0
# A layer that sent no frame for this long is not sent now.
LAYER_IDLE_S = 2.0
# Rates are measured over windows of at least this long, smoothed (EWMA) over a few windows.
RATE_WINDOW_S = 0.5
_RATE_SMOOTHING = 0.5


class _RateMeter:
    """One layer's measured rate (bit/s) from its ingest counters."""

    def __init__(self, layer: ForwardedTrack) -> None:
        self._layer = layer
        self._bytes = 0
        self._frames = 0
        self._at: float | None = None
        self._frame_at = -math.inf
        self.rate: float | None = None

    def sample(self, now: float) -> float | None:
        stats = self._layer.stats
        if stats.frames_received != self._frames:
            self._frames = stats.frames_received
            self._frame_at = now
        if self._at is None:
            self._at, self._bytes = now, stats.bytes_received
            return None
        if now - self._at >= RATE_WINDOW_S:
            rate = (stats.bytes_received - self._bytes) * 8 / (now - self._at)
            self.rate = (
                rate
                if self.rate is None
                else _RATE_SMOOTHING * rate + (1 - _RATE_SMOOTHING) * self.rate
            )
            self._at, self._bytes = now, stats.bytes_received
        if now - self._frame_at > LAYER_IDLE_S:
            return math.inf
        return self.rate


class LayeredTrack:
    """A published camera/screen in layers (lowest first); quacks like a ForwardedTrack for
    the router and the subscribe leg."""

    def __init__(
        self,
        layers: list[ForwardedTrack],
        *,
        track_id: str | None = None,
        publisher_id: str = "",
        source: str = "",
        queue_frames: int | None = None,
        selector: Callable[[int], LayerSelector] | None = None,
    ) -> None:
        if not layers or any(layer.kind != "video" for layer in layers):
            raise ValueError("layers are video tracks, at least one")
        self.id = track_id or str(uuid.uuid4())
        self.kind = "video"
        self.publisher_id = publisher_id
        self.source = source
        self.layers = layers
        self.stats = TrackStats()
        self.paused = False
        self.ended = False
        self.on_ended: Callable[[LayeredTrack], None] | None = None
        self._queue_frames = queue_frames or DEFAULT_VIDEO_QUEUE_FRAMES
        self._selector = selector or (lambda n: LayerSelector([Layer(0)] * n))
        self._subscribers: dict[str, LayeredSubscriberTrack] = {}
        self._meters = [_RateMeter(layer) for layer in layers]
        self._rates_at = -math.inf
        self._rates: list[float] | None = None
        for layer in layers:
            layer.on_ended = self._on_layer_ended

    # -- subscribers ------------------------------------------------------------------------

    def subscribe(self, subscriber_id: str) -> LayeredSubscriberTrack:
        if self.ended:
            raise MediaStreamError("track has ended")
        old = self._subscribers.get(subscriber_id)
        if old is not None:
            old.stop()
        subscriber = LayeredSubscriberTrack(
            self, subscriber_id, self._queue_frames, self._selector(len(self.layers))
        )
        self._subscribers[subscriber_id] = subscriber
        self.stats.subscribers[subscriber_id] = subscriber.stats
        # Everyone starts on the lowest layer (a join must show something fast).
        self.layers[0].expect_join()
        return subscriber

    def unsubscribe(self, subscriber_id: str) -> None:
        subscriber = self._subscribers.get(subscriber_id)
        if subscriber is not None:
            subscriber.stop()

    @property
    def subscriber_ids(self) -> list[str]:
        return list(self._subscribers)

    @property
    def pli_interval(self) -> float:
        return self.layers[0].pli_interval

    def request_keyframe(self) -> None:
        """Keyframes of every layer (a viewer's own PLI goes to the layer it receives)."""
        for layer in self.layers:
            layer.request_keyframe()

    def _attach(self, subscriber: SubscriberTrack) -> None:
        if isinstance(subscriber, LayeredSubscriberTrack) and subscriber.readyState == "live":
            subscriber._start()

    def _detach(self, subscriber: SubscriberTrack) -> None:
        if self._subscribers.get(subscriber.subscriber_id) is subscriber:
            del self._subscribers[subscriber.subscriber_id]
        if isinstance(subscriber, LayeredSubscriberTrack):
            subscriber._leave_all()

    # -- layer rates ------------------------------------------------------------------------

    def rates(self, now: float) -> list[float] | None:
        """Measured rate of each layer (bit/s; ``inf``: not sent now), None until measured."""
        if now - self._rates_at >= RATE_WINDOW_S / 2:
            self._rates_at = now
            rates = [meter.sample(now) for meter in self._meters]
            self._rates = [r for r in rates if r is not None]
            if len(self._rates) < len(rates):
                self._rates = None
        return self._rates

    # -- mute and end -----------------------------------------------------------------------

    def pause(self) -> None:
        self.paused = True
        for layer in self.layers:
            layer.pause()

    def resume(self) -> None:
        self.paused = False
        for layer in self.layers:
            layer.resume()

    def stop(self) -> None:
        if self.ended:
            return
        self.ended = True
        for subscriber in list(self._subscribers.values()):
            subscriber.stop()
        for layer in self.layers:
            layer.stop()
        if self.on_ended is not None:
            self.on_ended(self)

    def _on_layer_ended(self, _layer: ForwardedTrack) -> None:
        # One layer's m-line ended (publisher gone, or it stopped sending): the camera ends.
        self.stop()


class _LayerTap(SubscriberTrack):
    """A viewer's place in one layer's fan-out; hands keyframe-gated frames to its owner."""

    def __init__(self, layer: ForwardedTrack, owner: LayeredSubscriberTrack, index: int) -> None:
        super().__init__(layer, owner.subscriber_id, 1)
        self.index = index
        self._owner = owner

    def _offer(self, frame: RTCEncodedFrame, size: int, keyframe: bool) -> None:
        if self.waiting_keyframe:
            if not keyframe:
                return
            self.waiting_keyframe = False
        self._owner._from_layer(self.index, frame, size, keyframe)


class LayeredSubscriberTrack(SubscriberTrack):
    """One viewer's video of a :class:`LayeredTrack`: the layer its link carries.

    ``layer`` is the layer forwarded now, ``target`` the one wanted (both ``VIDEO_OFF`` while
    the video is paused for the viewer's connection); ``on_change(self)`` is called when
    ``layer`` changes.
    """

    def __init__(
        self,
        source: LayeredTrack,
        subscriber_id: str,
        max_frames: int,
        selector: LayerSelector,
    ) -> None:
        super().__init__(source, subscriber_id, max_frames)
        self._layered = source
        self.selector = selector
        self.layer = selector.target
        self.target = selector.target
        self.switches = 0
        self.on_change: Callable[[LayeredSubscriberTrack], None] | None = None
        self._taps: dict[int, _LayerTap] = {}
        # Loop time of the last switch to a lower layer, or back from video paused (None:
        # none yet): nothing sent before it is of use to the viewer any more.
        self.switched_down_at: float | None = None
        # The viewer's forwarding sender (set by it, ``SharedPayloadSender``): it skips a
        # jitter buffer's worth of sequence numbers when the video resumes after a pause.
        self.forwarding_sender: Any = None
        self._rewriter = StreamRewriter()
        self.stats.layer = self.layer

    @property
    def video_paused(self) -> bool:
        """Audio only: the viewer's link cannot carry even the lowest layer."""
        return self.layer == VIDEO_OFF

    # -- feedback -> target -----------------------------------------------------------------

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
        if self.readyState != "live" or not self._joined:
            return
        now = asyncio.get_running_loop().time()
        source = self._layered
        rates = source.rates(now)
        if rates is None or source.paused:
            return
        self.selector.set_bitrates(rates)
        fresh = estimate_age is not None and estimate_age <= STALE_ESTIMATE_S
        # Receiving no video, the viewer's estimate only reflects its audio: not evidence.
        usable = estimate if fresh and self.layer != VIDEO_OFF else None
        if rtt is not None and rtt < 0:
            rtt = None  # aiortc's RTT from a report whose delay exceeds the elapsed time
        # The link's queue while the video is paused, from its keep-alive padding.
        sender, lag = self.forwarding_sender, None
        if sender and sender.lag_at is not None and now - sender.lag_at <= STALE_ESTIMATE_S:
            lag = sender.lag
        target = self.selector.update(
            Feedback(usable, loss, rtt, report, received, loss_since, sent, lag), now
        )
        if target != self.target:
            self._retarget(target)

    def _retarget(self, target: int) -> None:
        previous, self.target = self.target, target
        if previous not in (self.layer, target):
            self._leave(previous)  # a pending switch is called off
        if target == VIDEO_OFF:
            self._leave(self.layer)
            # Nothing sent before is of use now: its sender answers a NACK of it with a
            # filler (the header alone), not the packet, into the queue that paused the
            # video (the voice waits behind it).
            self.switched_down_at = asyncio.get_running_loop().time()
            self._set_layer(VIDEO_OFF)
        elif target != self.layer:
            self._join(target)

    # -- fan-out ----------------------------------------------------------------------------

    def _start(self) -> None:
        if self.layer != VIDEO_OFF:
            self._join(self.layer)

    def _join(self, index: int) -> None:
        if index in self._taps:
            return
        tap = _LayerTap(self._layered.layers[index], self, index)
        self._taps[index] = tap
        # Waits for a keyframe and asks for one (or starts at the join GOP, layer 0).
        self._layered.layers[index]._attach(tap)

    def _leave(self, index: int) -> None:
        tap = self._taps.pop(index, None)
        if tap is not None:
            self._layered.layers[index]._detach(tap)

    def _leave_all(self) -> None:
        for index in list(self._taps):
            self._leave(index)

    def _from_layer(self, index: int, frame: RTCEncodedFrame, size: int, keyframe: bool) -> None:
        now = asyncio.get_running_loop().time()
        if index != self.layer:
            if index != self.target or not keyframe:
                return
            # The target layer's keyframe: switch here, the stream continues seamlessly.
            if self.layer != VIDEO_OFF:
                self._leave(self.layer)
            if self.layer == VIDEO_OFF or index < self.layer:
                self.switched_down_at = now  # its sender resends nothing sent before
            if self.layer == VIDEO_OFF and self.forwarding_sender:
                self.forwarding_sender.restart_sequence()  # nothing before is waited for
            self._rewriter.switch(frame, now)
            self._set_layer(index)
            self.selector.switched(now)
        self._offer(self._rewriter.apply(frame, now), size, keyframe)

    def _set_layer(self, index: int) -> None:
        if index == self.layer:
            return
        if self.layer != VIDEO_OFF and index != VIDEO_OFF:
            self.switches += 1
        if index == VIDEO_OFF:
            self.freezes.idle()  # video paused for the connection (audio first): no freeze
            self.interrupt()  # its sender pads the paused stream (media/internals/egress.py)
        self.layer = index
        self.stats.layer = index
        self.stats.layer_switches = self.switches
        if self.on_change is not None:
            self.on_change(self)

    def _video_sent(self) -> bool:
        return self.layer != VIDEO_OFF and not self._layered.paused

    def _ask_keyframe(self) -> None:
        # This viewer's decoder (or its queue overflow) needs a keyframe of what it receives.
        if self.layer != VIDEO_OFF:
            self._layered.layers[self.layer].request_keyframe()

    def stop(self) -> None:
        self._leave_all()
        super().stop()
