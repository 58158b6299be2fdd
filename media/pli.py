"""Coalescing of keyframe requests (PLI) towards a publisher. Pure logic, no I/O, no clock.

Every subscriber that joins, falls behind or reports picture loss wants a keyframe, but each
keyframe costs the publisher a burst of bits: requests are merged so the publisher is asked
again only when the previous request has been answered (its keyframe arrived) and at least
``min_interval`` has passed, or when ``interval`` has passed without an answer (a PLI can be
lost). A request that may not go out yet is remembered and sent when it may; a keyframe that
arrives meanwhile answers it (every waiting subscriber starts at that keyframe).

Why both: a class joining back to back (each viewer right after the previous one's first
frame) must not wait ``interval`` behind a PLI that has already been answered, but the
publisher's encoder cannot make keyframes faster than about one per 300 ms anyway
(libwebrtc's ``kMinKeyframeSendIntervalMs``), so asking faster than ``min_interval`` buys
nothing. State: two floats and two flags, whatever the number of subscribers.
"""

from __future__ import annotations

# Without an answer, at most one PLI per half second: a 640x360 VP8 keyframe is ~5-10x a delta
# frame, and a class of 30 joining at once must not make the teacher's uplink send a keyframe
# per student.
DEFAULT_PLI_INTERVAL = 0.5
# Once the previous PLI's keyframe has arrived: a new PLI may follow this soon after the
# previous one (a little under the encoder's own 300 ms floor, so it never adds delay).
DEFAULT_PLI_MIN_INTERVAL = 0.25


class PliCoalescer:
    """Decides when to send a PLI. The caller passes the current time to every method."""

    def __init__(
        self,
        interval: float = DEFAULT_PLI_INTERVAL,
        min_interval: float = DEFAULT_PLI_MIN_INTERVAL,
    ) -> None:
        if interval < 0 or min_interval < 0:
            raise ValueError("PLI intervals cannot be negative")
        self.interval = interval
        # An answered PLI never waits longer than an unanswered one.
        self.min_interval = min(min_interval, interval)
        self._last_sent: float | None = None
        self._answered = False
        self._pending = False

    @property
    def pending(self) -> bool:
        """A request is waiting until it may be sent."""
        return self._pending

    def _earliest(self) -> float | None:
        if self._last_sent is None:
            return None
        return self._last_sent + (self.min_interval if self._answered else self.interval)

    def request(self, now: float) -> bool:
        """Record a request; True means "send a PLI now", False means it was deferred."""
        earliest = self._earliest()
        if earliest is None or now >= earliest:
            self._sent(now)
            return True
        self._pending = True
        return False

    def next_due(self) -> float | None:
        """When the deferred request becomes due, or None if nothing is deferred."""
        if not self._pending:
            return None
        return self._earliest()

    def poll(self, now: float) -> bool:
        """True (and the request is consumed) if a deferred request is due at ``now``."""
        due = self.next_due()
        if due is None or now < due:
            return False
        self._sent(now)
        return True

    def keyframe_received(self) -> None:
        """A keyframe arrived: it answers the last PLI and any request deferred meanwhile."""
        self._pending = False
        self._answered = True

    def not_sent(self) -> None:
        """The PLI :meth:`request`/:meth:`poll` allowed could not be sent (the publisher's media
        SSRC not known yet): it does not count, the next request may go at once."""
        self._last_sent = None
        self._answered = False

    def _sent(self, now: float) -> None:
        self._last_sent = now
        self._answered = False
        self._pending = False
