"""Freezes of one viewer's video as the SFU sees them. Pure logic, no I/O, clock passed in.

The SFU never decodes, so it cannot watch the viewer's screen; it sees three things that stop
the picture on it, each with a start and an end:

* **The viewer's decoder stopped**: it sent a PLI/FIR (it lost a packet NACK could not repair,
  or a reference frame), or the SFU emptied its queue (a slow link): nothing it receives can be
  shown until a keyframe is sent to it.
* **The viewer stopped receiving**: its RTCP receiver report's highest sequence number is
  behind a frame the SFU sent more than :data:`FREEZE_GAP_S` ago (the link holds or dropped
  it). Reports come about once a second, so such a freeze's end is known at the first report
  that has caught up (a lower bound on its count, an upper bound on its length by one report
  interval).

A stop that lasts at least :data:`FREEZE_GAP_S` (what a viewer notices, as in LiveKit's and
Chromium's freeze counters) is a freeze; overlapping stops count once. Video paused for the
viewer's connection (audio first) and the publisher's mute are not freezes: :meth:`idle`
forgets an open stop. What the publisher itself never sent (its own uplink froze) is not
counted per viewer.

Memory: a few floats per viewer and track.
"""

from __future__ import annotations

import math

# A picture that stops this long (s) is a freeze.
FREEZE_GAP_S = 0.5
# The host's console flags a viewer whose last freeze ended less than this long ago (s).
RECENT_FREEZE_S = 10.0


class FreezeMeter:
    """One viewer's freezes of one video track: ``count``, ``duration`` (s, ended freezes)."""

    def __init__(self) -> None:
        self.count = 0
        self.duration = 0.0
        # Open stops: the decoder waits for a keyframe since / the viewer receives nothing
        # sent after.
        self._decoder_since: float | None = None
        self._behind_since: float | None = None
        self._last_end = -math.inf

    # -- what the forwarding path sees ------------------------------------------------------

    def decoder_stopped(self, now: float) -> None:
        """The viewer needs a keyframe (its PLI, or its queue was emptied)."""
        if self._decoder_since is None:
            self._decoder_since = now

    def keyframe_sent(self, now: float) -> None:
        """A keyframe went to the viewer: its decoder goes on."""
        if self._decoder_since is not None:
            self._stop(self._decoder_since, now)
            self._decoder_since = None

    def received(self, now: float, oldest_missing: float | None) -> None:
        """A receiver report at ``now``: the oldest frame the viewer has not received yet was
        sent at ``oldest_missing`` (None: it has everything)."""
        if oldest_missing is not None and now - oldest_missing >= FREEZE_GAP_S:
            if self._behind_since is None:
                self._behind_since = oldest_missing
        elif self._behind_since is not None:
            self._stop(self._behind_since, now)
            self._behind_since = None

    def idle(self) -> None:
        """No video meant for the viewer (paused for its connection, the publisher's mute):
        an open stop is no freeze."""
        self._decoder_since = self._behind_since = None

    # -- what the host sees -----------------------------------------------------------------

    def frozen_for(self, now: float) -> float:
        """How long the picture has been stopped now (0 if it is not, or not for long)."""
        starts = [s for s in (self._decoder_since, self._behind_since) if s is not None]
        if not starts:
            return 0.0
        length = now - min(starts)
        return length if length >= FREEZE_GAP_S else 0.0

    def recent(self, now: float) -> bool:
        """Frozen now, or a freeze ended less than :data:`RECENT_FREEZE_S` ago."""
        return self.frozen_for(now) > 0 or now - self._last_end < RECENT_FREEZE_S

    def _stop(self, start: float, end: float) -> None:
        if end - start < FREEZE_GAP_S:
            return
        if start <= self._last_end:
            # Overlaps the previous freeze (two signs of one stop): extend it, count once.
            if end > self._last_end:
                self.duration += end - self._last_end
                self._last_end = end
            return
        self.count += 1
        self.duration += end - start
        self._last_end = end
