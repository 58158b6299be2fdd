"""A reconnection's catch-up (``sync``) is exact whatever the number of streams, and cheap: its
statements do not grow with the streams followed (store/catchup.py), and on PostgreSQL a
guardian's costs 6 round trips (19 before, with BEGIN and ROLLBACK around each read).

On SQLite and PostgreSQL (the ``server`` fixture): a teacher of 8 classes follows more streams
than one statement of the catch-up takes (``catchup.CHUNK``)."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from realtime.actions.roster import add_member, create_class
from realtime.app import HUB
from realtime.domain.roles import Role
from realtime.store import Store
from realtime.store.catchup import CHUNK
from realtime.store.schema import classes, streams
from tests.conftest import Server


@contextlib.contextmanager
def round_trips(store: Store) -> Iterator[list[str]]:
    """Every statement the store sends PostgreSQL meanwhile, BEGIN and ROLLBACK included (a
    prepared statement through the cursor, the others through asyncpg's simple queries)."""
    seen: list[str] = []
    logged: weakref.WeakSet[Any] = weakref.WeakSet()
    engine = store.engine
    assert engine is not None

    def on_statement(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        seen.append(statement.split()[0] + " " + statement.split()[1])

    def on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        raw = dbapi_conn.driver_connection
        if raw not in logged:
            logged.add(raw)
            raw.add_query_logger(lambda r: seen.append(r.query) if active else None)

    active = True
    event.listen(engine.sync_engine, "before_cursor_execute", on_statement)
    event.listen(engine.sync_engine.pool, "checkout", on_checkout)
    try:
        yield seen
    finally:
        active = False
        event.remove(engine.sync_engine, "before_cursor_execute", on_statement)
        event.remove(engine.sync_engine.pool, "checkout", on_checkout)


async def test_a_catch_up_over_many_streams_brings_each_event_once_at_exact_positions(
    server: Server,
) -> None:
    srv = server
    hub = srv.app[HUB]
    teacher = srv.uid("li")
    async with hub.store.transaction() as conn:
        school = (
            await conn.execute(select(classes.c.school_id).where(classes.c.id == srv.class_id))
        ).scalar_one()
        extra = [await create_class(conn, school, f"三年级{i}班") for i in range(7)]
        for class_id in extra:
            await add_member(conn, class_id, teacher, Role.HEAD_TEACHER)
    li = await srv.client("li")
    wang = await srv.client("wanghao")
    demo = f"class:{srv.class_id}:students"
    sent: dict[str, list[str]] = {}
    for class_id in [srv.class_id, *extra]:
        for which in ("students", "guardians"):
            stream = f"class:{class_id}:{which}"
            sent[stream] = [f"{class_id}-{which}-{i}" for i in range(2)]
            for body in sent[stream]:
                await li.send_chat(stream, body)
    for i in range(3):
        body = f"王浩 {i}"
        first = await wang.send_chat(demo, body)
        sent[demo].append(body)
        if i == 0:
            await li.request("chat.read", {"stream": demo, "seq": first["seq"]})
            read_seq = first["seq"]

    # Another of the teacher's devices catches up on everything, from 0.
    device = await srv.client("li", connect=False)
    await device.connect(sync=False)
    first = await device.request("sync", {"cursors": {}})
    followed = [s["stream"] for s in first["streams"]]
    assert len(followed) > CHUNK
    with (
        round_trips(hub.store)
        if hub.store.dialect == "postgresql"
        else contextlib.nullcontext([]) as seen
    ):
        ack = await device.request("sync", {"cursors": dict.fromkeys(followed, 0)})
    assert ack["more"] == []
    where = {s["stream"]: s for s in ack["streams"]}
    assert sorted(where) == sorted(followed)
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for ev in ack["events"]:
        by_stream.setdefault(ev["stream"], []).append(ev)
    for stream in followed:
        seqs = [ev["seq"] for ev in by_stream.get(stream, [])]
        # Every event of the stream, once, in order: a teacher sees them all.
        assert seqs == list(range(1, where[stream]["last_seq"] + 1)), stream
    for stream, bodies in sent.items():
        got = [ev["data"]["body"] for ev in by_stream[stream] if ev["type"] == "chat.message"]
        assert got == bodies, stream
    # The read position and unread count of each chat: only Wang Hao's messages after it.
    assert where[demo]["read_seq"] == read_seq
    assert where[demo]["unread"] == 2
    other = f"class:{extra[0]}:students"
    assert (where[other]["read_seq"], where[other]["unread"]) == (0, 0)
    assert "read_seq" not in where[f"notices:{extra[0]}:students"]
    if hub.store.dialect == "postgresql":
        # Memberships and conversations; 2 x 2 chunks of positions and events; conversations.
        assert len(seen) <= 7, seen


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
async def test_a_guardians_catch_up_costs_six_round_trips_on_postgresql(server: Server) -> None:
    srv = server
    hub = srv.app[HUB]
    li = await srv.client("li")
    stream = f"class:{srv.class_id}:guardians"
    await li.send_chat(stream, "明天家长会")
    mom = await srv.client("wang_mom", connect=False)
    await mom.connect(sync=False)
    cursors = {s["stream"]: 0 for s in (await mom.request("sync", {"cursors": {}}))["streams"]}
    with round_trips(hub.store) as seen:
        ack = await mom.request("sync", {"cursors": cursors})
    assert [e["data"]["body"] for e in ack["events"] if e["stream"] == stream] == ["明天家长会"]
    # Memberships with children, conversations, her history floor; positions, events,
    # conversations' details. No BEGIN or ROLLBACK: reads run in autocommit.
    assert len(seen) == 6, seen
    assert not [s for s in seen if s.split()[0] in ("BEGIN", "BEGIN;", "ROLLBACK", "ROLLBACK;")]


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
async def test_a_write_inside_a_read_is_refused(store: Store) -> None:
    """Reads run in autocommit on PostgreSQL: a write there would be committed at once."""
    with pytest.raises(RuntimeError, match=r"store\.transaction"):
        async with store.read() as conn:
            await conn.execute(streams.insert().values(key="user:1", last_seq=1))
    async with store.read() as conn:
        assert (await conn.execute(select(streams.c.key))).all() == []
