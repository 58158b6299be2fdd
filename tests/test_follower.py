"""Events a dead node never published still reach every follower, once.

Node A is a real ``homeroom serve`` process with the test-only fault switch
``test_crash_before_publish``: it kills itself (SIGKILL) right after committing a chat message,
before publishing it. Node B, in this process, shares A's PostgreSQL database and Redis channel;
its follower reads the positions of the streams its people follow and delivers the message the
bus never brought, within a few seconds and exactly once per connection.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from clients.homeroom import HomeroomClient
from realtime.cluster.follower import Follower
from realtime.cluster.positions import MAX_ABOVE, StreamPositions
from realtime.demo import DEMO_PASSWORD
from realtime.store import Store
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


def count_raw_deliveries(client: HomeroomClient) -> Counter[tuple[str, int]]:
    """Every stream event the server writes to this client, duplicates included."""
    seen: Counter[tuple[str, int]] = Counter()
    handler = client._on_stream_event

    async def counting(ev: dict[str, Any]) -> None:
        seen[(ev["stream"], ev["seq"])] += 1
        await handler(ev)

    client.sio.on("event", counting)
    return seen


async def metric(srv: Server, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(srv.url + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def node_config(path: Path, port: int, values: dict[str, Any]) -> Path:
    lines = [
        'host = "127.0.0.1"',
        f"port = {port}",
        f'secret = "{TEST_SECRET}"',
        "media_warm_start = false",
        "rate_burst = 1000",
        "rate_per_s = 1000.0",
    ]
    for k, v in values.items():
        lines.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}")
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_an_event_its_node_never_published_reaches_other_nodes_once(
    tmp_path: Path,
) -> None:
    db_url, db_name = postgres_database()
    channel = f"homeroom-follow-{uuid.uuid4().hex[:12]}"
    common = {"database_url": db_url, "redis_url": redis_url(), "bus_channel": channel}
    a: ServerProcess | None = None
    b: Server | None = None
    try:
        b = await start_server(make_settings(tmp_path / "b", node_name="node-b", **common))
        port = free_port()
        config = node_config(
            tmp_path / "a.toml",
            port,
            {
                **common,
                "node_name": "node-a",
                "storage_dir": f"{tmp_path}/a-files",
                "test_crash_before_publish": "chat.message",
            },
        )
        a = ServerProcess(config, port, tmp_path / "a.log")
        a.start()
        await a.wait_ready()

        stream = f"class:{b.class_id}:students"
        teacher = await b.client("li")  # on node B
        raw = count_raw_deliveries(teacher)
        student = HomeroomClient(a.url, reconnection=False)  # on node A
        await student.login("wanghao", DEMO_PASSWORD)
        await student.connect()
        await sentinel(b, teacher)  # the teacher follows the class: B's follower polls it
        before = await metric(b, "homeroom_follower_recovered_total")

        # A commits the message and dies before publishing it: no ack, no bus message.
        sent_at = time.monotonic()
        send = asyncio.create_task(student.send_chat(stream, "写完作业了", client_id="lost-1"))
        await asyncio.to_thread(a.proc.wait, 30)  # type: ignore[union-attr]
        assert a.proc is not None and a.proc.returncode == -9
        got = await teacher.wait_for(lambda e: e["data"].get("body") == "写完作业了", timeout=10)
        waited = time.monotonic() - sent_at
        with pytest.raises(Exception):  # noqa: B017 - whatever the client says, no ack came
            await asyncio.wait_for(send, 5)
        print(f"follower_recovered_s={waited:.2f}")
        # Within about two polls of the default 1 s; generous for a loaded machine.
        assert waited < 6.0, f"the teacher on B got it after {waited:.1f} s"
        assert got["type"] == "chat.message"

        # Once: the follower's copy only (B's own later events arrive after it, not it again).
        await sentinel(b, teacher)
        assert raw[(stream, got["seq"])] == 1
        assert max(raw.values()) == 1
        assert await metric(b, "homeroom_follower_recovered_total") == before + 1

        # And the stream goes on: B's next message follows it in order, no gap.
        after = await teacher.send_chat(stream, "收到")
        assert after["seq"] == got["seq"] + 1
        await sentinel(b, teacher)
        assert raw[(stream, after["seq"])] == 1
    finally:
        if a is not None:
            a.stop()
        if b is not None:
            await stop_server(b)
        drop_postgres_database(db_name)


async def test_the_bus_and_the_follower_together_deliver_each_event_once(tmp_path: Path) -> None:
    """Two nodes in this process, the follower polling often (50 ms) while messages cross the
    bus both ways: every connection gets every message exactly once, in order."""
    db_url, db_name = postgres_database()
    channel = f"homeroom-follow-{uuid.uuid4().hex[:12]}"
    common = {
        "database_url": db_url,
        "redis_url": redis_url(),
        "bus_channel": channel,
        "follow_interval_s": 0.05,
    }
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            settings = make_settings(tmp_path / name, node_name=f"node-{name}", **common)
            servers.append(await start_server(settings, seed=name == "a"))
        a, b = servers
        b.demo = a.demo
        stream = f"class:{a.class_id}:students"
        wang, liming = await a.client("wanghao"), await b.client("liming")
        teacher = await b.client("li")
        counts = [count_raw_deliveries(c) for c in (wang, liming, teacher)]
        per = 60
        acks = await asyncio.gather(
            *(wang.send_chat(stream, f"a{n}", client_id=f"a{n}") for n in range(per)),
            *(liming.send_chat(stream, f"b{n}", client_id=f"b{n}") for n in range(per)),
        )
        seqs = sorted(ack["seq"] for ack in acks)
        await sentinel(a, wang)
        await sentinel(b, liming, teacher)
        for client, raw in zip((wang, liming, teacher), counts, strict=True):
            got = [(s, q) for (s, q) in raw if s == stream]
            assert sorted(q for _, q in got) == seqs
            assert max(raw.values()) == 1, [k for k, v in raw.items() if v > 1]
            assert [e["seq"] for e in client.events[stream]] == seqs
        # The followers did poll meanwhile (and every copy they brought was dropped above).
        for srv in servers:
            assert await metric(srv, "homeroom_follower_polls_total") > 0
        # Everyone leaves: no stream stays followed (the positions' memory goes with them).
        assert await metric(b, "homeroom_followed_streams") > 0
        for c in (wang, liming, teacher):
            await c.close()
        deadline = time.monotonic() + 10
        for srv in servers:
            while await metric(srv, "homeroom_followed_streams") > 0:
                assert time.monotonic() < deadline, "streams still followed after everyone left"
                await asyncio.sleep(0.05)
    finally:
        for srv in reversed(servers):
            await stop_server(srv)
        drop_postgres_database(db_name)


async def test_the_follower_reads_the_store_on_both_databases(store: Store) -> None:
    """A follower over a bare store: the positions come back only for streams that moved, and
    what stayed missing for a whole poll is read in order and delivered once."""
    got: list[tuple[str, int, bool]] = []
    positions = StreamPositions()

    async def deliver(events: list[dict[str, Any]], recovered: bool) -> None:
        for e in events:
            if positions.first_delivery(e["stream"], e["seq"], recovered=recovered):
                got.append((e["stream"], e["seq"], recovered))

    follower = Follower(store, positions, deliver, interval_s=1.0, page=2)
    async with store.transaction() as conn:
        await store.append(conn, "user:1", "t", {"n": 1})
    async with store.read() as conn:
        # user:2 has no events yet: it is at 0 (past -1, "not known yet").
        ahead = await store.streams_ahead(conn, {"user:1": 0, "user:2": -1, "user:3": 0})
        assert ahead == {"user:1": 1, "user:2": 0}
        assert await store.streams_ahead(conn, {"user:1": 1}) == {}
    positions.follow("user:1")
    positions.follow("user:2")
    assert await follower.poll() == 0  # not known yet: a catch-up may be on its way
    assert positions.upto("user:1") is None
    assert await follower.poll() == 0  # still not known: user:1 starts at 1, user:2 at 0
    assert (positions.upto("user:1"), positions.upto("user:2")) == (1, 0)
    async with store.transaction() as conn:  # three events nobody published
        for n in (2, 3, 4):
            await store.append(conn, "user:1", "t", {"n": n})
        await store.append(conn, "user:2", "t", {"n": 1})
    assert await follower.poll() == 0  # seen behind once
    assert await follower.poll() == 3  # read (a page of 2, then the rest next poll)
    assert await follower.poll() == 1
    assert got == [
        ("user:1", 2, True),
        ("user:1", 3, True),
        ("user:2", 1, True),
        ("user:1", 4, True),
    ]
    assert await follower.poll() == 0 and follower.queries > 0


# --- the positions, without I/O ---------------------------------------------------------------


def test_each_event_is_delivered_once_whichever_path_brings_it() -> None:
    p = StreamPositions()
    p.follow("s")
    p.caught_up("s", 10)  # the first client's catch-up read the stream up to 10
    assert not p.first_delivery("s", 10)  # had it from the catch-up
    assert p.first_delivery("s", 12)  # out of order (concurrent writers)
    assert p.first_delivery("s", 11)
    assert not p.first_delivery("s", 11) and not p.first_delivery("s", 12)
    assert p.upto("s") == 12
    assert p.first_delivery("other", 1) and p.first_delivery("other", 1)  # followed by nobody


def test_the_follower_reads_only_what_stayed_missing_for_a_whole_poll() -> None:
    p = StreamPositions()
    p.follow("s")
    p.follow("t")
    assert p.known() == {"s": -1, "t": -1}  # not known yet: the store answers with both
    assert p.observe({"s": 5, "t": 0}) == {}  # first look: a catch-up may be on its way
    assert p.known() == {"s": -1, "t": -1}
    assert p.observe({"s": 5, "t": 0}) == {}  # none came: each starts at its present end
    assert p.known() == {"s": 5, "t": 0}
    # 6 committed; the bus brings it before the next poll: nothing read.
    assert p.observe({"s": 6}) == {}
    assert p.first_delivery("s", 6)
    assert p.observe({}) == {}  # the store answers only with streams past what we said
    # 7 committed by a node that died before publishing it: seen once, read on the next poll.
    assert p.observe({"s": 7}) == {}
    assert p.observe({"s": 8}) == {"s": 6}
    assert p.first_delivery("s", 7, recovered=True) and p.first_delivery("s", 8, recovered=True)
    assert p.recovered == 2
    assert not p.first_delivery("s", 8)  # the bus's late copy of 8
    assert p.duplicates == 1
    assert p.observe({}) == {}
    # Behind on one poll, caught up by the bus before the next: not read, and forgotten.
    assert p.observe({"t": 1}) == {}
    assert p.first_delivery("t", 1)
    assert p.observe({}) == {}
    assert p.observe({"t": 2}) == {}  # 2 is new: seen once, not read yet


def test_a_poll_between_a_room_entry_and_its_catch_up_does_not_skip_events() -> None:
    p = StreamPositions()
    p.follow("s")  # the first follower on this node entered the room
    assert p.observe({"s": 7}) == {}  # a poll: the store is at 7 (7 just committed)
    p.caught_up("s", 6)  # the catch-up read up to 6: the stream starts there, not at 7
    assert p.upto("s") == 6
    assert p.observe({"s": 7}) == {}
    assert p.observe({"s": 7}) == {"s": 6}  # 7 never came by the bus: read and delivered


def test_a_stream_nobody_follows_any_more_is_forgotten() -> None:
    p = StreamPositions()
    p.follow("s")
    p.follow("s")
    p.unfollow("s")
    assert p.streams() == ["s"]
    p.unfollow("s")
    assert p.streams() == [] and p.known() == {}
    assert p.observe({"s": 3}) == {}


def test_a_gap_nobody_fills_is_given_up_on_within_the_bound() -> None:
    p = StreamPositions()
    p.follow("s")
    p.caught_up("s", 0)
    for seq in range(2, MAX_ABOVE + 3):  # 1 never comes
        assert p.first_delivery("s", seq)
    assert p.upto("s") == MAX_ABOVE + 2
