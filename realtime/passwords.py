"""Password hashing off the event loop, in a bounded pool.

Argon2 takes tens of milliseconds of CPU and 64 MiB per hash by design. Run on the event loop, a
burst of sign-ins stalls every socket and ``/healthz``; run in an unbounded pool, it queues
without end. Here at most ``workers`` hashes run at once (argon2-cffi releases the GIL, so the
loop keeps serving) and at most ``queue`` more wait; beyond that an attempt is refused at once
with ``rate_limited`` instead of waiting. Memory: ``workers`` x argon2's memory cost (64 MiB by
default) while busy.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from realtime.auth import hash_password, verify_password
from realtime.errors import HomeroomError

T = TypeVar("T")


class PoolBusy(HomeroomError):
    def __init__(self) -> None:
        super().__init__(
            "rate_limited",
            "the server is busy checking passwords; try again shortly",
            reason="server_busy",
            retry_after_s=1,
        )


class PasswordPool:
    def __init__(self, workers: int, queue: int) -> None:
        self.workers = max(1, workers)
        self.capacity = self.workers + max(0, queue)
        self.busy = 0
        self._dummy: str | None = None
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="argon2")

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        return await self._run(verify_password, stored_hash, password)

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password)

    async def unknown_user_hash(self) -> str:
        """A hash to verify against when the username is unknown, so that a wrong username
        takes as long as a wrong password. Made once, in the pool, at the first such sign-in
        (not at import: it costs ~50 ms)."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        return self._dummy

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.busy >= self.capacity:
            raise PoolBusy()
        self.busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.busy -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
