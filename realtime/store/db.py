"""The store: an async SQLAlchemy engine, transactions, and the per-stream event log."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeAlias

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from realtime import jsoncodec
from realtime.errors import HomeroomError
from realtime.gate import Full, Gate
from realtime.store.groupcommit import GroupCommit
from realtime.store.outage import (
    StoreHealth,
    pool_exhausted,
    store_busy,
    store_unavailable,
    unreachable,
)
from realtime.store.prepared import Prepared
from realtime.store.schema import events, streams

MIGRATIONS = Path(__file__).parent / "migrations"
# PostgreSQL: how long opening a connection may take before the request answers ``unavailable``.
CONNECT_TIMEOUT_S = 5.0
# PostgreSQL: connections kept open, and opened beyond those when all are busy.
POOL_SIZE = 10
POOL_OVERFLOW = 10
# Whether this task already holds a place of the store's gate (a read inside a transaction,
# say): it does not queue for a second one behind others that wait for its first.
_IN_STORE: ContextVar[bool] = ContextVar("in_store", default=False)


def async_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


class StoredEvent:
    """One event of a stream as stored: the sequence number is its id within the stream."""

    __slots__ = ("at", "data", "seq", "staff_data", "stream", "type")

    def __init__(
        self,
        stream: str,
        seq: int,
        type: str,
        at: float,
        data: dict[str, Any] | None,
        staff_data: dict[str, Any] | None,
    ) -> None:
        self.stream = stream
        self.seq = seq
        self.type = type
        self.at = at
        self.data = data
        self.staff_data = staff_data

    def for_staff(self) -> dict[str, Any]:
        body = self.staff_data if self.staff_data is not None else self.data
        return {
            "stream": self.stream,
            "seq": self.seq,
            "type": self.type,
            "at": self.at,
            "data": body,
        }

    def wire(self) -> dict[str, Any]:
        """The form the bus carries (both bodies; each node picks per follower)."""
        return {
            "stream": self.stream,
            "seq": self.seq,
            "type": self.type,
            "at": self.at,
            "data": self.data,
            "staff_data": self.staff_data,
        }

    def for_member(self) -> dict[str, Any] | None:
        if self.data is None:
            return None
        return {
            "stream": self.stream,
            "seq": self.seq,
            "type": self.type,
            "at": self.at,
            "data": self.data,
        }


class SyncConnection:
    """The async face of a synchronous SQLAlchemy connection, for SQLite.

    SQLite statements take microseconds; handing each to a worker thread (aiosqlite) costs a
    thread switch under the GIL, often a millisecond, which is far more than the work. So on
    SQLite the store runs statements on the event loop's thread, one transaction at a time.
    A :class:`Prepared` statement goes to the driver directly (see ``store/prepared.py``).
    """

    __slots__ = ("_conn", "_dbapi", "appended")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._dbapi: Any = None
        # The events appended in this transaction, published once it commits.
        self.appended: list[StoredEvent] | None = None

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        if type(statement) is Prepared:
            if self._dbapi is None:
                self._dbapi = self._conn.connection.dbapi_connection
            return statement.run(self._dbapi, self._conn.dialect, parameters)
        if parameters is None:
            return self._conn.execute(statement)
        return self._conn.execute(statement, parameters)

    async def run_sync(self, fn: Any, *args: Any) -> Any:
        return fn(self._conn, *args)

    @property
    def dialect_name(self) -> str:
        return str(self._conn.dialect.name)


class PooledConnection:
    """An asyncpg connection of the pool (PostgreSQL); a :class:`Prepared` statement runs as
    the ordinary statement it wraps. In a read (``reading``) a write is refused: it would be
    committed at once (reads run without a transaction, see :meth:`Store.read`)."""

    __slots__ = ("_conn", "appended", "reading")

    def __init__(self, conn: AsyncConnection, reading: bool = False) -> None:
        self._conn = conn
        self.appended: list[StoredEvent] | None = None
        self.reading = reading

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        if type(statement) is Prepared:
            statement = statement.statement
        if self.reading and getattr(statement, "is_dml", False):
            raise RuntimeError("a write inside store.read(): use store.transaction()")
        if parameters is None:
            return await self._conn.execute(statement)
        return await self._conn.execute(statement, parameters)

    async def run_sync(self, fn: Any, *args: Any) -> Any:
        return await self._conn.run_sync(fn, *args)

    @property
    def dialect_name(self) -> str:
        return str(self._conn.dialect.name)


# What actions receive inside a transaction: both offer ``await conn.execute(statement)``.
DbConnection: TypeAlias = SyncConnection | PooledConnection

# Called with the events a transaction appended, once it has committed (see Store.transaction).
Publisher: TypeAlias = Callable[[list[StoredEvent]], Awaitable[None]]


class Store:
    """Owns the engine. Every write goes through :meth:`transaction`.

    PostgreSQL: an asyncpg pool, transactions run concurrently. SQLite: one connection used on the
    event loop's thread, transactions one at a time (SQLite has one writer anyway).

    Events are published on commit (Zulip's ``send_event_on_commit``): :meth:`append` records
    each event on its transaction, and the transaction hands them to the publisher after the
    commit, and only then. An action cannot forget to tell the clients, and nothing is told
    before it is stored or after it was rolled back.
    """

    def __init__(
        self,
        engine: AsyncEngine | None = None,
        sync_engine: Engine | None = None,
        checkpointer: Checkpointer | None = None,
        statement_timeout_s: float = 0.0,
        gate: Gate | None = None,
    ) -> None:
        self.engine = engine
        # PostgreSQL: reads run in autocommit, each statement on its own. Under READ COMMITTED
        # (the default) a transaction gives each statement its own snapshot anyway, so this
        # changes nothing they see, and saves two round trips per read: BEGIN and ROLLBACK
        # (a reconnection's catch-up is two reads). The same pool: no connection more.
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT") if engine else None
        # PostgreSQL: transactions and reads waiting for a pooled connection, bounded
        # (``database_queue``); beyond it, or waiting too long, ``unavailable`` with the
        # reason ``database_busy`` (the database is there, its connections are all in use).
        self.gate = gate
        self.statement_timeout_s = statement_timeout_s
        self.sync_engine = sync_engine
        self.checkpointer = checkpointer
        self._lock = asyncio.Lock()
        self._sync_conn: Connection | None = None
        self._publisher: Publisher | None = None
        # PostgreSQL reachable or not, as the last request found it (SQLite: always up).
        self.health = StoreHealth()
        # SQLite: transactions batched into one durable commit (store/groupcommit.py).
        self.group = GroupCommit(self._lock, self._sqlite)
        dialect = (engine or sync_engine).dialect  # type: ignore[union-attr]
        self.dialect = dialect.name
        # Built once: every event appended runs these two.
        upsert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(streams)
        self._next_seq = Prepared(
            upsert.values(key=bindparam("key"), last_seq=1)
            .on_conflict_do_update(
                index_elements=[streams.c.key], set_={"last_seq": streams.c.last_seq + 1}
            )
            .returning(streams.c.last_seq)
        )
        self._append = Prepared(events.insert())
        self._events_after = Prepared(
            select(events)
            .where(events.c.stream == bindparam("stream"), events.c.seq > bindparam("after"))
            .order_by(events.c.seq)
            .limit(bindparam("limit"))
        )
        self._last_seqs = select(streams).where(
            streams.c.key.in_(bindparam("keys", expanding=True))
        )
        self._last_seq = Prepared(
            select(streams.c.last_seq).where(streams.c.key == bindparam("key"))
        )
        # PostgreSQL: two arrays in, only the streams that moved out (see streams_ahead).
        # A stream without a row yet is at 0.
        self._ahead = text(
            "SELECT k.key, COALESCE(s.last_seq, 0) AS last_seq"
            " FROM unnest(CAST(:keys AS text[]), CAST(:seqs AS bigint[])) AS k(key, seq)"
            " LEFT JOIN streams s ON s.key = k.key WHERE COALESCE(s.last_seq, 0) > k.seq"
        )

    def _sqlite(self) -> Connection:
        """The SQLite connection, opened once and kept: checking a connection out of a pool
        and resetting it on return cost more than most of the statements run on it."""
        assert self.sync_engine is not None
        if self._sync_conn is None or self._sync_conn.closed:
            self._sync_conn = self.sync_engine.connect()
        return self._sync_conn

    def publish_to(self, publisher: Publisher | None) -> None:
        """Where committed events go (the hub's bus). Without one they are only stored."""
        self._publisher = publisher

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[DbConnection]:
        """One transaction; the events appended in it are published after it commits.

        An exception in the body rolls back and publishes nothing. The publish happens after
        SQLite's lock is released, as the actions' own publish did before.
        """
        tx: DbConnection
        if self.sync_engine is not None:
            async with self.group.transaction() as conn:
                tx = SyncConnection(conn)
                yield tx
        else:
            assert self.engine is not None
            async with self._pooled():
                try:
                    async with self.engine.begin() as aconn:
                        tx = PooledConnection(aconn)
                        yield tx
                except Exception as exc:
                    self._refusal(exc)
                    raise
            if not self.health.up:
                self.health.answered()
        # On SQLite the group commit returns once the batch holding this transaction is on
        # disk: nothing is told before it would survive a power loss.
        appended = tx.appended
        if appended and self._publisher is not None:
            await self._publisher(appended)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[DbConnection]:
        if self.sync_engine is not None:
            async with self.group.read() as conn:
                yield SyncConnection(conn)
            return
        assert self._reader is not None
        async with self._pooled():
            try:
                async with self._reader.connect() as aconn:
                    yield PooledConnection(aconn, reading=True)
            except Exception as exc:
                self._refusal(exc)
                raise
        if not self.health.up:
            self.health.answered()

    @asynccontextmanager
    async def _pooled(self) -> AsyncIterator[None]:
        """A place among the pool's connections, waiting in turn (PostgreSQL)."""
        if self.gate is None or _IN_STORE.get():
            yield
            return
        try:
            ticket = await self.gate.enter()
        except Full as full:
            self.health.busy += 1
            raise store_busy(full.retry_after_s) from None
        token = _IN_STORE.set(True)
        try:
            yield
        finally:
            _IN_STORE.reset(token)
            ticket.release()

    def _refusal(self, exc: Exception) -> None:
        """Raise the answer for an error of a transaction or read that means the database
        could not be reached (counted for /healthz and /metrics), or that every pooled
        connection stayed busy (it is there: not counted as down); otherwise return."""
        if pool_exhausted(exc):
            self.health.busy += 1
            raise store_busy() from exc
        if unreachable(exc):
            self.health.failed()
            raise store_unavailable() from exc

    async def ping(self) -> bool:
        """Whether the database answers (busy counts as answering: it is there)."""
        try:
            async with self.read() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except HomeroomError as exc:
            return exc.details.get("reason") == "database_busy"
        except Exception:
            return False

    async def migrate(self) -> None:
        if self.engine is not None and self.statement_timeout_s:
            # A migration may rewrite a big table: on a connection of its own, with no
            # statement time-out.
            engine = create_async_engine(
                self.engine.url, connect_args={"timeout": CONNECT_TIMEOUT_S}
            )
            try:
                async with engine.begin() as aconn:
                    await aconn.run_sync(_upgrade)
            finally:
                await engine.dispose()
            return
        async with self.transaction() as conn:
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.stop)
        if self.engine is not None:
            await self.engine.dispose()
        if self.sync_engine is not None:
            await self.group.close()
            if self._sync_conn is not None:
                self._sync_conn.close()
                self._sync_conn = None
            self.sync_engine.dispose()

    async def next_seq(self, conn: DbConnection, stream: str) -> int:
        """Give out the next sequence number of ``stream`` inside the caller's transaction.

        The counter row stays locked until the transaction ends, which serializes the writers of
        this stream only: a reader never sees seq N+1 committed before seq N.
        """
        return int((await conn.execute(self._next_seq, {"key": stream})).scalar_one())

    async def append(
        self,
        conn: DbConnection,
        stream: str,
        type: str,
        data: dict[str, Any] | None,
        staff_data: dict[str, Any] | None = None,
        *,
        seq: int | None = None,
    ) -> StoredEvent:
        """Append one event to a stream in the caller's transaction.

        It is published when that transaction commits (never if it rolls back).
        """
        if seq is None:
            seq = await self.next_seq(conn, stream)
        at = time.time()
        await conn.execute(
            self._append,
            {
                "stream": stream,
                "seq": seq,
                "type": type,
                "at": at,
                "data": data,
                "staff_data": staff_data,
            },
        )
        event = StoredEvent(stream, seq, type, at, data, staff_data)
        if conn.appended is None:
            conn.appended = [event]
        else:
            conn.appended.append(event)
        return event

    async def events_after(
        self, conn: DbConnection, stream: str, after: int, limit: int
    ) -> list[StoredEvent]:
        params = {"stream": stream, "after": after, "limit": limit}
        rows = await conn.execute(self._events_after, params)
        return [event_of(r) for r in rows]

    async def streams_ahead(self, conn: DbConnection, known: dict[str, int]) -> dict[str, int]:
        """The last seq of each stream in ``known`` whose last seq in the store is past the one
        given (a stream without events is at 0). The database compares: with thousands of
        streams and nothing new, the answer is empty and costs the caller next to nothing."""
        if not known:
            return {}
        if self.sync_engine is not None:
            last = await self.last_seqs(conn, list(known))
            return {k: v for k, v in last.items() if v > known[k]}
        rows = await conn.execute(self._ahead, {"keys": list(known), "seqs": list(known.values())})
        return {r.key: int(r.last_seq) for r in rows}

    async def last_seqs(self, conn: DbConnection, keys: Sequence[str]) -> dict[str, int]:
        if not keys:
            return {}
        if self.sync_engine is not None:
            # SQLite, in process: a prepared look-up per key (microseconds each) costs less than
            # SQLAlchemy rendering an IN list of a new length; over the network one query wins.
            out: dict[str, int] = {}
            for key in keys:
                last = (await conn.execute(self._last_seq, {"key": key})).scalar()
                out[key] = int(last or 0)
            return out
        rows = await conn.execute(self._last_seqs, {"keys": list(keys)})
        found = {r.key: int(r.last_seq) for r in rows}
        return {k: found.get(k, 0) for k in keys}


async def insert_missing(
    conn: DbConnection, table: Table, rows: list[dict[str, Any]], *returning: Column[Any]
) -> list[Any]:
    """Insert the rows whose key is not there yet; returns the ``returning`` columns of those
    inserted. A concurrent insert of the same key is not an error (``ON CONFLICT DO NOTHING``,
    which both databases speak, each in its own dialect)."""
    if not rows:
        return []
    insert = postgresql.insert if conn.dialect_name == "postgresql" else sqlite.insert
    stmt = insert(table).values(rows).on_conflict_do_nothing().returning(*returning)
    return list(await conn.execute(stmt))


def inserted_id(result: Any) -> int:
    """The primary key of the row an INSERT just wrote."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def event_of(r: Any) -> StoredEvent:
    """The event of a row of ``events``."""
    return StoredEvent(r.stream, int(r.seq), r.type, r.at, r.data, r.staff_data)


def _upgrade(sync_conn: Any) -> None:
    # Imported here: Alembic costs about a second of start-up that only migrations need.
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


class Checkpointer:
    """Runs SQLite's WAL checkpoints on a thread and connection of its own.

    A checkpoint copies the write-ahead log into the database file and syncs it to disk; run
    automatically it happens inside a commit on the event loop's thread, and a slow disk turns
    that sync into a stall of every connection on the node (hundreds of milliseconds seen here).
    The store's own connection turns automatic checkpoints off; this thread checkpoints every
    ``interval`` seconds (PASSIVE: it never waits for, or blocks, the writer).
    """

    def __init__(self, path: str, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=5)
        try:
            while not self._stop.wait(self.interval):
                # Busy or locked: the next round catches up.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# SQLite's ``synchronous`` levels offered (docs/operations.md): ``full`` syncs the log at every
# commit, so an acknowledged write survives power loss and OS crashes; ``normal`` (WAL) survives
# a process crash only: the last commits before a power loss can be lost.
SYNCHRONOUS = ("full", "normal")


def _sqlite_pragmas(synchronous: str) -> Any:
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"sqlite synchronous must be one of {SYNCHRONOUS}")

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling is off (it cannot nest): BEGIN, SAVEPOINT and
        # COMMIT are issued by SQLAlchemy (_sqlite_begin), as group commit needs.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=5000")
        # Checkpoints run on the Checkpointer's thread, never inside a commit on the event loop.
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    return on_connect


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def open_store(
    url: str,
    *,
    sqlite_synchronous: str = "full",
    statement_timeout_s: float = 0.0,
    queue: int = 256,
    queue_wait_s: float = 5.0,
) -> Store:
    """The store of ``url``. PostgreSQL: a statement that has no answer after
    ``statement_timeout_s`` (0: no limit) fails, and its request answers ``unavailable``; at
    most ``queue`` transactions and reads wait for one of the pool's connections, each at most
    ``queue_wait_s``, the others answer ``unavailable`` (``database_busy``) at once."""
    if url.startswith("sqlite"):
        sync_url = "sqlite:///" + url.split(":///", 1)[1]
        path = sync_url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            sync_url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            json_serializer=jsoncodec.dumps,
            json_deserializer=jsoncodec.loads,
        )
        event.listen(engine, "connect", _sqlite_pragmas(sqlite_synchronous))
        event.listen(engine, "begin", _sqlite_begin)
        if path and path != ":memory:":
            # The first connection creates the file and sets WAL mode before the thread starts.
            with engine.connect():
                pass
            return Store(sync_engine=engine, checkpointer=Checkpointer(path))
        return Store(sync_engine=engine)
    return Store(
        create_async_engine(
            async_url(url),
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            # asyncpg waits 60 s for a connection by default: a request would hang that long
            # while the database is unreachable, instead of answering ``unavailable``.
            connect_args={
                "timeout": CONNECT_TIMEOUT_S,
                # A network that drops packets (no reset) leaves a statement waiting for TCP's
                # retransmissions, many minutes; this bounds the wait of every request.
                "command_timeout": statement_timeout_s or None,
            },
            json_serializer=jsoncodec.dumps,
            json_deserializer=jsoncodec.loads,
        ),
        statement_timeout_s=statement_timeout_s,
        gate=Gate(POOL_SIZE + POOL_OVERFLOW, queue, queue_wait_s),
    )
