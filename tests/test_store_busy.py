"""PostgreSQL's pooled connections all in use is not the database being down.

On a real PostgreSQL: when every place of the store's gate in front of the pool is held, a
transaction or read waits its turn in a bounded queue; beyond the queue, or past its wait, it
answers ``unavailable`` with the reason ``database_busy`` (and ``retry_after_s``), never
``database_unreachable``, and the store's health stays "up" (``/healthz`` too). The same holds
when SQLAlchemy's own pool runs out of connections (its time-out). And through a real server: a
``chat.send`` refused so is answered ``database_busy``, and nothing was stored.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from clients.homeroom import RequestError
from realtime.errors import HomeroomError
from realtime.gate import Gate
from realtime.store.db import Store, async_url, open_store
from realtime.transport.rest import HUB
from tests.conftest import make_settings, start_server, stop_server
from tests.services import drop_postgres_database, postgres_database

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pg_url() -> object:
    url, name = postgres_database()
    yield url
    drop_postgres_database(name)


def assert_busy(err: HomeroomError) -> None:
    assert err.code == "unavailable"
    assert err.details["reason"] == "database_busy"
    assert err.details["retry_after_s"] >= 1


async def test_a_full_pool_answers_database_busy_and_the_store_stays_up(pg_url: str) -> None:
    store = open_store(pg_url, queue=1, queue_wait_s=0.3)
    await store.migrate()
    assert store.gate is not None and store.gate.limit == 20
    store.gate = Gate(1, 1, wait_s=0.3)  # one place, one waiter: a small pool to fill
    try:
        holding = asyncio.Event()
        done = asyncio.Event()

        async def hold() -> None:
            async with store.read() as conn:
                await conn.execute(text("SELECT 1"))
                holding.set()
                await done.wait()

        holder = asyncio.ensure_future(hold())
        await holding.wait()
        # One waits its turn, and past its wait is refused as busy.
        with pytest.raises(HomeroomError) as err:
            async with store.read() as conn:
                await conn.execute(text("SELECT 1"))
        assert_busy(err.value)
        # The queue full: refused at once, the transaction too.
        waiter = asyncio.ensure_future(store.ping())
        await asyncio.sleep(0.05)
        with pytest.raises(HomeroomError) as err:
            async with store.transaction() as conn:
                await conn.execute(text("SELECT 1"))
        assert_busy(err.value)
        assert await waiter is True  # busy counts as answering (the health check)
        assert store.health.up and store.health.outages == 0 and store.health.busy == 3
        # A read inside the holder's transaction does not queue behind the others.
        done.set()
        await holder
        async with store.transaction() as conn, store.read() as inner:
            await inner.execute(text("SELECT 1"))
        # Once the holder is done, the next waiter gets in.
        async with store.read() as conn:
            assert (await conn.execute(text("SELECT 7"))).scalar() == 7
    finally:
        await store.close()


async def test_sqlalchemys_pool_time_out_is_busy_not_unreachable(pg_url: str) -> None:
    engine = create_async_engine(async_url(pg_url), pool_size=1, max_overflow=0, pool_timeout=0.2)
    store = Store(engine)  # no gate: SQLAlchemy's pool alone
    try:
        async with store.read() as conn:
            await conn.execute(text("SELECT 1"))
            with pytest.raises(HomeroomError) as err:
                async with store.read() as other:
                    await other.execute(text("SELECT 1"))
        assert_busy(err.value)
        assert store.health.up and store.health.refused == 0 and store.health.busy == 1
    finally:
        await store.close()


async def test_a_send_refused_as_busy_says_so_and_stores_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    srv = await start_server(
        make_settings(tmp_path, database_url=pg_url, database_queue=0, database_queue_wait_s=0.2)
    )
    try:
        student = await srv.client("wanghao")
        stream = f"class:{srv.class_id}:students"
        store = srv.app[HUB].store
        assert store.gate is not None
        # Every place taken (as by a storm of catch-ups), none may wait.
        tickets = [await store.gate.enter() for _ in range(store.gate.limit)]
        message = {"stream": stream, "client_id": "c1", "body": "你好"}
        with pytest.raises(RequestError) as err:
            await student.request("chat.send", message)
        assert err.value.code == "unavailable"
        assert err.value.details["reason"] == "database_busy"
        health = await student.http("GET", "/healthz", auth=False)
        assert health["store"] == "up"
        for t in tickets:
            t.release()
        sent = await student.request("chat.send", message)
        assert not sent.get("duplicate")  # the refused one was not stored
    finally:
        await stop_server(srv)
