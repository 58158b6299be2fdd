"""Coalescing of keyframe requests (PLI) towards a publisher. Pure logic, no I/O, no clock.

Every subscriber that joins, falls behind or reports picture loss wants a keyframe, but each
keyframe costs the publisher a burst of bits: requests are merged so the publisher sees at most
one PLI per ``interval``. A request inside the interval is remembered and sent when it ends.
"""

from __future__ import annotations

# At most one PLI per half second: a 640x360 VP8 keyframe is ~5-10x a delta frame, and a class
# of 30 joining at once must not make the teacher's uplink send a keyframe per student.
DEFAULT_PLI_INTERVAL = 0.5


class PliCoalescer:
    """Decides when to send a PLI. The caller passes the current time to every method."""

    def __init__(self, interval: float = DEFAULT_PLI_INTERVAL) -> None:
        self.interval = interval
        self._last_sent: float | None = None
        self._pending = False

    @property
    def pending(self) -> bool:
        """A request is waiting for the interval to end."""
        return self._pending

    def request(self, now: float) -> bool:
        """Record a request; True means "send a PLI now", False means it was deferred."""
        if self._last_sent is None or now - self._last_sent >= self.interval:
            self._last_sent = now
            self._pending = False
            return True
        self._pending = True
        return False

    def next_due(self) -> float | None:
        """When the deferred request becomes due, or None if nothing is deferred."""
        if not self._pending or self._last_sent is None:
            return None
        return self._last_sent + self.interval

    def poll(self, now: float) -> bool:
        """True (and the request is consumed) if a deferred request is due at ``now``."""
        due = self.next_due()
        if due is None or now < due:
            return False
        self._last_sent = now
        self._pending = False
        return True

    def keyframe_received(self) -> None:
        """A keyframe arrived anyway: a deferred request has nothing left to ask for."""
        self._pending = False
