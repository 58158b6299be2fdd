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

from realtime.transport.rest import LIVE
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
