"""A bounded number of holders at once, a bounded queue behind them, and a stated wait.

Used where a burst must be served in order rather than all at once: new connections in their
handshake (realtime/transport/admission.py) and PostgreSQL's connection pool
(realtime/store/db.py). At most ``limit`` :class:`Ticket` s are out; up to ``queue`` callers
more wait their turn in order, each at most ``wait_s``; beyond that :meth:`Gate.enter` raises
:class:`Full` at once, with a ``retry_after_s`` estimated from the backlog and the rate tickets
have been given back at lately, so that refused callers come back spread over the time the
backlog needs rather than together.

A ticket may also give itself back after ``hold_s``, so that a holder that never finishes (a
client that never connects) cannot keep its place.

Memory: a waiter is a future (plus whatever its caller holds, e.g. a pending HTTP request):
``queue`` of them at most; the rate is two counters.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Callable

# Seconds of given-back tickets the rate (for ``retry_after_s``) is measured over.
RATE_WINDOW_S = 2.0
# The longest ``retry_after_s`` a refusal asks for.
MAX_RETRY_AFTER_S = 5


class Full(Exception):
    """No place now; come back after ``retry_after_s`` (whole seconds)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"full; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Ticket:
    """One holder's place; :meth:`release` gives it back (once, whoever calls first)."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._released = False
        self._cap: asyncio.TimerHandle | None = None
        if gate.hold_s is not None:
            self._cap = asyncio.get_running_loop().call_later(gate.hold_s, self.release)

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._cap is not None:
            self._cap.cancel()
        self._gate._finished()

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class Gate:
    """At most ``limit`` tickets out; ``queue`` waiters more, each for at most ``wait_s``."""

    def __init__(
        self,
        limit: int,
        queue: int,
        wait_s: float,
        *,
        hold_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = max(1, limit)
        self.queue = max(0, queue)
        self.wait_s = wait_s
        self.hold_s = hold_s
        self._clock = clock
        self.in_progress = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        # Tickets given back in the current window of RATE_WINDOW_S and the one before (the
        # rate): two counters, whatever the rate.
        self._started = self._window = clock()
        self._now = 0
        self._before = 0
        self.admitted = 0
        self.queued = 0
        self.refused = 0
        self.waited_s = 0.0  # seconds waited in the queue, by everyone who waited

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def enter(self) -> Ticket:
        """A place, at once or after waiting in turn; raises :class:`Full` when none comes."""
        if self.in_progress < self.limit and not self._waiting:
            self.in_progress += 1
            return self._admitted()
        if len(self._waiting) >= self.queue:
            raise self._refuse()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self.queued += 1
        since = self._clock()
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.wait_s)
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                return self._admitted()  # handed a place just as the wait ran out
            fut.cancel()
            self._drop(fut)
            raise self._refuse() from None
        except BaseException:
            # Cancelled (the caller went away): a place handed over meanwhile is passed on.
            if fut.done() and not fut.cancelled():
                self._finished()
            else:
                fut.cancel()
                self._drop(fut)
            raise
        finally:
            self.waited_s += self._clock() - since
        return self._admitted()

    def retry_after_s(self) -> int:
        """Whole seconds until the backlog ahead of a newcomer is likely through."""
        backlog = self.in_progress + len(self._waiting)
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(backlog / self.rate())))

    def rate(self) -> float:
        """Tickets given back per second lately (``limit`` a second before any was)."""
        elapsed = self._roll()
        done = self._before + self._now
        if done < 2:
            return float(self.limit)
        # Over the two windows, or the time since the gate opened if that is shorter.
        span = min(self._clock() - self._started, RATE_WINDOW_S + elapsed)
        return max(1.0, done / max(span, 0.1))

    def _admitted(self) -> Ticket:
        self.admitted += 1
        return Ticket(self)

    def _refuse(self) -> Full:
        self.refused += 1
        return Full(self.retry_after_s())

    def _drop(self, fut: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(fut)

    def _finished(self) -> None:
        self._roll()
        self._now += 1
        # The place passes straight to the next waiter still waiting (still in progress).
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.in_progress -= 1

    def _roll(self) -> float:
        """Move the windows on to now; the seconds into the current window."""
        elapsed = self._clock() - self._window
        if elapsed >= RATE_WINDOW_S:
            windows = int(elapsed // RATE_WINDOW_S)
            self._before = self._now if windows == 1 else 0
            self._now = 0
            self._window += windows * RATE_WINDOW_S
            elapsed -= windows * RATE_WINDOW_S
        return elapsed
