"""A node restarted faster than the others notice it gone moves its sessions, not ends them.

With several nodes (Redis), a worker killed and restarted by its supervisor under the same name
announces itself again before its old announcement expired: no other node ever sees it lost.
Its start-up used to end every session it ran (``server_restart``), ending lessons that a
slower restart would have moved. Here node A runs a lesson on PostgreSQL + Redis, stops without
handing anything over (as a kill would leave it: the session still stored as running on A), and
a new node A starts at once: the lesson is moved (``session.moved``, reason ``node_lost``) and
runs on the new process; members are told once, nothing is ended. Alone (no Redis) a restart
still ends them: tests/live/test_lesson.py.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from realtime.store.schema import live_sessions
from realtime.transport.rest import HUB, LIVE, NODES
from tests.conftest import make_settings, sentinel, start_server, stop_server
from tests.services import drop_postgres_database, postgres_database, redis_url

pytestmark = pytest.mark.timeout(90)


async def test_a_quick_restart_moves_the_nodes_sessions(tmp_path: Path) -> None:
    db_url, db_name = postgres_database()
    common = {
        "database_url": db_url,
        "redis_url": redis_url(),
        "bus_channel": f"homeroom-test-{uuid.uuid4().hex[:12]}",
        "node_name": "node-a",
        "drain_timeout_s": 0,  # stops as a killed node would leave it: nothing handed over
    }
    first = await start_server(make_settings(tmp_path / "a1", **common))
    second = None
    try:
        class_id = first.class_id
        # A student connected from the start: reconnects to the new process and catches up.
        student = await first.client("wanghao")
        teacher = await first.client("li")
        started = await teacher.request(
            "session.start", {"class_id": class_id, "kind": "lesson", "title": "数学"}
        )
        sid = started["session"]["id"]
        assert sid in first.app[LIVE].runtimes
        await student.wait_for(
            lambda e: e["type"] == "session.started" and e["data"]["id"] == sid, timeout=10
        )
        first.clients.remove(student)  # (stays open across the restart)
        await stop_server(first)

        port = first.settings.port
        second = await start_server(make_settings(tmp_path / "a2", port=port, **common))
        second.clients.append(student)
        assert sid in second.app[LIVE].runtimes  # moved onto the new process
        moved = await student.wait_for(
            lambda e: e["type"] == "session.moved" and e["data"]["id"] == sid, timeout=10
        )
        assert moved["data"]["reason"] == "node_lost"
        assert moved["data"]["node"] == "node-a"
        await sentinel(second, student)
        told = [
            e["type"]
            for evs in student.events.values()
            for e in evs
            if e["type"] in ("session.moved", "session.ended") and e["data"]["id"] == sid
        ]
        assert told == ["session.moved"]
        listed = await student.request("session.list", {"class_id": class_id})
        assert [s["id"] for s in listed["sessions"]] == [sid]
        joined = await student.request("session.join", {"session_id": sid})
        assert joined["you"]["role"] == "student"
    finally:
        if second is not None:
            await stop_server(second)
        drop_postgres_database(db_name)


async def test_a_session_being_moved_here_is_not_let_go_by_this_nodes_own_beat(
    tmp_path: Path,
) -> None:
    """A node adopting a session builds its runtime before the move is stored; its heartbeat
    may have read the store before that, naming the old node. It used to let the session go
    then (legs closed, requests answered not_found while the store named this node: the
    lesson ran nowhere). Now it looks again: moving it here now, or moved since, it stays."""
    srv = await start_server(make_settings(tmp_path / "a", node_name="node-a"))
    try:
        teacher = await srv.client("li")
        started = await teacher.request(
            "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "数学"}
        )
        sid = started["session"]["id"]
        live, watch = srv.app[LIVE], srv.app[NODES]
        rt = live.runtimes[sid]
        stale = {sid: "node-gone"}  # the beat's reading, from before the move was stored
        live.adopting.add(sid)  # moving it here now
        await watch.sweep({sid: rt}, stale)
        live.adopting.discard(sid)
        await watch.sweep({sid: rt}, stale)  # moved here since (the store names this node)
        assert live.runtimes.get(sid) is rt and not rt.session.ended
        assert (await teacher.request("session.join", {"session_id": sid}))["you"]["role"] == (
            "host"
        )
        # Moved away for real (the store names another node): let go, as before (that node
        # being in no registry here, the same sweep then moves it back, as a new runtime).
        async with srv.app[HUB].store.transaction() as conn:
            await conn.execute(
                live_sessions.update().where(live_sessions.c.id == sid).values(node="node-b")
            )
        await watch.sweep({sid: rt}, {sid: "node-b"})
        assert rt.session.ended and live.runtimes.get(sid) is not rt
    finally:
        await stop_server(srv)
