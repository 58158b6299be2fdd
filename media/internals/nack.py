"""NACK on ingest, asked again: a missing packet is NACKed until it comes, a few times.

aiortc's ``NackGenerator`` (one per video receiver, private ``__nack_generator``) tracks the
missing sequence numbers and its receiver sends a NACK listing all of them whenever ``add()``
returns True, which it does only when a packet opens a *new* gap. A packet whose NACK or
retransmission is lost is asked for again only when some other packet goes missing: on a
publisher's uplink whose loss has just stopped, never. The frame then waited until the jitter
buffer gave the hole up (``media.internals.jitter``: 0.5 s, then a keyframe for every viewer
of that layer).

:class:`RetryingNackGenerator` makes ``add()`` also return True when a packet still missing
was last asked for :data:`NACK_RETRY_S` ago (the receiver then NACKs every missing packet, as
it does for a new gap), at most :data:`NACK_TRIES` times per packet, as libwebrtc's NACK module
retries (per RTT, up to 10 times); after that it is no longer listed. Driven by the packets
that arrive (a layer of 15 packets per second checks every 67 ms), no timer. Memory: one entry
per missing packet, at most aiortc's ``RTP_HISTORY_SIZE`` (128) of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import RtpPacket

# A missing packet is NACKed again this long after the last NACK that listed it (seconds):
# about a round trip on a slow school link, so that a retransmission on its way is not asked
# for twice, and three tries fit in the jitter buffer's 0.5 s wait.
NACK_RETRY_S = 0.15
# NACKs per missing packet in all, the first included.
NACK_TRIES = 3

# The receiver's private NACK generator (None for audio, which aiortc never NACKs).
_RECEIVER_NACK_GENERATOR = "_RTCRtpReceiver__nack_generator"


def retry_nacks(receiver: RTCRtpReceiver) -> None:
    """Give a video receiver a :class:`RetryingNackGenerator` (before its first packet: the
    server's ingest, and a decoding client's receivers, as ``clients.live`` does)."""
    if isinstance(getattr(receiver, _RECEIVER_NACK_GENERATOR), NackGenerator):
        setattr(receiver, _RECEIVER_NACK_GENERATOR, RetryingNackGenerator())


class RetryingNackGenerator(NackGenerator):
    """aiortc's NACK generator whose ``add()`` is also True when a NACK is due again."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        # Missing sequence number -> (when last listed in a NACK, NACKs that listed it).
        self._asked: dict[int, tuple[float, int]] = {}
        self.retries = 0  # NACKs sent again for old gaps only (stats, tests)

    def add(self, packet: RtpPacket) -> bool:
        missed = super().add(packet)
        missing, asked = self.missing, self._asked
        if not missing and not asked:
            return missed
        now = self._clock()
        for seq in [seq for seq in asked if seq not in missing]:
            del asked[seq]  # it came, or aiortc stopped tracking it
        due = missed
        for seq, (at, tries) in list(asked.items()):
            if now - at < NACK_RETRY_S:
                continue
            if tries >= NACK_TRIES:
                missing.discard(seq)  # asked for enough: the jitter buffer will give it up
                del asked[seq]
            else:
                due = True
        if not due:
            return False
        if not missed:
            self.retries += 1
        # The receiver lists every missing packet: each counts one more NACK.
        for seq in missing:
            _at, tries = asked.get(seq, (0.0, 0))
            asked[seq] = (now, tries + 1)
        return True
