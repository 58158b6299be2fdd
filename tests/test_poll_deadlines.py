"""A time-limited poll closes by itself even when the node that opened it is gone.

Node A is a real ``homeroom serve`` process; B (and C) are apps in this process; all share a
fresh PostgreSQL database and a Redis channel of this test's own. A teacher on A opens a poll
with a time limit, students on B see it, and A is killed (``kill -9``) before the deadline: its
timer dies with it. The poll must still close: by the other nodes' sweeps (exactly once, though
two nodes sweep) or, with the sweeps far apart, as soon as someone reads or answers it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clients.homeroom import HomeroomClient, RequestError
from realtime.actions.poll_deadlines import deadlines
from realtime.demo import DEMO_PASSWORD
from realtime.transport.rest import HUB
from tests.conftest import (
    TEST_SECRET,
    Server,
    free_port,
    make_settings,
    sentinel,
    start_server,
    stop_server,
)
from tests.services import drop_postgres_database, postgres_database, redis_url
from tests.test_restart import ServerProcess

pytestmark = pytest.mark.timeout(90)


@dataclass
class Nodes:
    tmp: Path
    common: dict[str, Any]
    servers: list[Server]
    processes: list[ServerProcess]

    async def in_process(self, name: str, **overrides: Any) -> Server:
        srv = await start_server(
            make_settings(self.tmp / name, node_name=name, **self.common, **overrides)
        )
        self.servers.append(srv)
        return srv

    async def process(self, name: str) -> ServerProcess:
        port = free_port()
        config = self.tmp / f"{name}.toml"
        lines = [
            'host = "127.0.0.1"',
            f"port = {port}",
            f'node_name = "{name}"',
            f'secret = "{TEST_SECRET}"',
            "media_warm_start = false",
            f'storage_dir = "{self.tmp}/{name}-files"',
            "rate_burst = 1000",
            "rate_per_s = 1000.0",
            *(
                f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}"
                for k, v in self.common.items()
            ),
        ]
        config.write_text("\n".join(lines) + "\n")
        proc = ServerProcess(config, port, self.tmp / f"{name}.log")
        self.processes.append(proc)
        proc.start()
        await proc.wait_ready()
        return proc


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    db_url, db_name = postgres_database()
    common = {
        "database_url": db_url,
        "redis_url": redis_url(),
        "bus_channel": f"homeroom-test-{uuid.uuid4().hex[:12]}",
    }
    n = Nodes(tmp_path, common, [], [])
    try:
        yield n
    finally:
        for p in n.processes:
            p.stop()
        for srv in reversed(n.servers):
            await stop_server(srv)
        drop_postgres_database(db_name)


async def open_on_a_then_kill_a(
    nodes: Nodes, b: Server, student: HomeroomClient, limit_s: int
) -> dict[str, Any]:
    """A teacher on node A opens a time-limited poll; the student on B sees it; A dies."""
    a = await nodes.process("node-a")
    teacher = HomeroomClient(a.url, reconnection=False)
    await teacher.login("li", DEMO_PASSWORD)
    await teacher.connect()
    poll = await teacher.create_poll(
        b.class_id, "明天的春游去吗？", "true_false", time_limit_s=limit_s
    )
    opened = await student.wait_for(
        lambda e: e["type"] == "poll.opened" and e["data"]["id"] == poll["id"], timeout=10
    )
    assert opened["data"]["closes_at"] == poll["closes_at"]
    await student.answer_poll(poll["id"], "true")  # on B, while A's timer runs
    a.crash()
    await teacher.close()
    assert time.time() < poll["closes_at"], "A died after the deadline: the test proves nothing"
    return poll


def closed_events(c: HomeroomClient, poll_id: int) -> list[dict[str, Any]]:
    return [
        e
        for evs in c.events.values()
        for e in evs
        if e["type"] == "poll.closed" and e["data"]["id"] == poll_id
    ]


async def test_the_other_nodes_sweeps_close_it_once(nodes: Nodes) -> None:
    b = await nodes.in_process("node-b", poll_sweep_interval_s=0.2)
    c = await nodes.in_process("node-c", poll_sweep_interval_s=0.2)
    student = await b.client("wanghao")
    other = HomeroomClient(c.url)
    c.clients.append(other)
    await other.login("liming", DEMO_PASSWORD)
    await other.connect()
    poll = await open_on_a_then_kill_a(nodes, b, student, limit_s=3)

    # Both students are told, through their class stream, soon after the deadline.
    for s in (student, other):
        ev = await s.wait_for(
            lambda e: e["type"] == "poll.closed" and e["data"]["id"] == poll["id"], timeout=10
        )
        assert ev["data"]["status"] == "closed"
        # Closed at its deadline, not when a sweep happened to notice.
        assert ev["data"]["closed_at"] == poll["closes_at"]
    late = time.time() - poll["closes_at"]
    assert late < 3.0, f"told {late:.1f} s after the deadline"
    with pytest.raises(RequestError) as err:
        await other.answer_poll(poll["id"], "false")
    assert err.value.code == "conflict"

    # Exactly once, though two nodes swept every 0.2 s.
    await sentinel(b, student)
    await sentinel(c, other)
    assert len(closed_events(student, poll["id"])) == 1
    assert len(closed_events(other, poll["id"])) == 1
    swept = deadlines(b.app[HUB]).closed_by_sweep + deadlines(c.app[HUB]).closed_by_sweep
    assert swept == 1
    # The teacher, now on B, publishes the results: the answer given before the close counts.
    teacher = await b.client("li")
    got = await teacher.poll(poll["id"])
    assert got["poll"]["status"] == "closed"
    assert got["results"]["counts"] == {"true": 1, "false": 0}
    await teacher.publish_poll(poll["id"])
    ev = await other.wait_for(lambda e: e["type"] == "poll.results", timeout=10)
    assert ev["data"]["results"]["answered"] == 1


async def test_a_read_or_answer_after_the_deadline_closes_it(nodes: Nodes) -> None:
    """With B's sweep an hour apart, the first answer after the deadline closes the poll."""
    b = await nodes.in_process("node-b", poll_sweep_interval_s=3600)
    student = await b.client("wanghao")
    liming = await b.client("liming")
    poll = await open_on_a_then_kill_a(nodes, b, student, limit_s=2)
    await asyncio.sleep(max(0.0, poll["closes_at"] - time.time()) + 0.3)
    # Nobody has been told yet: A's timer died with it, and B does not sweep for an hour.
    await sentinel(b, student, liming)
    assert not closed_events(student, poll["id"])

    with pytest.raises(RequestError) as err:
        await liming.answer_poll(poll["id"], "false")
    assert err.value.code == "conflict"
    for s in (student, liming):
        ev = await s.wait_for(
            lambda e: e["type"] == "poll.closed" and e["data"]["id"] == poll["id"], timeout=10
        )
        assert ev["data"]["closed_at"] == poll["closes_at"]
    listed = await liming.polls(b.class_id)  # a read of a closed poll changes nothing more
    assert [p["status"] for p in listed if p["id"] == poll["id"]] == ["closed"]
    await sentinel(b, student, liming)
    assert len(closed_events(liming, poll["id"])) == 1
    assert deadlines(b.app[HUB]).closed_by_sweep == 0
