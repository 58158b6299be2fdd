"""Which layer of a published camera a viewer should receive. Pure logic, no I/O, no clock.

A publisher sends its camera in a few qualities (layers, lowest first, each with its bitrate).
Each viewer gets the highest layer its link carries, judged from that viewer's own feedback:
its bandwidth estimate (REMB, or a transport-cc based estimate), the loss it reports and its
RTT. The rules are the ones LiveKit's and mediasoup's allocators follow:

* **Down fast, up slow.** A falling estimate (the receiver's delay-based estimator saw
  overuse: its estimate is then about what the link carries) moves the viewer down at once to
  the highest layer that fits it with headroom; a loss above ``loss_down`` or an RTT above
  ``rtt_down`` moves it one layer down. An estimate that is merely low is no reason to move:
  it only ramps up slowly after each switch up, towards what the viewer receives. Moving up
  needs ``up_hold`` seconds without a falling estimate and with loss under ``loss_up``.
  Once moved down, a link is judged by what it delivers: an estimate that falls while
  everything arrives is a dip, held until a report shows congestion (``DIP_*``); a full link
  that delivers too little for the layer moved to takes the next step half a second after
  the switch (``NEXT_STEP_*``); the loss and queue of the layer left's queue draining are
  not the new layer's.
* **Audio first.** A link that cannot carry even the lowest layer gets no video at all
  (:data:`VIDEO_OFF`): the viewer keeps the audio, and the web app says "video paused for your
  connection". Video comes back by the same up rule, once the queue that paused it has
  drained (``Feedback.lag``, measured with the paused video's keep-alive padding): a drop-tail
  queue full of video drains only at what the voice leaves of the link, and dropped the
  voice's packets for seconds more when the lowest layer was tried into it.
* **Switch on keyframes.** The selector only says which layer is *wanted*; the forwarder keeps
  sending the current layer until a keyframe of the wanted one arrives (and asks for it,
  coalesced), so the viewer's decoder never sees a frame it cannot decode.
* **Probe up by switching.** A receiver's estimate cannot exceed what it receives by much
  (libwebrtc's and aiortc's AIMD cap it at 1.5x the incoming rate + 10 kbit/s), so it can never
  show room for a layer twice the current one: moving up is a probe (one layer at a time). A
  move up that is undone within ``probe_window`` doubles the hold before the next try (up to
  ``max_up_hold``): a link that cannot carry the higher layer is probed less and less often,
  and a probe that holds brings the hold back to ``up_hold``. After congestion moved the
  viewer down the first probe waits at least ``congestion_hold`` (a failed probe is a freeze);
  with video paused at most ``max_off_hold`` (the lowest layer is cheap to try, and it is the
  only way to see the link recover). Without an estimate (the caller
  passes None for a stale one: a viewer that receives no video sends none) loss and RTT
  decide.
* **Screen share keeps its resolution.** Its layers are the steps of its VP8 temporal layers
  (full, 1/2, 1/4 of the frame rate, all at full size: ``media.temporal``); the selector's
  rules are the same, only the layers differ in frames per second, not in pixels.

Memory: a few floats per viewer and track, whatever the number of layers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

VIDEO_OFF = -1

# Estimates are noisy and a layer's bitrate varies with the picture: keep 15 % spare.
DEFAULT_HEADROOM = 1.15
# Above this loss fraction (RTCP receiver report's fraction lost) a layer is too much.
DEFAULT_LOSS_DOWN = 0.10
# Up only while loss stays below this.
DEFAULT_LOSS_UP = 0.02
# Seconds without a sign of congestion before the viewer moves (probes) one layer up.
DEFAULT_UP_HOLD = 2.0
# A queue on the viewer's link: its RTT this much (seconds) above the lowest RTT it had in the
# last RTT_WINDOW seconds, and rising (each sample at least RTT_RISE above the one before),
# means the current layer overfills the link: one layer down. A queue that drains after a
# move down (the RTT high but falling) is no reason to go down again; nor is an RTT that
# stays high without rising (a long path).
DEFAULT_QUEUE_DOWN = 0.25
RTT_RISE = 0.05
RTT_WINDOW = 30.0
# Beyond this RTT (seconds), rising, a layer's keyframes take too long to arrive whatever the
# lowest RTT was (a viewer whose first sample already shows a full queue): one layer down.
DEFAULT_RTT_DOWN = 0.8
# A report this soon after a move (the target's change, and again the switch itself, on the
# new layer's keyframe: :meth:`LayerSelector.switched`) still covers the previous layer's
# packets and the queue they left: its loss and RTT are not held against the new layer.
DEFAULT_SETTLE = 1.5
MAX_IN_FLIGHT = 3.0
# A move down this soon after a move up means the probe failed: the next hold doubles.
DEFAULT_PROBE_WINDOW = 6.0
DEFAULT_MAX_UP_HOLD = 30.0
# An estimate is falling when it drops by more than this fraction from the previous one. A
# receiver's estimator cuts to 0.85x what it receives on overuse (libwebrtc's and aiortc's
# AIMD), far more than this; smaller dips are noise (Chromium's REMB wobbles by a percent or
# two between reports), and taking them for congestion would reset the hold before every probe
# up, so a viewer moved down once would never move up again (seen with Chromium viewers).
FALLING_TOLERANCE = 0.05
# A link that delivered less than this fraction of what was sent over the last two report
# windows (the rest neither lost nor arrived: queued) is congested.
SATURATED = 0.7
# After congestion moved the viewer down, the link has just shown its limit: the first probe
# back up waits at least this long (each probe up costs the viewer a freeze if it fails).
DEFAULT_CONGESTION_HOLD = 8.0
# With video paused, probing the lowest layer is cheap and the only way to learn the link has
# recovered (no video, no estimate): never wait longer than this. Short, so that video is
# back within seconds of a link opening; a lossy link (loss above ``loss_up``) is not probed.
DEFAULT_MAX_OFF_HOLD = 1.0
# Each probe from "video paused" that fails doubles that wait, up to this (a link that cannot
# carry the lowest layer beside the sound is not probed every second: each probe costs sound).
# The last wait is the one a link that opens meets: with 4 s, after two failed probes on the
# still shaped link, video came back 5.7 s after it opened (the queue's drain, 1.2 s, first).
MAX_OFF_HOLD_CAP = 3.0
# With video paused, no try of the lowest layer while the link's queue (``Feedback.lag``
# above the path's lowest RTT) holds more than this (seconds): the queue left by the
# congestion that paused the video drains first. A drop-tail queue full of video packets
# drains at what the voice leaves of the link, and drops the voice's packets until then; the
# video's packets put into it again before it drained dropped the voice for seconds more.
# Keep-alive padding goes every 0.1 s.
PAUSED_LAG = 0.2
# A dip: a receiver's estimate that falls while the viewer receives at least this share of
# what was sent, with loss under ``loss_up`` and no queue (Chromium's fell to 0.85x what it
# received 4-8 s after a move down, everything arriving, and on to a sixth of it), is held
# back: it moves the viewer (to the lowest it said) only if, within DIP_S of its last fall, a
# report shows a shortfall, loss or a queue (``queue_down``). Only DIP_AFTER-DIP_UNTIL
# seconds after a move down (the link has shown its limit and the layer moved to has carried
# it since), never on a layer the viewer climbed to (a probe up that fails shows first in the
# estimate: an aiortc viewer's link narrowing under the top layer showed nothing else in
# time). The queue, saturation and loss rules stand beside it: a link that narrows shows in
# them.
DIP_DELIVERED = 0.8
DIP_S = 3.0
DIP_AFTER = 4.0
DIP_UNTIL = 30.0
# The next step down sooner: NEXT_STEP_SETTLE seconds after the switch of a move down (not
# ``settle`` plus the RTT the reports need to cover only the new layer's packets), a report
# that shows the link full (a queue of ``queue_down``, or less than SATURATED of what was sent
# delivered: the RTT samples wait in that queue too), less than NEXT_STEP_DELIVERED of what was
# sent delivered, and what was delivered too little for the layer now received (with the
# headroom), takes the next step down, or straight to what the delivery carries when
# saturated: what a full link delivers is its rate whichever layer's packets wait in its
# queue, and a layer it carries is never left this way (the queue the layer left filled
# drains). A 150 kbit/s link's queue holds 3-4 s of RTT: waiting for it took 5-6.4 s from the
# top layer to audio only.
NEXT_STEP_SETTLE = 0.5
NEXT_STEP_DELIVERED = 0.9
# A probe of the lowest layer from "video paused" is undone by a falling estimate only from
# this long after it (seconds): before, the viewer's estimate is still of the voice alone
# (Chromium's fell 8 % 0.14 s after the probe on a link just opened, and the probe was undone;
# the next came 3.5 s later). A link that cannot carry the probe shows it after that.
PROBE_ESTIMATE_S = 0.5


@dataclass(frozen=True)
class Layer:
    """One quality of a published camera or screen: its expected bitrate in bit/s."""

    bitrate: float
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
    # False when ``loss`` and ``rtt`` repeat an earlier report (an estimate came alone): a
    # report moves the viewer down once, not once per estimate that follows it.
    new_report: bool = True
    # The bit rate of this video the viewer received over the last report window (None:
    # unknown). On a link that is congested now, it is what the link carries of it.
    received: float | None = None
    # When the window ``loss`` was measured over started (the caller's clock; None: unknown).
    loss_since: float | None = None
    # What was sent of this video over the window ``received`` was measured over (bit/s).
    sent: float | None = None
    # With the video paused: how long the newest keep-alive padding the viewer had received
    # when it reported had waited on the link (seconds; None: unknown): its queue now.
    lag: float | None = None


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
        queue_down: float = DEFAULT_QUEUE_DOWN,
        probe_window: float = DEFAULT_PROBE_WINDOW,
        max_up_hold: float = DEFAULT_MAX_UP_HOLD,
        settle: float = DEFAULT_SETTLE,
        congestion_hold: float = DEFAULT_CONGESTION_HOLD,
        max_off_hold: float = DEFAULT_MAX_OFF_HOLD,
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
        self.queue_down = queue_down
        # (time, RTT) samples of the last RTT_WINDOW seconds, the previous sample, and the RTT
        # at the last move down (None once the queue drained): the hysteresis.
        self._rtts: list[tuple[float, float]] = []
        self._last_rtt: float | None = None
        self._losses: list[tuple[float, float]] = []  # (time, loss) of the last hold's reports
        self._queued_at_rtt: float | None = None
        self._peak_rtt: float | None = None  # the highest RTT sample since the last move down
        self._last_estimate: float | None = None
        self.probe_window = probe_window
        self.base_up_hold = up_hold
        self.max_up_hold = max(max_up_hold, up_hold)
        self._moved_up_at: float | None = None
        self.settle = settle
        self.congestion_hold = congestion_hold
        self.max_off_hold = max_off_hold
        self.off_hold = max_off_hold
        self._down_at = -math.inf
        # Start at the lowest layer: a join must show something fast, and a viewer's estimate
        # starts low anyway (REMB ramps up over the first seconds).
        self.target = 0
        # Why the target last changed: "probe" (up), "estimate", "queue", "saturated", "loss"
        # or "top"
        # (the layer is not sent now), for the host's stats and the tests.
        self.reason = "start"
        self._up_since: float | None = None
        self._up_to: int | None = None
        # The last report's lag (None: none since the last move down), and whether this
        # viewer's reports ever gave one (a sender that measures none is not waited for).
        self._lag: float | None = None
        self._lag_seen = False
        # The target was reached by a move down (not a probe up): the dip rule may apply.
        self._came_down = False
        # A falling estimate held back as a dip: (where it said to go, when).
        self._dip: tuple[float | None, float] | None = None
        self._probe_from = VIDEO_OFF  # the layer the last probe up left

    @property
    def video_paused(self) -> bool:
        """The link cannot carry the lowest layer: audio only."""
        return self.target == VIDEO_OFF

    @property
    def top(self) -> int:
        """The highest layer the publisher sends now (VIDEO_OFF: none)."""
        top = VIDEO_OFF
        for i, layer in enumerate(self.layers):
            if math.isinf(layer.bitrate):
                break
            top = i
        return top

    def fits(self, estimate: float | None, headroom: float | None = None) -> int:
        """The highest layer ``estimate`` carries with headroom (VIDEO_OFF if none)."""
        best = VIDEO_OFF
        spare = self.headroom if headroom is None else headroom
        for i, layer in enumerate(self.layers):
            if math.isinf(layer.bitrate):
                break  # not sent now, nor anything above it
            if estimate is None or layer.bitrate * spare <= estimate:
                best = i
        return best

    def set_bitrates(self, bitrates: list[float]) -> None:
        """The layers' measured rates (bit/s, lowest layer first; ``math.inf`` for a layer the
        publisher does not send now). Made non-decreasing: a still picture can make a higher
        layer momentarily cheaper than a lower one."""
        if len(bitrates) != len(self.layers):
            raise ValueError("one rate per layer")
        floor = 0.0
        layers = []
        for layer, rate in zip(self.layers, bitrates, strict=True):
            floor = max(floor, rate)
            layers.append(Layer(floor, layer.width, layer.height, layer.fps))
        self.layers = layers

    def switched(self, now: float) -> None:
        """The viewer now receives the target layer (its keyframe arrived): after a move
        down, reports settle from here, not only from the decision, which may be a keyframe
        interval earlier."""
        if self._moved_up_at is None:
            self._down_at = max(self._down_at, now)

    def queue_delay(self) -> float:
        """Seconds the last RTT sample is above the lowest of the last RTT_WINDOW seconds."""
        if self._last_rtt is None or not self._rtts:
            return 0.0
        return self._last_rtt - self._path_rtt()

    def _path_rtt(self) -> float:
        """The lowest RTT of the last RTT_WINDOW seconds (0 without a sample): the path's,
        without a queue."""
        return min((rtt for _t, rtt in self._rtts), default=0.0)

    def _queue_grows(self, rtt: float | None, now: float) -> bool:
        """Take an RTT sample: does it show a queue on the link that is still growing, or one
        that stands since the last move down?"""
        if rtt is None:
            return False
        previous = self._last_rtt
        self._last_rtt = rtt
        self._rtts = [(t, r) for t, r in self._rtts if now - t <= RTT_WINDOW]
        self._rtts.append((now, rtt))
        delay = self.queue_delay()
        if delay < self.queue_down / 2:
            self._queued_at_rtt = None  # drained: the next queue is a new congestion
            self._peak_rtt = None
        rising = previous is None or rtt > previous + RTT_RISE
        moved_at = self._queued_at_rtt
        # The queue at its highest since the last move down: one that has fallen from there
        # drains, whatever a sample's bump (a 600 kbit/s link's went 1.02, 0.68, 0.79, 0.55 s
        # after its move, and the bump took the viewer a layer lower).
        peak = self._peak_rtt if moved_at is not None else None
        self._peak_rtt = rtt if self._peak_rtt is None else max(self._peak_rtt, rtt)
        growing = (
            rising
            and (delay > self.queue_down or rtt > self.rtt_down)
            and (moved_at is None or rtt > max(moved_at, peak or moved_at))
        )
        # A queue that has not drained since the last move down and is not draining now:
        # the layer moved to keeps the link full as well (a layer that fits drains it within
        # the settling time). A full drop-tail queue does not grow any more.
        standing = (
            moved_at is not None
            and previous is not None
            and delay > self.queue_down
            and rtt >= max(moved_at, peak or moved_at) - RTT_RISE
            and rtt >= previous - RTT_RISE / 2
        )
        return growing or standing

    def update(self, feedback: Feedback, now: float) -> int:
        """Take one feedback; returns the (possibly new) target layer."""
        estimate = feedback.estimate
        previous = self._last_estimate
        falling = (
            estimate is not None
            and previous is not None
            and estimate < previous * (1 - FALLING_TOLERANCE)
        )
        # No estimate (a stale one, or video paused): the next one starts afresh; compared
        # with one from before a pause it looked like a fall and undid the move back to video.
        self._last_estimate = estimate
        wanted = min(self.target, self.top)
        # What the link carries, when it is congested: the estimate, unless it was still
        # ramping below the layer received when it fell (a receiver's estimate climbs a few
        # percent a second from where it started: it said "overuse", not how much the link
        # carries); then what the viewer received of the video in the last window, its share
        # of the saturated link.
        carried = estimate
        current = self.layers[wanted].bitrate if wanted >= 0 else 0.0
        if feedback.received is not None and (previous is None or previous < current):
            carried = feedback.received
        queue_grows = feedback.new_report and self._queue_grows(feedback.rtt, now)
        # The packets of the layer left reach the viewer one RTT (its queue) after the move:
        # until then its reports are about them.
        in_flight = min(max(self._last_rtt or 0.0, 0.0), MAX_IN_FLIGHT)
        settled = now - self._down_at >= self.settle + in_flight
        # Loss counts when measured over packets sent after the move (its window started one
        # RTT after it); without the window's start, after the settling time.
        loss_settled = (
            settled
            if feedback.loss_since is None
            else feedback.loss_since - in_flight >= self._down_at
        )
        # Loss while the queue the layer left filled drains (its delay still there, below its
        # height since the move) is that queue's: a drop-tail queue counted in packets (the
        # voice's too) overflows for a while after a move down, as the new layer's keyframe
        # goes in (a 600 kbit/s link's queue at 1.1 s lost 7-30 % of the packets sent 1-2 s
        # after the move; the layer moved to fitted).
        draining = (
            self._queued_at_rtt is not None  # a move down's queue, not drained since
            and self._peak_rtt is not None
            and self._last_rtt is not None
            and self._last_rtt < self._peak_rtt - RTT_RISE / 2
            and self.queue_delay() >= self.queue_down / 2
        )
        # Nor is the loss of packets sent before that queue could have drained, sampled or
        # not: the RTT is sampled about once a second, behind that very queue (a 600 kbit/s
        # link's queue at 1.0 s after the move from the top layer overflowed as the middle
        # layer's keyframe went in, 18 % loss 1.9 s after the switch, before any sample showed
        # the queue falling: the viewer went on to the lowest layer).
        left_queue = self._left_queue_drained_at(feedback)
        before_drained = (
            left_queue is not None
            and feedback.loss_since is not None
            and feedback.loss_since - in_flight < left_queue
        )
        lossy = (
            feedback.loss > self.loss_down and loss_settled and not draining and not before_drained
        )
        # The link delivered much less than was sent in the window, and the rest is neither
        # lost nor arrived: it waits in a queue (a 150 kbit/s link's 100 packets hold 6 s, and
        # the sender reports that carry the RTT wait there too).
        saturated = (
            feedback.received is not None
            and feedback.sent is not None
            and feedback.received < SATURATED * feedback.sent
        )
        # The next step down sooner (NEXT_STEP_DELIVERED): the link is full, and what it
        # delivers does not carry the layer received now.
        next_step = (
            self._came_down
            and wanted >= 0
            and now - self._down_at >= min(NEXT_STEP_SETTLE, self.settle)
            # Saturated, or a queue that is not the layer left's draining (retransmissions
            # into that queue took a 600 kbit/s link's share from the video for seconds).
            and (saturated or (self.queue_delay() >= self.queue_down and not draining))
            and feedback.received is not None
            and feedback.sent is not None
            and feedback.received < NEXT_STEP_DELIVERED * feedback.sent
            and self.fits(feedback.received) < wanted
        )
        short = feedback.new_report and ((settled and (queue_grows or saturated)) or next_step)
        if feedback.new_report and (lossy or short):
            # The link is already overloaded at the current layer: one below it at most, and
            # no higher than what the viewer received of it (a link far too short for it).
            wanted = max(wanted - 1, VIDEO_OFF)
            if saturated and feedback.received is not None:
                wanted = min(wanted, self.fits(feedback.received))
        elif feedback.new_report and saturated and feedback.received is not None:
            # Right after a move down, before the next step's half second: a saturated link
            # delivers what it carries (the layer left's queue keeps it full), so a layer that
            # does not fit that is left at once: a 600 kbit/s link narrowed to 180 kbit/s on
            # layer 1 went to layer 0 and sent its keyframe and 1.7-2 s of it into the full
            # queue before the video paused, and the voice lost its packets for seconds after.
            wanted = min(wanted, self.fits(feedback.received))
        falling, carried = self._dip_rule(feedback, falling, carried, now)
        if (
            falling
            and self._probed_from_paused(now)
            and self._moved_up_at is not None
            and now - self._moved_up_at < PROBE_ESTIMATE_S
        ):
            # The estimate right after video came back still reflects the voice alone.
            falling = False
        if falling:
            # Right after a move the estimate still reflects the layer left and the queue it
            # filled (a top layer's burst into a short link): only a layer the estimate cannot
            # carry at all is left then, not one it carries without the headroom.
            wanted = min(wanted, self.fits(carried, 1.0 if not settled else self.headroom))
            if self._probed_from_paused(now):
                # The lowest layer tried from "video paused": the link the voice alone fitted
                # shows overuse with it, whatever the window's delivery says (a resume's window
                # read 1.5 Mbit/s delivered of 50 kbit/s sent, and the probe stayed 3-4 s on a
                # 150 kbit/s link).
                wanted = VIDEO_OFF
        if wanted < self.target:
            self.reason = (
                "top" if self.top < self.target else
                "queue" if feedback.new_report and settled and queue_grows else
                "saturated" if short or (feedback.new_report and saturated) else
                "loss" if feedback.new_report and lossy else "estimate"
            )  # fmt: skip
            self._down(wanted, now)
            return self.target
        if (
            self._moved_up_at is not None
            and now - self._moved_up_at >= self.probe_window
            and self.up_hold != self.base_up_hold
        ):
            self.up_hold = self.base_up_hold  # the last move up held: probe at the normal pace
            self.off_hold = self.max_off_hold
            self._moved_up_at = None
        if feedback.new_report:
            self._losses = [(t, x) for t, x in self._losses if now - t < self.hold]
            self._losses.append((now, feedback.loss))
            if feedback.lag is not None:
                self._lag, self._lag_seen = feedback.lag, True
        if (
            self.target < self.top
            and not falling
            and self._dip is None  # no probe up while a dip may yet prove congestion
            and feedback.loss <= self.loss_down
            and self.queue_delay() < self.queue_down / 2
            and self._drained()
        ):
            # Up after a hold whose reports lost under ``loss_up`` on average: one report
            # with a packet or two lost (a window over the moment a link opened) does not
            # restart the hold, a link that goes on losing 5 % is not probed.
            candidate = self.target + 1  # one step at a time
            mean_loss = sum(x for _t, x in self._losses) / max(len(self._losses), 1)
            if self._up_to != candidate or self._up_since is None:
                self._up_to, self._up_since = candidate, now
            elif now - self._up_since >= self.hold and mean_loss <= self.loss_up:
                # No settling after a move up: a queue or loss from here on is this layer's
                # (the one left fitted), so a failed probe is undone at its first sign.
                self._probe_from = self.target
                self.target = candidate
                self.reason = "probe"
                self._moved_up_at = now
                self._came_down = False
                self._dip = None
                self._up_to, self._up_since = candidate + 1, now
            return self.target
        self._up_since = self._up_to = None
        return self.target

    def _left_queue_drained_at(self, feedback: Feedback) -> float | None:
        """When the queue the last move down left can have drained (the caller's clock), or
        None (no such queue, or the layer moved to does not drain it): at its height since
        the move (``_peak_rtt`` above the path's lowest RTT: seconds of the link's rate), it
        drains at what the link carries of the video (``received``) less the layer moved
        to. At most MAX_IN_FLIGHT after the switch: a layer that barely fits is judged by
        its loss again soon."""
        if (
            not self._came_down
            or self.target < 0
            or self._queued_at_rtt is None
            or self._peak_rtt is None
            or feedback.received is None
        ):
            return None
        path = self._path_rtt()
        queue = self._peak_rtt - path
        spare = feedback.received - self.layers[self.target].bitrate
        if queue <= 0 or spare <= 0:
            return None
        return self._down_at + min(queue * feedback.received / spare, MAX_IN_FLIGHT)

    def _drained(self) -> bool:
        """With video paused, whether the last report showed the link's queue drained (a
        viewer whose reports never measured it is not waited for)."""
        if self.target != VIDEO_OFF or not self._lag_seen:
            return True
        # The lag includes the path's round trip (the padding goes down, the report up):
        # only what is above the lowest RTT of the last RTT_WINDOW seconds is queue.
        path = self._path_rtt()
        return self._lag is not None and self._lag - path <= PAUSED_LAG

    @property
    def hold(self) -> float:
        """Seconds without congestion before the next move up."""
        if self.target == VIDEO_OFF:
            return min(self.up_hold, self.off_hold)
        return self.up_hold

    def _probed_from_paused(self, now: float) -> bool:
        """The lowest layer is a probe from "video paused" not yet held for ``probe_window``."""
        return (
            self.target == 0
            and not self._came_down
            and self._moved_up_at is not None
            and now - self._moved_up_at < self.probe_window
            and self._probe_from == VIDEO_OFF
        )

    def _dip_rule(
        self, feedback: Feedback, falling: bool, carried: float | None, now: float
    ) -> tuple[bool, float | None]:
        """Whether a falling estimate counts now, and what it says the link carries: a dip
        (DIP_DELIVERED above) is held back until something confirms it."""
        shortfall = (
            feedback.received is not None
            and feedback.sent is not None
            and feedback.received < DIP_DELIVERED * feedback.sent
        )
        # Held with no queue (under queue_down / 2, as for a move up), confirmed by a queue
        # (``queue_down``, as for a move down): one RTT sample of 0.13 s, a keyframe's burst,
        # confirmed a dip and took a 600 kbit/s viewer to layer 0.
        trouble = feedback.loss > self.loss_up or self.queue_delay() >= self.queue_down or shortfall
        if self._dip is not None and now - self._dip[1] > DIP_S:
            self._dip = None  # nothing came of it
        if self._dip is not None:
            held = self._dip[0]
            if falling and carried is not None:
                held = carried if held is None else min(held, carried)
            if trouble and (feedback.new_report or falling):
                self._dip = None  # a shortfall, loss or a queue after it: it was congestion
                return True, held
            if falling:
                # Falling on while everything still arrives (Chromium's went from 366 to 46
                # kbit/s in 2.5 s on a 600 kbit/s link carrying 300): the same dip, watched
                # from here.
                self._dip = (held, now)
            return False, carried
        quiet = (
            feedback.received is not None
            and feedback.sent is not None
            and not trouble
            and self.queue_delay() < self.queue_down / 2
        )
        in_window = DIP_AFTER <= now - self._down_at <= DIP_UNTIL
        if falling and quiet and self._came_down and in_window:
            self._dip = (carried, now)
            return False, carried
        return falling, carried

    def _down(self, wanted: int, now: float) -> None:
        self._lag = None  # measured again from here
        self.target = wanted
        self._down_at = now
        self._came_down = True
        self._dip = None
        self._queued_at_rtt = self._last_rtt
        self._peak_rtt = self._last_rtt
        self._up_since = self._up_to = None
        if self._moved_up_at is not None and now - self._moved_up_at < self.probe_window:
            # The last probe up failed: wait twice as long before the next (and at least the
            # congestion hold: the link has just shown its limit).
            self.up_hold = min(max(self.up_hold * 2, self.congestion_hold), self.max_up_hold)
            if wanted == VIDEO_OFF:
                self.off_hold = min(self.off_hold * 2, max(MAX_OFF_HOLD_CAP, self.max_off_hold))
        else:
            self.up_hold = max(self.up_hold, self.congestion_hold)
        self._moved_up_at = None
