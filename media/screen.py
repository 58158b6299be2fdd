"""One viewer's screen share: the frame rate its link carries, at full resolution.

A screen shared as one VP8 encoding with temporal layers (``media.temporal``) is a plain
:class:`~media.forwarder.ForwardedTrack`; each viewer gets a :class:`ScreenSubscriberTrack`
that forwards the temporal layers its link carries (full rate, 1/2, 1/4: the selector of a
camera's layers, ``media.layers.LayerSelector``, fed by the viewer's own RTCP through its
forwarding sender, over the steps' measured rates), and pauses the video (audio first) only
when even a quarter of the frame rate does not fit. Frames are never decoded: a frame left
out is simply not queued, the frames after it get picture ids moved back to stay continuous.
A screen without temporal layers (another client, an older browser) is forwarded whole, as
before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from media.forwarder import SubscriberTrack
from media.internals import RTCEncodedFrame
from media.layers import VIDEO_OFF, Feedback, Layer, LayerSelector
from media.temporal import (
    MAX_TEMPORAL_LAYERS,
    TemporalFilter,
    frame_rate_step,
    screen_target,
)

if TYPE_CHECKING:
    from media.forwarder import ForwardedTrack

# A REMB older than this (s) says nothing about the link now (as media.simulcast's).
STALE_ESTIMATE_S = 3.0


class ScreenSubscriberTrack(SubscriberTrack):
    """One viewer's video of a screen share. ``layer`` is the highest temporal layer forwarded
    now (``VIDEO_OFF``: video paused for the viewer's connection); ``on_change(self)`` is
    called when it changes."""

    def __init__(
        self,
        source: ForwardedTrack,
        subscriber_id: str,
        max_frames: int,
        selector: LayerSelector | None = None,
    ) -> None:
        super().__init__(source, subscriber_id, max_frames)
        self._track = source
        self.selector = selector or LayerSelector([Layer(0)] * MAX_TEMPORAL_LAYERS)
        self.filter = TemporalFilter(self.selector.target)
        self.layer = self.selector.target
        self.switches = 0
        # Whether the publisher's frames carry temporal layers (until then: forwarded whole).
        self.temporal = False
        self.on_change: Callable[[ScreenSubscriberTrack], None] | None = None

    @property
    def video_paused(self) -> bool:
        return self.layer == VIDEO_OFF

    @property
    def frame_rate(self) -> str:
        """The share of the publisher's frame rate this viewer receives (``"1/2"``...)."""
        if not self.temporal:
            return "paused" if self.video_paused else "1"
        return frame_rate_step(self.layer, self._track.temporal.highest + 1)

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
        rates = self._track.temporal.rates(now)
        if rates is None or self._track.paused:
            return  # no temporal layers (yet): forwarded whole, as a plain track
        self.selector.set_bitrates(rates)
        fresh = estimate_age is not None and estimate_age <= STALE_ESTIMATE_S
        usable = estimate if fresh and self.layer != VIDEO_OFF else None
        if rtt is not None and rtt < 0:
            rtt = None
        target = self.selector.update(
            Feedback(usable, loss, rtt, report, received, loss_since, sent), now
        )
        if screen_target(target, self.filter.target, self.selector.reason) != target:
            target = self.selector.target = 0  # the base layer first (media.temporal)
        if target != self.filter.target:
            self._retarget(target)

    def _retarget(self, target: int) -> None:
        was_paused = self.filter.target == VIDEO_OFF
        self.filter.retarget(target)
        if target == VIDEO_OFF:
            # Nothing is sent now: not waiting for a keyframe (the track would go on asking
            # the publisher for one, for nobody).
            self.waiting_keyframe = False
            self._set_layer(VIDEO_OFF)
        elif was_paused:
            # Back from a pause: the TL0 frames left out are references of the next ones.
            self.waiting_keyframe = True
            self._track.request_keyframe()
        else:
            self._set_layer(self.filter.current)

    # -- fan-out ----------------------------------------------------------------------------

    def _offer(self, frame: RTCEncodedFrame, size: int, keyframe: bool) -> None:
        layer = self._track.frame_layer
        if layer is not None:
            self.temporal = True
        if not self.filter.admit(layer, keyframe):
            self.stats.frames_thinned += 1
            return
        if self.filter.current != self.layer and not (self.waiting_keyframe and not keyframe):
            self._set_layer(self.filter.current)
        payloads = self.filter.rewrite(frame.payloads)
        if payloads is not frame.payloads:
            frame = RTCEncodedFrame(payloads, frame.timestamp, frame.audio_level)
        super()._offer(frame, size, keyframe)

    def _set_layer(self, index: int) -> None:
        if index == self.layer:
            return
        if index == VIDEO_OFF:
            self.freezes.idle()  # paused for the connection (audio first): no freeze
            self.interrupt()  # its sender pads the paused stream
        elif self.layer != VIDEO_OFF:
            self.switches += 1
        self.layer = index
        self.stats.layer = index
        self.stats.layer_switches = self.switches
        self.selector.switched(asyncio.get_running_loop().time())
        if self.on_change is not None:
            self.on_change(self)

    def _video_sent(self) -> bool:
        return self.layer != VIDEO_OFF and not self._track.paused
