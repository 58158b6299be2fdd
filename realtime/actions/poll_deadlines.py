"""Time-limited polls close by themselves: on time, exactly once, whichever nodes are alive.

The deadline is stored with the poll (``polls.closes_at``); answers after it are refused on
every node (domain/polls.py: ``check_open``). Telling everyone the poll closed is the part that
needs a node: the one that opened the poll closes it at its deadline (a timer), and because that
node may die before then, every node also sweeps for open polls past their deadline every
``poll_sweep_interval_s``, and a read or answer that meets one has it closed at once.

All of them go through :func:`close_due`, a conditional UPDATE (``WHERE status = 'open' AND
closes_at <= now``): it changes the row for one caller only, who alone announces ``poll.closed``
(as ``realtime.actions.live.end`` does for a session). A teacher's close or publish locks the row
first (realtime/actions/polls.py), so the two never both announce a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from sqlalchemy import select

from realtime.actions.poll_store import announce, load, poll_view
from realtime.domain.polls import PollStatus
from realtime.hub import Hub
from realtime.store.schema import polls

log = logging.getLogger(__name__)

# Polls closed by one sweep at most (the next sweep takes the rest).
SWEEP_BATCH = 100
# A timer wakes this long after the deadline (else the sweep closes it, a little later).
WAKE_MARGIN_S = 0.02


async def close_due(hub: Hub, poll_id: int) -> bool:
    """Close the poll if it is open and past its deadline; whether this call closed it."""
    now = hub.now()
    async with hub.store.transaction() as conn:
        res = await conn.execute(
            polls.update()
            .where(
                polls.c.id == poll_id,
                polls.c.status == PollStatus.OPEN.value,
                polls.c.closes_at.is_not(None),
                polls.c.closes_at <= now,
            )
            # Closed when its time was up, whenever the close was noticed.
            .values(status=PollStatus.CLOSED.value, closed_at=polls.c.closes_at)
        )
        if res.rowcount != 1:
            return False
        poll = await load(conn, poll_id)
        data = poll_view(poll, now, staff=False)
        await announce(hub, conn, poll, "poll.closed", data, poll_view(poll, now, staff=True))
    return True


async def sweep(hub: Hub) -> int:
    """Close every open poll past its deadline (up to ``SWEEP_BATCH``); how many this node did."""
    async with hub.store.read() as conn:
        due = [
            r.id
            for r in await conn.execute(
                select(polls.c.id)
                .where(
                    polls.c.status == PollStatus.OPEN.value,
                    polls.c.closes_at.is_not(None),
                    polls.c.closes_at <= hub.now(),
                )
                .order_by(polls.c.closes_at)
                .limit(SWEEP_BATCH)
            )
        ]
    closed = 0
    for poll_id in due:
        closed += await close_due(hub, poll_id)
    return closed


class PollDeadlines:
    """One node's deadline timers (the polls it opened), its sweep, and the closes it started
    because a read met an overdue poll. Memory: a task per time-limited poll opened here and
    still open, one for the sweep."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing: set[int] = set()  # polls whose close this node has started
        self._sweeper: asyncio.Task[None] | None = None
        self.closed_by_sweep = 0  # for tests and /metrics-minded readers

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    def at_deadline(self, poll_id: int, closes_at: float) -> None:
        """The poll was opened here: close it when its time is up."""

        async def run() -> None:
            # The loop's monotonic clock may wake a hair before the wall clock's deadline.
            await asyncio.sleep(max(0.0, closes_at - self.hub.now()) + WAKE_MARGIN_S)
            await close_due(self.hub, poll_id)

        self._spawn(run())

    def overdue(self, poll_id: int) -> None:
        """A read met this poll open past its deadline: close it now (once per node at a time)."""
        if poll_id in self.closing:
            return
        self.closing.add(poll_id)

        async def run() -> None:
            try:
                await close_due(self.hub, poll_id)
            finally:
                self.closing.discard(poll_id)

        self._spawn(run())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception:
                log.exception("closing a poll at its deadline failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                self.closed_by_sweep += await sweep(self.hub)
            except Exception:
                log.exception("the poll deadline sweep failed")
            await asyncio.sleep(self.hub.settings.poll_sweep_interval_s)

    async def close(self) -> None:
        tasks = [*self.tasks, *([self._sweeper] if self._sweeper else [])]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


def deadlines(hub: Hub) -> PollDeadlines:
    found = hub.services.get("poll_deadlines")
    if found is None:
        found = hub.services["poll_deadlines"] = PollDeadlines(hub)
    assert isinstance(found, PollDeadlines)
    return found
