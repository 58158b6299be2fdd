"""Per-stream sequence numbers under concurrent writers, on SQLite and PostgreSQL.

Catch-up asks for everything after the last seq a client saw, so within a stream the seqs must be
1..N with no gap or repeat, and must become visible in the order they are given out: a reader that
has seen 7 must never find 8 committed while 6 is not (it would never ask for 6 again).

On PostgreSQL the writers come from two engines (two "nodes"), each with its own connection pool,
and each writer dawdles inside its transaction after taking its number, which is exactly when a
sequence given out outside the transaction would commit out of order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, inspect, select, text

from realtime.store import Store, open_store
from realtime.store.schema import events
from tests.services import drop_postgres_database, postgres_database

pytestmark = pytest.mark.timeout(120)

WRITERS = 200
OTHER_WRITERS = 50
STREAM = "class:1:students"
OTHER = "notices:1:guardians"


@dataclass
class Db:
    kind: str
    url: str


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    if request.param == "sqlite":
        yield Db("sqlite", f"sqlite:///{tmp_path}/seq.db")
        return
    url, name = postgres_database()
    try:
        yield Db("postgresql", url)
    finally:
        drop_postgres_database(name)


async def _dawdle(store: Store, conn: object) -> None:
    """Hold the transaction open a little, differently for each writer."""
    delay = random.uniform(0, 0.004)
    if store.dialect == "postgresql":
        await conn.execute(text("SELECT pg_sleep(:d)"), {"d": delay})  # type: ignore[attr-defined]
    else:
        await asyncio.sleep(delay)


async def _append(store: Store, stream: str, i: int) -> int:
    async with store.transaction() as conn:
        ev = await store.append(conn, stream, "test.event", {"i": i})
        await _dawdle(store, conn)
    return ev.seq


async def _tagged(store: Store, stream: str, i: int) -> tuple[str, int]:
    return stream, await _append(store, stream, i)


async def test_concurrent_appends_get_gapless_seqs_visible_in_order(db: Db) -> None:
    stores = [open_store(db.url)]
    if db.kind == "postgresql":
        stores.append(open_store(db.url))  # a second node with its own pool
    await stores[0].migrate()
    reader_store = open_store(db.url)
    done = asyncio.Event()
    observed: list[int] = []
    violations: list[str] = []
    polls = 0

    async def reader() -> None:
        nonlocal polls
        last = 0
        while True:
            finished = done.is_set()
            async with reader_store.read() as conn:
                batch = await reader_store.events_after(conn, STREAM, last, 1000)
            polls += 1
            for ev in batch:
                if ev.seq != last + 1:
                    # Seq last+1 was not visible yet while ev.seq was: it would be missed forever.
                    violations.append(f"saw {ev.seq} after {last}")
                last = ev.seq
                observed.append(ev.seq)
            if finished and not batch:
                return
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    try:
        jobs = [_tagged(stores[i % len(stores)], STREAM, i) for i in range(WRITERS)]
        jobs += [_tagged(stores[i % len(stores)], OTHER, i) for i in range(OTHER_WRITERS)]
        random.shuffle(jobs)
        results = await asyncio.gather(*jobs)
    finally:
        done.set()
        await asyncio.wait_for(reading, 30)

    # Every writer was told a different number, and together they are 1..N.
    assert sorted(seq for s, seq in results if s == STREAM) == list(range(1, WRITERS + 1))
    assert sorted(seq for s, seq in results if s == OTHER) == list(range(1, OTHER_WRITERS + 1))
    assert not violations, violations[:10]
    assert observed == list(range(1, WRITERS + 1))
    assert polls > 5  # the reader really read while the writers wrote
    async with reader_store.read() as conn:
        for stream, n in ((STREAM, WRITERS), (OTHER, OTHER_WRITERS)):
            rows = await reader_store.events_after(conn, stream, 0, 10_000)
            assert [e.seq for e in rows] == list(range(1, n + 1)), stream
            assert sorted(e.data["i"] for e in rows) == list(range(n))  # each write exactly once
            assert (await reader_store.last_seqs(conn, [stream]))[stream] == n
        # What a syncing client is told of every stream it follows, one never written to too.
        assert await reader_store.last_seqs(conn, [OTHER, "class:999:students", STREAM]) == {
            OTHER: OTHER_WRITERS,
            "class:999:students": 0,
            STREAM: WRITERS,
        }
    for s in [*stores, reader_store]:
        await s.close()


async def test_a_failed_transaction_gives_back_its_seq(db: Db) -> None:
    """A writer that rolls back leaves no hole: the next writer gets the number it took."""
    store = open_store(db.url)
    await store.migrate()
    assert await _append(store, STREAM, 0) == 1
    with pytest.raises(RuntimeError):
        async with store.transaction() as conn:
            await store.append(conn, STREAM, "test.event", {"i": "rolled back"})
            raise RuntimeError("the handler failed after appending")
    assert await _append(store, STREAM, 1) == 2
    async with store.read() as conn:
        rows = await store.events_after(conn, STREAM, 0, 100)
    assert [(e.seq, e.data["i"]) for e in rows] == [(1, 0), (2, 1)]
    await store.close()


async def test_migrations_run_twice_are_idempotent(db: Db) -> None:
    first = open_store(db.url)
    await first.migrate()
    await _append(first, STREAM, 0)

    def schema(sync_conn: object) -> dict[str, list[str]]:
        insp = inspect(sync_conn)
        return {t: sorted(c["name"] for c in insp.get_columns(t)) for t in insp.get_table_names()}

    async with first.read() as conn:
        before = await conn.run_sync(schema)
    await first.migrate()  # the same process again
    await first.close()
    second = open_store(db.url)  # and a new one, as on a restart
    await second.migrate()
    async with second.read() as conn:
        after = await conn.run_sync(schema)
        versions = list(await conn.execute(text("SELECT version_num FROM alembic_version")))
        kept = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
    assert after == before
    assert {"events", "streams", "messages", "users", "alembic_version"} <= set(after)
    assert len(versions) == 1  # one head, not one row per run
    assert kept == 1  # nothing was dropped or recreated
    assert await _append(second, STREAM, 1) == 2
    await second.close()


async def test_migrations_build_the_schema_the_code_declares(db: Db) -> None:
    """What the migrations create is what store/schema.py declares: tables, columns, indexes.

    An index declared in schema.py but never migrated would exist in tests that create tables
    from the metadata and be missing on every real school's database.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from realtime.store.schema import metadata

    store = open_store(db.url)
    await store.migrate()

    def differences(sync_conn: object) -> list[object]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": False})
        return list(compare_metadata(context, metadata))

    async with store.read() as conn:
        diff = await conn.run_sync(differences)
    await store.close()
    assert diff == []


