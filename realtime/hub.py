"""The hub: what every action needs (settings, store, bus, tokens, limits), passed in."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from realtime.auth import DeviceTokens, TokenIssuer
from realtime.bus import Bus
from realtime.config import Settings
from realtime.domain.ratelimit import RateLimiter
from realtime.domain.signin import SignInGuard, SignInLimits
from realtime.errors import HomeroomError
from realtime.passwords import PasswordPool
from realtime.store.db import DbConnection, Store, StoredEvent
from realtime.store.schema import users

if TYPE_CHECKING:
    from realtime.push.dispatcher import PushDispatcher


class _Held:
    """Events emitted while answering one client request, held until its ack is out."""

    __slots__ = ("events", "open")

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.open = True


# A task started during a request (a timer, say) copies this context and outlives the request:
# once the request is answered its holder is closed, and the task's events go out at once.
_held: ContextVar[_Held | None] = ContextVar("homeroom_held_events", default=None)


@dataclass
class Hub:
    settings: Settings
    store: Store
    bus: Bus
    tokens: TokenIssuer
    limiter: RateLimiter = field(init=False)
    passwords: PasswordPool = field(init=False)
    signin: SignInGuard = field(init=False)
    devices: DeviceTokens = field(init=False)
    # Attachment bytes (realtime.actions.uploads.Files), set by the app factory.
    files: Any = None
    # Web Push of committed events (None: off); set by the app at start-up.
    pusher: PushDispatcher | None = field(init=False, default=None)

    _names: dict[int, str] = field(init=False, default_factory=dict)
    # Per-app helpers that keep state between requests (the poll counts' coalescers), by name.
    services: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        s = self.settings
        self.limiter = RateLimiter(s.rate_burst, s.rate_per_s)
        self.passwords = PasswordPool(s.password_hash_workers, s.password_hash_queue)
        self.signin = SignInGuard(
            SignInLimits(
                account_free_failures=s.signin_account_free_failures,
                account_backoff_max_s=s.signin_account_backoff_max_s,
                device_free_failures=s.signin_device_free_failures,
                address_burst=s.signin_address_burst,
                address_per_s=s.signin_address_per_s,
                address_failure_burst=s.signin_address_failure_burst,
                address_failures_per_s=s.signin_address_failures_per_s,
                register_failure_burst=s.register_address_failure_burst,
                register_failures_per_s=s.register_address_failures_per_s,
                failure_window_s=s.signin_failure_window_s,
            )
        )
        self.devices = DeviceTokens(s.signing_keys, s.secret_key_id)
        self.store.publish_to(self._publish)

    async def display_name(self, conn: DbConnection, user_id: int) -> str:
        """A person's display name, remembered: names change rarely, messages often."""
        name = self._names.get(user_id)
        if name is None:
            row = (
                await conn.execute(select(users.c.display_name).where(users.c.id == user_id))
            ).first()
            name = row.display_name if row else ""
            if len(self._names) > 100_000:
                self._names.clear()
            self._names[user_id] = name
        return name

    def now(self) -> float:
        return time.time()

    def check_rate(self, user_id: int, what: str) -> None:
        if not self.limiter.allow((user_id, what), time.monotonic()):
            raise HomeroomError(
                "rate_limited",
                "slow down: too many requests, try again shortly",
                reason="too_many_requests",
                retry_after_s=1,
            )

    async def _publish(self, events: list[StoredEvent]) -> None:
        """The store's publisher: committed events go to every node, which delivers them to
        its followers. Inside :meth:`acks_first` (a client's request) they go out right after
        the request's acknowledgement instead.

        Actions never call this: :meth:`Store.transaction` does, after its commit.
        """
        crash = self.settings.test_crash_before_publish
        if crash and any(e.type == crash for e in events):
            # Tests only (docs/operations.md): die between the commit and the publish, as a
            # node killed at the worst moment would; the others' followers must deliver it.
            os.kill(os.getpid(), signal.SIGKILL)
        if self.pusher is not None:
            # Only the committing node gets here with these events: each is pushed once.
            self.pusher.offer(events)
        held = _held.get()
        if held is not None and held.open:
            held.events.extend(events)
            return
        await self.bus.publish({"t": "events", "events": [e.wire() for e in events]})

    @asynccontextmanager
    async def acks_first(self) -> AsyncIterator[None]:
        """Around one client request: the events it commits are published after its ack.

        The sender learns its message is stored before the server spends milliseconds writing
        it to every member of the class, and its next message can travel meanwhile. The events
        were committed before the ack either way; clients order what they receive by
        ``(stream, seq)``, not by the ack. Nothing awaits between the ack and the publish, so
        this reorders nothing: on SQLite (one transaction at a time) events go out in commit
        order; on PostgreSQL concurrent transactions could always publish out of order, and a
        client that sees a gap in a stream catches up by ``seq``.
        """
        held = _Held()
        token = _held.set(held)
        try:
            yield
        finally:
            held.open = False
            _held.reset(token)
            if held.events:
                await self.bus.publish({"t": "events", "events": [e.wire() for e in held.events]})

    async def resync_user(self, user_id: int) -> None:
        """Tell every node that this person's streams changed (a link approved, a conversation)."""
        await self.bus.publish({"t": "resync", "user": user_id})

    async def ephemeral(
        self, rooms: list[str], event: str, data: dict[str, Any], skip_user: int | None = None
    ) -> None:
        await self.bus.publish(
            {"t": "eph", "rooms": rooms, "event": event, "data": data, "skip_user": skip_user}
        )
