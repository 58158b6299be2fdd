"""Group commit for SQLite: several requests' transactions made durable by one sync.

With ``synchronous=FULL`` every SQLite commit syncs the write-ahead log to disk: 0.3 ms on an
idle disk of the machine measured in docs/performance.md, 3 ms (median) to 80 ms when other
work shares the disk. Run on the event loop's thread, that stalled every connection of the node
for as long; so the sync runs on a thread of its own (SQLite releases the GIL meanwhile) while
the loop goes on serving, and the requests that arrive meanwhile share the next sync.

How: the store's single connection keeps one physical transaction (``BEGIN``) open while
requests run; each request's transaction is a ``SAVEPOINT`` inside it (released when it
succeeds, rolled back to when it fails, so one request's failure never undoes another's work).
The first request of a batch schedules a flush as a task; every request that gets the
connection before that task does (they wait on the same FIFO lock) joins the batch. The flush
runs ``COMMIT`` (the one sync) on the commit thread, holding the connection (the requests that
arrive meanwhile queue up for the next batch); only then are the batch's requests let out of
their ``transaction()``: nothing is acknowledged, and no event published, before it is on disk.
A request's work becomes visible to later reads in the same batch before the sync; if the sync
fails, every request of the batch gets the error (none was acknowledged).

Under no load a batch is one request and costs what a plain commit costs; under load the sync
is shared by every request that queued meanwhile.

Turns: statements run on the event loop's thread, so requests that start in the same loop
iteration while the lock is free would run their transactions back to back, and nothing else
on the node runs meanwhile (fifty uploads created at once: 134 ms in one iteration,
bench/uploads.py). Once ``TURN_S`` of such work has been done in an iteration, the next
transaction or read takes the lock and waits for the next iteration; the others queue behind
it and, woken one at a time, run one per iteration, with timers and other connections served
between them. They still join the same batch: the sync is shared as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar

from sqlalchemy import Connection, RootTransaction

# Synchronous database work one loop iteration does before the next transaction or read
# waits for the next iteration (see "Turns" above). Far below the event loop's 50 ms budget:
# the rest of the iteration (parsing requests, writing answers) needs its share.
TURN_S = 0.005

# Called (when set, in the context of a client request) right before a request starts waiting
# for the connection or for its batch's sync: the transport then reads the connection's next
# request meanwhile (it queues behind this one: the lock is first come, first served).
durable_wait: ContextVar[Callable[[], None] | None] = ContextVar("durable_wait", default=None)


class GroupCommit:
    """The batching of one SQLite connection's transactions; see the module docstring."""

    def __init__(self, lock: asyncio.Lock, connection: Callable[[], Connection]) -> None:
        self._lock = lock
        self._connection = connection
        self._tx: RootTransaction | None = None
        self._batch: asyncio.Future[None] | None = None
        # Counters for tests and docs/performance.md: commits (syncs) and transactions in them.
        self.commits = 0
        self.transactions = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-commit")
        self._flushes: set[asyncio.Task[None]] = set()  # referenced until done
        # When this loop iteration's database work began (None: none yet in this iteration).
        self._turn_began: float | None = None
        # Turns given up (tests and docs/performance.md).
        self.turns = 0

    async def _turn(self) -> None:
        """Called holding the lock, before using the connection: wait for the next loop
        iteration if this one has done ``TURN_S`` of database work already."""
        if self._turn_began is not None and time.perf_counter() - self._turn_began > TURN_S:
            self.turns += 1
            # The reset scheduled with this iteration's first work runs before this resumes.
            await asyncio.sleep(0)
        if self._turn_began is None:
            self._turn_began = time.perf_counter()
            asyncio.get_running_loop().call_soon(self._new_turn)

    def _new_turn(self) -> None:
        self._turn_began = None

    def _park(self) -> None:
        park = durable_wait.get()
        if park is not None:
            park()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        if self._lock.locked():
            self._park()
        async with self._lock:
            await self._turn()
            conn = self._connection()
            batch = self._join(conn)
            savepoint = conn.begin_nested()
            try:
                yield conn
            except BaseException:
                if savepoint.is_active:
                    savepoint.rollback()
                raise
            savepoint.commit()
            self.transactions += 1
        if not batch.done():
            self._park()
            # Shielded: a request cancelled while waiting must not cancel the batch's future.
            await asyncio.shield(batch)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        """A read under the lock; inside an open batch it sees the batch's work."""
        if self._lock.locked():
            self._park()
        async with self._lock:
            await self._turn()
            conn = self._connection()
            if self._tx is not None:
                savepoint = conn.begin_nested()
                try:
                    yield conn
                finally:
                    if savepoint.is_active:
                        savepoint.rollback()
                return
            # Ends with a rollback: a read never keeps its snapshot (and the WAL) open.
            with conn.begin() as tx:
                yield conn
                tx.rollback()

    def _join(self, conn: Connection) -> asyncio.Future[None]:
        if self._batch is None:
            self._tx = conn.begin()
            self._batch = asyncio.get_running_loop().create_future()
            flush = asyncio.get_running_loop().create_task(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return self._batch

    async def _flush(self) -> None:
        async with self._lock:
            await self._commit()

    async def _commit(self) -> None:
        tx, batch = self._tx, self._batch
        self._tx = self._batch = None
        if tx is None or batch is None:
            return
        try:
            # The lock is held: nothing else uses the connection while the thread does.
            await asyncio.get_running_loop().run_in_executor(self._thread, tx.commit)
        except asyncio.CancelledError:
            # The loop is going away; the thread may still be committing: leave it be.
            batch.cancel()
            raise
        except BaseException as exc:
            with contextlib.suppress(Exception):
                tx.rollback()
            batch.set_exception(exc)
            batch.exception()  # retrieved: every waiter gets it; none may be left
            return
        self.commits += 1
        batch.set_result(None)

    async def close(self) -> None:
        """Commit whatever batch is open (the store is closing)."""
        async with self._lock:
            await self._commit()
        self._thread.shutdown(wait=True)