async def test_prepared_statements_answer_as_sqlalchemy_does(db: Db) -> None:
    """The hot paths' prepared statements (on SQLite straight to the driver) give the same rows,
    the same stored JSON and the same errors as the statements run through SQLAlchemy."""
    from sqlalchemy import bindparam
    from sqlalchemy.exc import IntegrityError

    from realtime.store.prepared import Prepared
    from realtime.store.schema import messages

    store = open_store(db.url)
    await store.migrate()
    data = {"body": "明天春游，请带水壶 Bring a water bottle", "n": 3, "none": None}
    async with store.transaction() as conn:
        ev = await store.append(conn, STREAM, "chat.message", data)  # a Prepared insert
        await store.append(conn, STREAM, "chat.message", None, {"staff": True})
    assert ev.seq == 1
    from realtime.actions.accounts import create_user
    from realtime.store.db import inserted_id
    from realtime.store.schema import schools

    async with store.transaction() as conn:
        school = inserted_id(await conn.execute(schools.insert().values(name="School")))
        sender = await create_user(conn, school, "wang", "王老师", None, now=1.0)
    row = {"stream": STREAM, "seq": 1, "sender_id": sender, "client_id": "c-1", "body": "hi"}
    insert = Prepared(messages.insert())
    async with store.transaction() as conn:
        res = await conn.execute(insert, {**row, "sent_at": 1.5})
        message_id = res.inserted_primary_key[0]
    # The same client id again: SQLAlchemy's IntegrityError, and nothing written.
    with pytest.raises(IntegrityError):
        async with store.transaction() as conn:
            await conn.execute(insert, {**row, "seq": 2, "sent_at": 2.5})
    find = select(messages).where(
        messages.c.sender_id == bindparam("sender_id"),
        messages.c.client_id == bindparam("client_id"),
    )
    params = {"sender_id": sender, "client_id": "c-1"}
    async with store.read() as conn:
        plain = (await conn.execute(find, params)).first()
        fast = (await conn.execute(Prepared(find), params)).first()
        missing = (await conn.execute(Prepared(find), {**params, "client_id": "c-2"})).first()
        count = (await conn.execute(select(func.count()).select_from(messages))).scalar_one()
        stored = await store.events_after(conn, STREAM, 0, 10)  # read back by SQLAlchemy
    assert fast is not None and fast.id == plain.id == message_id
    assert fast._asdict() == plain._asdict() and fast.body == "hi" and fast.sent_at == 1.5
    assert missing is None and count == 1
    assert [(e.seq, e.data, e.staff_data) for e in stored] == [
        (1, data, None),
        (2, None, {"staff": True}),
    ]
    with pytest.raises(ValueError, match="expanding"):
        async with store.read() as conn:
            await conn.execute(
                Prepared(
                    select(messages).where(messages.c.id.in_(bindparam("ids", expanding=True)))
                ),
                {"ids": [1]},
            )
    await store.close()
