"""Starting live sessions and linking classrooms, on SQLite and PostgreSQL (no media needed).

Concurrent starts of one class: exactly one wins, the others get ``conflict``, and the store holds
one running session. A dual-teacher lesson only asks to link another class: that class's teachers
decide, its students hear of the lesson only once it is accepted, and it keeps its own lessons.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from clients.homeroom import HomeroomClient, RequestError
from realtime.actions.accounts import create_user
from realtime.actions.roster import create_class
from realtime.store import open_store
from realtime.store.db import MIGRATIONS, inserted_id
from realtime.store.schema import live_sessions, schools
from realtime.transport.rest import HUB
from tests.conftest import Server
from tests.services import drop_postgres_database, postgres_database

pytestmark = pytest.mark.timeout(60)


async def _running(srv: Server, class_id: int) -> int:
    async with srv.app[HUB].store.read() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(live_sessions)
                    .where(live_sessions.c.class_id == class_id, live_sessions.c.ended_at.is_(None))
                )
            ).scalar_one()
        )


async def _outcome(client: HomeroomClient, event: str, payload: dict[str, Any]) -> str:
    try:
        await client.request(event, payload)
    except RequestError as exc:
        return exc.code
    return "ok"


async def test_concurrent_starts_of_one_class_one_wins(server: Server) -> None:
    srv = server
    cid = srv.class_id
    li, chen = await srv.client("li"), await srv.client("chen")
    teachers = [li, chen, li, chen]  # each also races itself: two requests in flight at once
    for round_ in range(3):
        start = {"class_id": cid, "kind": "lesson", "title": f"第{round_}节"}
        outcomes = await asyncio.gather(*(_outcome(t, "session.start", start) for t in teachers))
        assert sorted(outcomes) == ["conflict", "conflict", "conflict", "ok"], outcomes
        assert await _running(srv, cid) == 1
        listed = await teachers[0].request("session.list", {"class_id": cid})
        assert len(listed["sessions"]) == 1
        # The class's students were told of exactly one lesson.
        host = listed["sessions"][0]["host_id"]
        ender = teachers[0] if host == srv.uid("li") else teachers[1]
        await ender.request("session.end", {"session_id": listed["sessions"][0]["id"]})
        assert await _running(srv, cid) == 0
    # A meeting of the same class is also the class's running session.
    await teachers[0].request("session.start", {"class_id": cid, "kind": "meeting", "title": "m"})
    with pytest.raises(RequestError) as err:
        await teachers[1].request(
            "session.start", {"class_id": cid, "kind": "lesson", "title": "x"}
        )
    assert err.value.code == "conflict" and "already in a live session" in str(err.value)


async def test_the_store_refuses_a_second_running_session_of_a_class(
    server: Server,
) -> None:
    """The partial unique index, not only the action's check: what two nodes could race past."""
    srv = server
    store = srv.app[HUB].store
    row = {
        "class_id": srv.class_id,
        "kind": "lesson",
        "title": "t",
        "host_id": srv.uid("li"),
        "linked": [],
        "started_at": time.time(),
    }
    async with store.transaction() as conn:
        await conn.execute(live_sessions.insert().values(**row, ended_at=time.time()))
        await conn.execute(live_sessions.insert().values(**row, ended_at=time.time()))
        await conn.execute(live_sessions.insert().values(**row))  # ended ones do not count
    with pytest.raises(IntegrityError):
        async with store.transaction() as conn:
            await conn.execute(live_sessions.insert().values(**row))
    assert await _running(srv, srv.class_id) == 1


async def test_a_dual_lesson_links_a_class_only_when_its_teacher_accepts(
    server: Server,
) -> None:
    srv = server
    village_a, village_b = srv.demo["linked_class_ids"]
    chen, wu, zhou = [await srv.client(n) for n in ("chen", "wu", "zhou")]
    li, xiaohong, admin = [await srv.client(n) for n in ("li", "xiaohong", "admin")]
    started = (
        await chen.request(
            "session.start",
            {
                "class_id": srv.class_id,
                "kind": "dual_lesson",
                "title": "English",
                "linked_class_ids": [village_a, village_b],
            },
        )
    )["session"]
    sid = started["id"]
    assert [c["class_id"] for c in started["classrooms"]] == [srv.class_id]
    assert [c["class_id"] for c in started["pending_classrooms"]] == [village_a, village_b]

    # The village teacher is asked (in the class's staff stream) and sees the lesson listed.
    asked = await wu.wait_for(lambda e: e["type"] == "session.link_requested")
    assert asked["stream"] == f"staff:{village_a}" and asked["data"]["requested_by"] == srv.uid(
        "chen"
    )
    listed = await wu.request("session.list", {"class_id": village_a})
    assert [x["id"] for x in listed["sessions"]] == [sid]
    # Its students are not told, cannot list it, and cannot join it.
    await wu.send_chat(f"class:{village_a}:students", "sentinel before acceptance")
    await xiaohong.wait_for(lambda e: e["data"].get("body") == "sentinel before acceptance")
    assert not [e for e in xiaohong.events[f"class:{village_a}:students"] if "session" in e["type"]]
    assert (await xiaohong.request("session.list", {"class_id": village_a}))["sessions"] == []
    with pytest.raises(RequestError) as err:
        await xiaohong.request("session.join", {"session_id": sid})
    assert err.value.code == "forbidden"

    # The class keeps its own lessons while asked (and after): linking never blocks them.
    own = await wu.request(
        "session.start", {"class_id": village_a, "kind": "lesson", "title": "Village maths"}
    )
    await wu.request("session.end", {"session_id": own["session"]["id"]})

    # Nobody but the class's own teachers (or the school admin) answers for it.
    for outsider in (li, chen, xiaohong):
        with pytest.raises(RequestError) as err:
            await outsider.request(
                "classroom.link", {"session_id": sid, "class_id": village_a, "accept": True}
            )
        assert err.value.code == "forbidden"
    accepted = await wu.request(
        "classroom.link", {"session_id": sid, "class_id": village_a, "accept": True}
    )
    assert [c["class_id"] for c in accepted["session"]["classrooms"]] == [srv.class_id, village_a]
    told = await xiaohong.wait_for(
        lambda e: e["type"] == "session.started" and e["data"]["id"] == sid
    )
    assert told["stream"] == f"class:{village_a}:students"
    joined = await xiaohong.request("session.join", {"session_id": sid})
    assert joined["you"]["class_id"] == village_a
    with pytest.raises(RequestError) as err:
        await wu.request(
            "classroom.link", {"session_id": sid, "class_id": village_a, "accept": True}
        )
    assert err.value.code == "conflict"  # already linked

    # Riverside's teacher declines; the school admin could have arranged it instead.
    await zhou.request(
        "classroom.link", {"session_id": sid, "class_id": village_b, "accept": False}
    )
    with pytest.raises(RequestError) as err:
        await admin.request(
            "classroom.link", {"session_id": sid, "class_id": village_b, "accept": True}
        )
    assert err.value.code == "not_found"  # the request is gone
    await chen.request("session.end", {"session_id": sid})
    async with srv.app[HUB].store.read() as conn:
        row = (await conn.execute(select(live_sessions).where(live_sessions.c.id == sid))).one()
    assert row.linked == [village_a] and row.pending_links == [] and row.ended_at is not None


