"""Which layer of a published camera a viewer should receive. Pure logic, no I/O, no clock.

A publisher sends its camera in a few qualities (layers, lowest first, each with its bitrate).
Each viewer gets the highest layer its link carries, judged from that viewer's own feedback:
its bandwidth estimate (REMB, or a transport-cc based estimate), the loss it reports and its
RTT. The rules are the ones LiveKit's and mediasoup's allocators follow:

* **Down fast, up slow.** A layer whose bitrate (plus headroom) exceeds the estimate, or a loss
  above ``loss_down``, moves the viewer down at once; moving up needs the estimate to have
  carried the higher layer for ``up_hold`` seconds with low loss (an estimate that recovers
  after a drop overshoots, and a viewer flapping between layers sees a keyframe per flap).
* **Audio first.** A link that cannot carry even the lowest layer gets no video at all
  (:data:`VIDEO_OFF`): the viewer keeps the audio, and the web app says "video paused for your
  connection". Video comes back by the same up rule.
* **Switch on keyframes.** The selector only says which layer is *wanted*; the forwarder keeps
  sending the current layer until a keyframe of the wanted one arrives (and asks for it,
  coalesced), so the viewer's decoder never sees a frame it cannot decode.
* **Screen share keeps its resolution.** Its layers should be the same picture at lower frame
  rates (the publisher's choice when it encodes them): the selector's rules are the same, only
  the layers differ in frames per second, not in pixels, so text stays readable.

Memory: a few floats per viewer and track, whatever the number of layers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

VIDEO_OFF = -1

# Estimates are noisy and a layer's bitrate varies with the picture: keep 15 % spare.
DEFAULT_HEADROOM = 1.15
# Above this loss fraction (RTCP receiver report's fraction lost) a layer is too much.
DEFAULT_LOSS_DOWN = 0.10
# Up only while loss stays below this.
DEFAULT_LOSS_UP = 0.02
# Seconds an estimate must keep carrying a higher layer before the viewer moves up.
DEFAULT_UP_HOLD = 3.0
# Beyond this RTT (seconds) a layer's keyframes take too long to arrive: one layer down.
DEFAULT_RTT_DOWN = 0.8


@dataclass(frozen=True)
class Layer:
    """One quality of a published camera or screen: its expected bitrate in bit/s."""

    bitrate: int
    width: int = 0
    height: int = 0
    fps: float = 0.0


@dataclass(frozen=True)
class Feedback:
    """What a viewer's RTCP said: bandwidth estimate (bit/s; None if it sends none), loss
    fraction (0-1) and round-trip time (seconds; None if unknown)."""

    estimate: float | None
    loss: float = 0.0
    rtt: float | None = None


class LayerSelector:
    """One viewer's choice among the layers of one published track (lowest layer first).

    Feed it every RTCP feedback with the current time (:meth:`update`); :attr:`target` is the
    layer wanted (an index into ``layers``, or :data:`VIDEO_OFF`).
    """

    def __init__(
        self,
        layers: list[Layer],
        *,
        headroom: float = DEFAULT_HEADROOM,
        loss_down: float = DEFAULT_LOSS_DOWN,
        loss_up: float = DEFAULT_LOSS_UP,
        up_hold: float = DEFAULT_UP_HOLD,
        rtt_down: float = DEFAULT_RTT_DOWN,
    ) -> None:
        if not layers:
            raise ValueError("a track needs at least one layer")
        if any(b.bitrate < a.bitrate for a, b in itertools.pairwise(layers)):
            raise ValueError("layers must be ordered lowest bitrate first")
        self.layers = layers
        self.headroom = headroom
        self.loss_down = loss_down
        self.loss_up = loss_up
        self.up_hold = up_hold
        self.rtt_down = rtt_down
        # Start at the lowest layer: a join must show something fast, and a viewer's estimate
        # starts low anyway (REMB ramps up over the first seconds).
        self.target = 0
        self._up_since: float | None = None
        self._up_to: int | None = None

    @property
    def video_paused(self) -> bool:
        """The link cannot carry the lowest layer: audio only."""
        return self.target == VIDEO_OFF

    def fits(self, estimate: float | None) -> int:
        """The highest layer ``estimate`` carries with headroom (VIDEO_OFF if none)."""
        if estimate is None:
            return len(self.layers) - 1
        best = VIDEO_OFF
        for i, layer in enumerate(self.layers):
            if layer.bitrate * self.headroom <= estimate:
                best = i
        return best

    def update(self, feedback: Feedback, now: float) -> int:
        """Take one feedback; returns the (possibly new) target layer."""
        fitting = self.fits(feedback.estimate)
        if feedback.loss > self.loss_down or (
            feedback.rtt is not None and feedback.rtt > self.rtt_down
        ):
            # The link is already overloaded at the current layer: one below it at most.
            fitting = min(fitting, self.target - 1 if self.target >= 0 else VIDEO_OFF)
        if fitting < self.target:
            self.target = max(fitting, VIDEO_OFF)
            self._up_since = self._up_to = None
            return self.target
        if fitting > self.target and feedback.loss <= self.loss_up:
            candidate = self.target + 1  # one step at a time
            if self._up_to != candidate:
                self._up_to, self._up_since = candidate, now
            elif self._up_since is not None and now - self._up_since >= self.up_hold:
                self.target = candidate
                # The hold for the next layer up starts now, if the estimate carries it too.
                if fitting > candidate:
                    self._up_to, self._up_since = candidate + 1, now
                else:
                    self._up_since = self._up_to = None
            return self.target
        self._up_since = self._up_to = None
        return self.target
