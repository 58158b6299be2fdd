"""A lost node's live session is moved to another node, exactly once.

Node A is a real ``homeroom serve`` process; nodes B and C are apps in this process. All three
share a fresh PostgreSQL database and a Redis channel (and registry keys) of this test's own.
A teacher starts a lesson on A; a student connected to B sees it in ``session.list`` (answered
from the store, not B's memory) and asks a question in it. ``kill -9`` of A: its announcement
expires from the registry, B and C both notice, and the lesson is stored as moved to one of
them (reason ``node_lost``); the student on B is told once, through the class stream, within a
few seconds; the lesson and its open question go on (tests/live/test_failover.py: the media).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from clients.homeroom import HomeroomClient, RequestError
from realtime.demo import DEMO_PASSWORD
from realtime.transport.rest import LIVE, NODES
from tests.conftest import (
    TEST_SECRET,
    free_port,
    make_settings,
    sentinel,
    start_server,
    stop_server,
)
from tests.services import drop_postgres_database, postgres_database, redis_url
from tests.test_restart import ServerProcess

pytestmark = pytest.mark.timeout(90)

HEARTBEAT_S = 0.5
TTL_S = 2.0


async def test_a_lost_nodes_lesson_is_moved_to_another_node_once(tmp_path: Path) -> None:
    redis = redis_url()
    db_url, db_name = postgres_database()
    channel = f"homeroom-test-{uuid.uuid4().hex[:12]}"
    common = {
        "database_url": db_url,
        "redis_url": redis,
        "bus_channel": channel,
        "node_heartbeat_s": HEARTBEAT_S,
        "node_ttl_s": TTL_S,
        # Placement by load only: the lesson started through A must run on A, whatever a
        # loaded machine makes of a process's CPU.
        "placement_cpu_full": 1000.0,
    }
    servers = []
    a: ServerProcess | None = None
    try:
        b = await start_server(make_settings(tmp_path / "b", node_name="node-b", **common))
        servers.append(b)
        c = await start_server(make_settings(tmp_path / "c", node_name="node-c", **common))
        servers.append(c)
        port = free_port()
        config = tmp_path / "a.toml"
        config.write_text(
            "\n".join(
                [
                    'host = "127.0.0.1"',
                    f"port = {port}",
                    'node_name = "node-a"',
                    f'secret = "{TEST_SECRET}"',
                    "media_warm_start = false",
                    f'storage_dir = "{tmp_path}/a-files"',
                    "rate_burst = 1000",
                    "rate_per_s = 1000.0",
                    *(
                        f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}"
                        for k, v in common.items()
                    ),
                ]
            ).replace("'", '"')
            + "\n"
        )
        a = ServerProcess(config, port, tmp_path / "a.log")
        a.start()
        await a.wait_ready()

        # B sees A come (the heartbeat is half a second).
        watch = b.app[NODES]
        deadline = time.monotonic() + 10
        while not watch.membership.alive("node-a"):
            assert time.monotonic() < deadline, "node B never saw node A in the registry"
            await asyncio.sleep(0.1)

        teacher = HomeroomClient(a.url, reconnection=False)
        await teacher.login("li", DEMO_PASSWORD)
        await teacher.connect()
        started = await teacher.request(
            "session.start", {"class_id": b.class_id, "kind": "lesson", "title": "语文 on A"}
        )
        sid = started["session"]["id"]

        student = await b.client("wanghao")
        listed = await student.request("session.list", {"class_id": b.class_id})
        assert [s["id"] for s in listed["sessions"]] == [sid]  # from the store, on any node
        question = await student.ask(b.class_id, "老师，这个字怎么读？", session_id=sid)
        board = await student.request("question.list", {"class_id": b.class_id})
        assert board["questions"] == []  # in the lesson, not on the board yet

        a.crash()  # kill -9: no shutdown handler, its registry key just stops being renewed
        killed_at = time.monotonic()
        moved = await student.wait_for(
            lambda e: e["type"] == "session.moved" and e["data"]["id"] == sid, timeout=10
        )
        told_s = time.monotonic() - killed_at
        assert moved["data"]["reason"] == "node_lost"
        new_node = moved["data"]["node"]
        assert new_node in ("node-b", "node-c")
        print(f"node_lost_told_s={told_s:.2f}")
        assert told_s < 6.0, f"the student was told after {told_s:.1f} s"

        # Exactly once, though B and C both noticed: one announcement in the class stream.
        await sentinel(b, student)
        announced = [
            e
            for evs in student.events.values()
            for e in evs
            if e["type"] in ("session.moved", "session.ended") and e["data"]["id"] == sid
        ]
        assert announced == [moved]
        assert b.app[NODES].sessions_taken_over + c.app[NODES].sessions_taken_over == 1
        runs = [srv.settings.node_name for srv in (b, c) if sid in srv.app[LIVE].runtimes]
        assert runs == [new_node]
        # Whichever of B and C noticed first moved it; the other sees A gone on its next beat.
        deadline = time.monotonic() + 5
        while b.app[NODES].membership.alive("node-a") or c.app[NODES].membership.alive("node-a"):
            assert time.monotonic() < deadline, "node A is still in the registry"
            await asyncio.sleep(0.05)
        # The lesson goes on: listed, joined again on its new node, its question still in it.
        listed = await student.request("session.list", {"class_id": b.class_id})
        assert [s["id"] for s in listed["sessions"]] == [sid]
        assert (await student.request("session.join", {"session_id": sid}))["you"]["role"] == (
            "student"
        )
        board = await student.request("question.list", {"class_id": b.class_id})
        assert board["questions"] == []
        # The class cannot start a second lesson meanwhile.
        other = await b.client("chen")
        with pytest.raises(RequestError) as err:
            await other.request(
                "session.start", {"class_id": b.class_id, "kind": "lesson", "title": "数学 on B"}
            )
        assert err.value.code == "conflict"

        # The registry, as an admin sees it: B and C, not A; the new node announces the lesson.
        deadline = time.monotonic() + 5
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(b.url + "/healthz/nodes") as r:
                    assert r.status == 200
                    body = await r.json()
                by_name = {n["name"]: n for n in body["nodes"]}
                assert sorted(by_name) == ["node-b", "node-c"]
                assert body["node"] == "node-b"
                if by_name[new_node]["live_sessions"] == 1:
                    break
                assert time.monotonic() < deadline, f"{new_node} never announced it: {body}"
                await asyncio.sleep(0.1)
        assert sum(n["live_sessions"] for n in by_name.values()) == 1
        # Ended by the host, the open question goes to the board as always.
        host = await b.client("li")
        await host.request("session.end", {"session_id": sid})
        await student.wait_for(
            lambda e: e["type"] == "session.ended" and e["data"]["id"] == sid, timeout=10
        )
        deadline = time.monotonic() + 5
        while True:
            board = await student.request("question.list", {"class_id": b.class_id})
            if [q["id"] for q in board["questions"]] == [question["id"]]:
                break
            assert time.monotonic() < deadline, board
            await asyncio.sleep(0.1)
        await teacher.close()
    finally:
        if a is not None:
            a.stop()
        for srv in reversed(servers):
            await stop_server(srv)
        drop_postgres_database(db_name)