async def test_a_school_admin_arranges_a_link(
    server: Server,
) -> None:
    srv = server
    village_a, village_b = srv.demo["linked_class_ids"]
    admin, xiaohong = await srv.client("admin"), await srv.client("xiaohong")
    li = await srv.client("li")
    started = (
        await li.request(
            "session.start",
            {
                "class_id": srv.class_id,
                "kind": "dual_lesson",
                "title": "Art",
                "linked_class_ids": [village_a, village_b],
            },
        )
    )["session"]
    await admin.request(
        "classroom.link", {"session_id": started["id"], "class_id": village_a, "accept": True}
    )
    await xiaohong.wait_for(lambda e: e["type"] == "session.started")
    await li.request("session.end", {"session_id": started["id"]})


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_the_migration_keeps_the_newest_of_several_running_sessions(
    kind: str, tmp_path: Path
) -> None:
    """A database where the old race let two sessions of a class run upgrades cleanly."""
    name = None
    url = f"sqlite:///{tmp_path}/m.db"
    if kind == "postgresql":
        url, name = postgres_database()
    store = open_store(url)
    try:

        def upgrade(revision: str) -> Callable[[Any], None]:
            def run(sync_conn: Any) -> None:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, revision)

            return run

        async with store.transaction() as conn:
            await conn.run_sync(upgrade("0005"))
        async with store.transaction() as conn:
            school = inserted_id(await conn.execute(schools.insert().values(name="S")))
            cid = await create_class(conn, school, "5-2")
            uid = await create_user(conn, school, "t", "T", None, now=0.0)
            row = {"class_id": cid, "kind": "lesson", "title": "t", "host_id": uid, "linked": []}
            for at in (1.0, 2.0, 3.0):
                await conn.execute(live_sessions.insert().values(**row, started_at=at))
        await store.migrate()
        async with store.read() as conn:
            running = list(
                await conn.execute(
                    select(live_sessions.c.started_at).where(live_sessions.c.ended_at.is_(None))
                )
            )
        assert [r.started_at for r in running] == [3.0]
    finally:
        await store.close()
        if name:
            drop_postgres_database(name)


async def test_a_change_is_stored_before_it_is_answered_and_only_by_the_sessions_node(
    server: Server,
) -> None:
    """What a move keeps is in the row once a hand.raise is answered; a node the session has
    been moved from (it was taken for lost) answers ``unavailable`` and changes nothing."""
    srv = server
    li = await srv.client("li")
    sid = (
        await li.request(
            "session.start",
            {"class_id": srv.class_id, "kind": "lesson", "title": "数学", "stage_places": 3},
        )
    )["session"]["id"]
    wang, ming = await srv.client("wanghao"), await srv.client("liming")
    for c in (li, wang, ming):
        await c.request("session.join", {"session_id": sid})

    async def stored() -> dict[str, Any]:
        async with srv.app[HUB].store.read() as conn:
            row = (
                await conn.execute(
                    select(live_sessions.c.live_state).where(live_sessions.c.id == sid)
                )
            ).one()
        return dict(row.live_state)

    assert (await stored())["stage_places"] == 3  # from the start
    await wang.request("hand.raise", {"session_id": sid})
    assert (await stored())["hands"] == [f"user:{srv.uid('wanghao')}"]  # when answered
    # The others moved it away (this node was frozen past its TTL): nothing changes here.
    async with srv.app[HUB].store.transaction() as conn:
        await conn.execute(
            live_sessions.update().where(live_sessions.c.id == sid).values(node="elsewhere")
        )
    assert await _outcome(ming, "hand.raise", {"session_id": sid}) == "unavailable"
    assert (await stored())["hands"] == [f"user:{srv.uid('wanghao')}"]
    view = await li.request("session.join", {"session_id": sid})
    assert view["session"]["hands"] == [f"user:{srv.uid('wanghao')}"]  # undone here too
