"""A Redis outage during traffic: two nodes on a Redis server of the test's own.

While Redis is down, people on the same node keep getting each other's messages live (once
each), /healthz says the bus is down, and every send is still acknowledged. People on the other
node get them too, from the store, within a few seconds: each node's follower reads the positions
of the streams its people follow (realtime/cluster/follower.py) and delivers what the bus did
not bring, with no later event needed to show a gap. When Redis comes back, both nodes reconnect
by themselves and deliver across nodes live again; nothing was lost and no connection got any
event twice; /metrics counts the outage, the reconnection and what the followers delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from clients.homeroom import HomeroomClient
from tests.conftest import Server, free_port, make_settings, sentinel, start_server, stop_server
from tests.nodes import two_nodes

pytestmark = [pytest.mark.timeout(90)]


class RedisServer:
    """A redis-server of this test's own (never the machine's shared one), keeping nothing."""

    def __init__(self, port: int, tmp: Path) -> None:
        self.port = port
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        pytest.fail(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[tuple[Server, Server]]:
    async with two_nodes(tmp_path, redis_server.url) as pair:
        yield pair


async def health(srv: Server) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(srv.url + "/healthz") as r:
        return r.status, await r.json()


async def until_bus(srv: Server, state: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await health(srv)
        if body["bus"] == state:
            assert status == 200
            return body
        assert time.monotonic() < deadline, f"{srv.url}: bus still {body['bus']}, not {state}"
        await asyncio.sleep(0.05)


async def metric(srv: Server, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(srv.url + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def count_raw_deliveries(client: HomeroomClient) -> Counter[tuple[str, int]]:
    """Every stream event the server writes to this client, duplicates included."""
    seen: Counter[tuple[str, int]] = Counter()
    handler = client._on_stream_event

    async def counting(ev: dict[str, Any]) -> None:
        seen[(ev["stream"], ev["seq"])] += 1
        await handler(ev)

    client.sio.on("event", counting)
    return seen


async def test_redis_outage_local_delivery_then_recovery(
    nodes: tuple[Server, Server], redis_server: RedisServer
) -> None:
    a, b = nodes
    stream = f"class:{a.class_id}:students"
    wang = await a.client("wanghao")  # node A
    liming = await a.client("liming")  # node A
    teacher = await b.client("li")  # node B
    raw = count_raw_deliveries(liming)
    raw_b = count_raw_deliveries(teacher)
    # Each node announces itself with its first heartbeat: wait until A sees B too.
    body = (await health(a))[1]
    for _ in range(100):
        if body.get("nodes") == 2:
            break
        await asyncio.sleep(0.1)  # the registry offers nothing to wait on
        body = (await health(a))[1]
    assert body == {
        "ok": True,
        "status": "ok",
        "store": "up",
        "bus": "up",
        "node": body["node"],
        "nodes": 2,  # both nodes announced in the Redis registry
    }

    first = await wang.send_chat(stream, "before")
    await teacher.wait_for(lambda e: e["data"].get("id") == first["id"])

    # Traffic from A all along: one message every 30 ms, each must be acknowledged.
    acked: list[str] = []
    live_on_a_during_outage: list[str] = []
    outage = asyncio.Event()
    stop = asyncio.Event()

    async def traffic() -> None:
        n = 0
        while not stop.is_set():
            body = f"m{n}"
            await wang.send_chat(stream, body, client_id=f"outage-{n}")
            acked.append(body)
            n += 1
            await asyncio.sleep(0.03)

    recovered_before = await metric(b, "homeroom_follower_recovered_total")
    sender = asyncio.create_task(traffic())
    try:
        await asyncio.sleep(0.3)
        redis_server.stop()
        await until_bus(a, "down")
        body = await until_bus(b, "down")
        assert body["status"] == "degraded" and body["store"] == "up"
        outage.set()
        # Sent while Redis is down: liming, on the same node, gets them live.
        during = len(acked)
        deadline = time.monotonic() + 10
        while len(acked) < during + 10:
            assert time.monotonic() < deadline, "sends stalled while Redis was down"
            await asyncio.sleep(0.03)
        sent_down = acked[during : during + 10]
        for text in sent_down:
            await liming.wait_for(lambda e, t=text: e["data"].get("body") == t, timeout=5)
            live_on_a_during_outage.append(text)
        assert (await health(a))[1]["bus"] == "down"  # still down: that was local delivery
        # Node B's clients get them too, from the store (B's follower), Redis still down.
        for text in sent_down:
            await teacher.wait_for(lambda e, t=text: e["data"].get("body") == t, timeout=10)
        assert (await health(b))[1]["bus"] == "down"
        recovered = await metric(b, "homeroom_follower_recovered_total") - recovered_before
        assert recovered >= len(sent_down)
        # And the other way: the teacher on B writes, wang on A reads it (A's follower).
        from_b = await teacher.send_chat(stream, "from B, Redis down")
        await wang.wait_for(lambda e: e["data"].get("id") == from_b["id"], timeout=10)
        assert (await health(a))[1]["bus"] == "down"

        redis_server.start()
        await until_bus(a, "up")
        await until_bus(b, "up")
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await sender
    assert live_on_a_during_outage == sent_down

    # Every acknowledged message reached B with no later event to show a gap (the followers).
    for text in acked:
        await teacher.wait_for(lambda e, t=text: e["data"].get("body") == t, timeout=10)

    # Across nodes again, both ways, live.
    after_a = await wang.send_chat(stream, "after, from A")
    await teacher.wait_for(lambda e: e["data"].get("id") == after_a["id"])
    after_b = await teacher.send_chat(stream, "after, from B")
    await wang.wait_for(lambda e: e["data"].get("id") == after_b["id"])

    # Nothing acknowledged is lost: the teacher on B caught up on every message, in order.
    for text in [*acked, "after, from A"]:
        await teacher.wait_for(lambda e, t=text: e["data"].get("body") == t, timeout=10)
    seqs = [e["seq"] for e in teacher.events[stream]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # Node A's own messages reached liming once each, never again from Redis.
    await liming.wait_for(lambda e: e["data"].get("id") == after_b["id"])
    assert raw and max(raw.values()) == 1, [k for k, v in raw.items() if v > 1]
    # And every event reached the teacher on B once: bus, follower and resync never overlap.
    await sentinel(b, teacher)
    assert raw_b and max(raw_b.values()) == 1, [k for k, v in raw_b.items() if v > 1]

    # A's sends during the outage could not go to B: counted (B's clients caught up above).
    assert await metric(a, "homeroom_bus_publish_failures_total") >= len(sent_down)
    for srv in (a, b):
        assert await metric(srv, "homeroom_bus_outages_total") >= 1
        assert await metric(srv, "homeroom_bus_reconnects_total") >= 1
        assert await metric(srv, "homeroom_bus_up") == 1


async def test_without_the_follower_the_reconnection_resyncs_everyone(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """``follow_interval_s = 0``: other nodes' events wait for Redis, and when it returns every
    client is told to resync and catches up by sequence, with no later event to show a gap."""
    async with two_nodes(tmp_path, redis_server.url, follow_interval_s=0) as (a, b):
        stream = f"class:{a.class_id}:students"
        wang = await a.client("wanghao")  # node A
        teacher = await b.client("li")  # node B
        first = await wang.send_chat(stream, "before")
        await teacher.wait_for(lambda e: e["data"].get("id") == first["id"])
        redis_server.stop()
        await until_bus(a, "down")
        await until_bus(b, "down")
        during = await wang.send_chat(stream, "while Redis is down")
        await sentinel(b, teacher)  # everything B published has arrived; A's message has not
        assert not [e for e in teacher.events[stream] if e["seq"] == during["seq"]]
        redis_server.start()
        await until_bus(a, "up")
        await until_bus(b, "up")
        got = await teacher.wait_for(lambda e: e["data"].get("id") == during["id"], timeout=15)
        assert got["seq"] == first["seq"] + 1
        assert await metric(b, "homeroom_follower_recovered_total") == 0


async def test_node_starts_degraded_without_redis(tmp_path: Path) -> None:
    """Redis not there at start-up: the node serves (locally) and says so."""
    port = free_port()  # nothing listens here
    srv = await start_server(
        make_settings(tmp_path, redis_url=f"redis://127.0.0.1:{port}/0", bus_channel="x")
    )
    try:
        status, body = await health(srv)
        assert status == 200 and body["bus"] == "down" and body["status"] == "degraded"
        stream = f"class:{srv.class_id}:students"
        wang = await srv.client("wanghao")
        liming = await srv.client("liming")
        msg = await wang.send_chat(stream, "no Redis at all")
        await liming.wait_for(lambda e: e["data"].get("id") == msg["id"])
    finally:
        await stop_server(srv)
