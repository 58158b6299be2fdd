"""Pushing committed events to the browsers of the people they concern.

The hub hands every committed batch of events to :meth:`PushDispatcher.offer` on the node that
committed it (other nodes only receive them over the bus), so in a cluster each event is pushed
once. ``offer`` never waits: it keeps the events that call for a push (realtime/domain/push.py)
in a bounded queue, and a worker resolves the people, their settings and subscriptions, and
sends with bounded concurrency. Encryption runs in threads; expired subscriptions are removed.
A push is best effort (the app catches up on open); what cannot be queued is dropped, counted
and logged, never blocking an action.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import aiohttp
from sqlalchemy import delete, select

from realtime.actions.access import conversation_participants, guardians_of, members_with_role
from realtime.config import Settings
from realtime.domain import push as rules
from realtime.domain.roles import Role
from realtime.domain.streams import parse_stream
from realtime.errors import HomeroomError
from realtime.push.sender import Outcome, Subscription, send
from realtime.push.vapid import VapidKey
from realtime.store.db import DbConnection, Store, StoredEvent
from realtime.store.schema import push_settings, push_subscriptions

log = logging.getLogger(__name__)

# Events whose people, settings and subscriptions are read from the database at once. A push is
# background work: a reminder to 1,400 families is 1,400 events, and reading them all at once
# would fill the database's queue and turn people's own requests away (`database_busy`).
RESOLVING = 4

# The event types that may call for a push: everything else is passed over without parsing.
PUSHED_TYPES = frozenset(
    {
        "notice.published",
        "notice.reminder",
        "chat.message",
        "chat.mentioned",
        "session.started",
        "link.requested",
        "homework.due",
        "homework.reminder",
    }
)


async def load_prefs(conn: DbConnection, user_ids: list[int]) -> dict[int, rules.PushPrefs]:
    """Each person's push settings; people without a row get the defaults."""
    out = {u: rules.PushPrefs() for u in user_ids}
    if not user_ids:
        return out
    rows = await conn.execute(select(push_settings).where(push_settings.c.user_id.in_(user_ids)))
    for r in rows:
        out[r.user_id] = rules.PushPrefs(frozenset(r.kinds or []), r.quiet_start, r.quiet_end)
    return out


class PushDispatcher:
    def __init__(self, store: Store, settings: Settings, vapid: VapidKey) -> None:
        self.store = store
        self.settings = settings
        self.vapid = vapid
        self.zone = ZoneInfo(settings.school_time_zone)
        self._queue: asyncio.Queue[rules.Pushable] = asyncio.Queue(settings.push_queue)
        self._sending = asyncio.Semaphore(max(1, settings.push_concurrency))
        self._resolving = asyncio.Semaphore(RESOLVING)
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.sent = 0
        self.gone = 0
        self.failed = 0
        self.dropped = 0

    # --- the hub's side: never waits ----------------------------------------------------------

    def offer(self, events: Iterable[StoredEvent]) -> None:
        for e in events:
            if e.type not in PUSHED_TYPES:
                continue
            try:
                item = rules.pushable(parse_stream(e.stream), e.type, e.data)
            except HomeroomError:
                continue
            if item is None:
                continue
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("push queue full: dropped a %s push", item.kind.value)

    def counts(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "gone": self.gone,
            "failed": self.failed,
            "dropped": self.dropped,
        }

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.push_timeout_s)
        self._http = aiohttp.ClientSession(timeout=timeout)
        self._worker = asyncio.create_task(self._run(), name="homeroom-push")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def drain(self) -> None:
        """Wait until every event offered so far has been pushed (tests, shutdown)."""
        await self._queue.join()

    # --- the worker ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            # Each event's sends run beside the next event's; the semaphore bounds them all.
            task = asyncio.create_task(self._handle(item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, item: rules.Pushable) -> None:
        try:
            await self._push(item)
        except Exception:
            log.exception("pushing a %s event failed", item.kind.value)
        finally:
            self._queue.task_done()

    async def _people(self, conn: DbConnection, item: rules.Pushable) -> list[int]:
        a = rules.Audience
        if item.audience is a.USER:
            people = [item.id]
        elif item.audience is a.CONVERSATION:
            people = sorted(await conversation_participants(conn, item.id))
        elif item.audience is a.GUARDIANS:
            people = sorted({g for gs in (await guardians_of(conn, item.id)).values() for g in gs})
        elif item.audience is a.STUDENTS:
            people = await members_with_role(conn, item.id, Role.STUDENT)
        else:
            people = sorted(
                set(await members_with_role(conn, item.id, Role.HEAD_TEACHER))
                | set(await members_with_role(conn, item.id, Role.TEACHER))
            )
        return [p for p in people if p != item.actor]

    async def _push(self, item: rules.Pushable) -> None:
        now = time.time()
        async with self._resolving, self.store.read() as conn:
            people = await self._people(conn, item)
            prefs = await load_prefs(conn, people)
            wanted = [u for u in people if rules.wants(prefs[u], item.kind, now, self.zone)]
            subs: list[Subscription] = []
            if wanted:
                rows = await conn.execute(
                    select(push_subscriptions).where(push_subscriptions.c.user_id.in_(wanted))
                )
                subs = [Subscription(r.id, r.user_id, r.endpoint, r.p256dh, r.auth) for r in rows]
        if not subs:
            return
        payload = json.dumps(item.payload, ensure_ascii=False).encode()
        if len(payload) > rules.MAX_PAYLOAD_BYTES:
            log.warning("push payload of %d bytes not sent", len(payload))
            return
        outcomes = await asyncio.gather(*(self._send_one(s, payload) for s in subs))
        gone = [s.id for s, o in zip(subs, outcomes, strict=True) if o is Outcome.GONE]
        if gone:
            async with self.store.transaction() as conn:
                await conn.execute(
                    delete(push_subscriptions).where(push_subscriptions.c.id.in_(gone))
                )

    async def _send_one(self, sub: Subscription, payload: bytes) -> Outcome:
        assert self._http is not None
        async with self._sending:
            outcome = await send(
                self._http, self.vapid, sub, payload, ttl_s=self.settings.push_ttl_s
            )
        if outcome is Outcome.SENT:
            self.sent += 1
        elif outcome is Outcome.GONE:
            self.gone += 1
        else:
            self.failed += 1
        return outcome
