"""Homework "due soon" reminders: the sweep that finds homework due within the notice time and
tells every student who has not handed it in, and their guardians (event ``homework.due`` in
each one's own stream, which the app shows and Web Push sends: realtime/domain/push.py).

Every node sweeps; each homework is told exactly once, by whichever node's conditional UPDATE
(``due_notified_at IS NULL``) changes the row, in the transaction that records the events. A
losing node's UPDATE changes nothing (PostgreSQL re-checks the condition after the winner
commits; SQLite has one writer), so it records nothing.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from realtime.actions.homework import _load as load
from realtime.actions.homework import not_handed_in, tell_families
from realtime.domain import homework as rules
from realtime.hub import Hub
from realtime.store.schema import homework

log = logging.getLogger(__name__)

# Homework looked at per sweep at most (the rest, if any, at the next one).
SWEEP_BATCH = 200


async def sweep(hub: Hub) -> int:
    """Tell everyone concerned of the homework due soon; returns the homework this node told."""
    now = hub.now()
    notice_s = hub.settings.homework_due_notice_s
    async with hub.store.read() as conn:
        rows = list(
            await conn.execute(
                select(homework.c.id, homework.c.due_at, homework.c.due_notified_at)
                .where(
                    homework.c.due_notified_at.is_(None),
                    homework.c.due_at > now,
                    homework.c.due_at <= now + notice_s,
                )
                .order_by(homework.c.due_at)
                .limit(SWEEP_BATCH)
            )
        )
    told = 0
    for r in rows:
        if rules.due_soon(r.due_at, r.due_notified_at, now, notice_s) and await _tell(
            hub, r.id, now
        ):
            told += 1
    return told


async def _tell(hub: Hub, homework_id: int, now: float) -> bool:
    async with hub.store.transaction() as conn:
        won = await conn.execute(
            homework.update()
            .where(homework.c.id == homework_id, homework.c.due_notified_at.is_(None))
            .values(due_notified_at=now)
        )
        if won.rowcount != 1:
            return False  # another node told it
        hw = await load(conn, homework_id)
        todo = await not_handed_in(conn, hw, now)
        await tell_families(hub, conn, hw, todo, "homework.due")
    log.info("homework %d due soon: told %d students and their guardians", hw.id, len(todo))
    return True
