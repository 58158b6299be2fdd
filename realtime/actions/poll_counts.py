"""Live result counts of a poll for its host: read from the store, pushed coalesced.

Every answer marks its poll changed; the counts go to the staff room of the poll's own class at
most once per ``poll_push_interval_s`` per poll and node (domain/polls.py: Coalescer). They are
read from the store when pushed, so they are right whichever node took the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import Text, cast, func, select

from realtime import jsoncodec
from realtime.domain import polls as rules
from realtime.domain.polls import PollKind
from realtime.domain.streams import Visibility, notice_stream, room_name
from realtime.hub import Hub
from realtime.store.db import DbConnection
from realtime.store.rows import PollRow, typed_or_none
from realtime.store.schema import poll_answers, polls

log = logging.getLogger(__name__)

# Pushes per poll per second at most: 1 / PUSH_INTERVAL_S.
PUSH_INTERVAL_S = 0.15


async def results(
    conn: DbConnection, poll: PollRow, *, text_limit: int | None = None
) -> rules.Results:
    """The poll's counts: the store groups equal answers, so 500 answers are a few rows."""
    text = cast(poll_answers.c.answer, Text)
    rows = await conn.execute(
        select(text.label("answer"), func.count().label("n"))
        .where(poll_answers.c.poll_id == poll.id)
        .group_by(text)
    )
    return rules.tally(
        PollKind(poll.kind),
        list(poll.options),
        list(poll.correct),
        ((jsoncodec.loads(r.answer), int(r.n)) for r in rows),
        text_limit=text_limit,
    )


def staff_rooms(poll: PollRow) -> list[str]:
    """The host class's staff: a dual lesson's linked classrooms may answer, so they see the
    counts (and how many are right) only once published, like students."""
    return [room_name(notice_stream(poll.class_id, poll.audience), Visibility.STAFF)]


class PollCounts:
    """The coalescers of one app's polls, and their pending pushes."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.coalescers: dict[int, rules.Coalescer] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def changed(self, poll_id: int) -> None:
        loop = asyncio.get_running_loop()
        c = self.coalescers.setdefault(poll_id, rules.Coalescer(PUSH_INTERVAL_S))
        delay = c.change(loop.time())
        if delay is None:
            return
        task = loop.create_task(self._push(poll_id, delay))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _push(self, poll_id: int, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        c = self.coalescers[poll_id]
        # Marked before reading: an answer committed during the read schedules the next push.
        c.pushed(asyncio.get_running_loop().time())
        poll = None
        try:
            async with self.hub.store.read() as conn:
                poll = typed_or_none(
                    PollRow,
                    (await conn.execute(select(polls).where(polls.c.id == poll_id))).first(),
                )
                if poll is None:
                    return
                res = await results(conn, poll)
            await self.hub.ephemeral(
                staff_rooms(poll), "poll.counts", {"poll_id": poll_id, **res.view()}
            )
        except Exception:
            log.exception("pushing the counts of poll %s failed", poll_id)
        if poll is not None and poll.status != "open":
            self.coalescers.pop(poll_id, None)

    async def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t


def counts(hub: Hub) -> PollCounts:
    live = hub.services.get("poll_counts")
    if live is None:
        live = hub.services["poll_counts"] = PollCounts(hub)
    assert isinstance(live, PollCounts)
    return live
