"""Whether a viewer's link carries more: the verdict of a padding probe. Pure, no I/O, no clock.

Before the layer selection (``media.layers``) switches a viewer's video on from "video paused",
or moves it up one layer, the viewer's forwarding sender sends it padding-only RTP packets
(on the video's RTX stream) at the rate the move would add, with headroom, for a second or two
(libwebrtc, LiveKit and mediasoup probe the same way). The viewer's receiver reports
(RTCP RR) name the highest RTX sequence number received; the sender knows when it sent it, so
each report tells how long the newest probe packet the viewer had received by then waited on
the way: the link's queue delay. A link that carries the probe delivers it as it is sent (the
delay stays at a packet interval); one that does not queues the surplus: the delay grows by
``offered / carried - 1`` seconds per second of probe. A failed probe costs the link a queue of
a fraction of a second that drains as soon as the padding stops, not seconds of lost voice and
a decoder stuck on a layer it cannot receive.

Memory: nothing per viewer here (:func:`judge` is a function of one report).
"""

from __future__ import annotations

from dataclasses import dataclass

# A report before this many seconds of probe says too little to pass it (it can fail it).
PROBE_MIN_S = 0.8
# No report that passes within this many seconds: the probe failed (a link so full that the
# probe's packets wait seconds, or a viewer that reports nothing on them).
PROBE_MAX_S = 3.0
# The queue delay a link that carries the probe may show: a packet interval of the padding
# (20 ms ticks) and the server's event loop's own delay in reading the report ...
QUEUE_SLACK_S = 0.05
# ... plus this much per second of probe: the probe (with the headroom of the layer
# selection in its rate) may exceed what the link carries by this share at most.
QUEUE_GROWTH = 0.05
# Above this share of the probe's packets lost (measured when the viewer reported the RTX
# stream before the probe), the link does not carry it: a policer that drops instead of
# queueing. Random loss of a few percent is not a lack of capacity.
PROBE_LOSS = 0.1
# Packets of the probe needed before its loss counts.
PROBE_LOSS_MIN_PACKETS = 10


@dataclass(frozen=True)
class ProbeReport:
    """What one receiver report said about a running probe.

    ``elapsed``: seconds from the probe's first packet to the report's arrival; ``queue``:
    seconds between the sending of the newest probe packet the viewer had received and the
    report's arrival; ``sent``: probe packets sent up to that one; ``lost``: how many of them
    the viewer counted lost (None: unknown)."""

    elapsed: float
    queue: float
    sent: int
    lost: int | None = None


def judge(report: ProbeReport) -> bool | None:
    """True: the link carries the probe; False: it does not; None: too early to tell."""
    if report.queue > QUEUE_SLACK_S + QUEUE_GROWTH * report.elapsed:
        return False
    if (
        report.lost is not None
        and report.sent >= PROBE_LOSS_MIN_PACKETS
        and report.lost > PROBE_LOSS * report.sent
    ):
        return False
    if report.elapsed < PROBE_MIN_S:
        return None
    return True
