"""A node stays announced while its event loop is busy, and only a stuck loop stops it.

realtime/cluster/beacon.py on a real Redis: the announcement is written by a thread of its own,
so while this test holds the loop's thread (as a storm of handshakes does, for longer than the
TTL) the node's key is still there every time it is looked at (by a synchronous client, the
loop being held). Held longer than ``stall_s``, the beacon stops announcing and the key expires,
so a hung node is still taken for lost. A restarted node (same name) moves the sessions it ran
instead of ending them: tests/test_node_restart.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
import redis
from aiohttp import web

from realtime.cluster.beacon import Beacon
from realtime.cluster.placement import CPU_FULL
from realtime.cluster.redis_registry import RedisRegistry
from realtime.cluster.registry import NodeInfo
from tests.conftest import make_settings, start_server, stop_server
from tests.services import redis_url

pytestmark = pytest.mark.timeout(60)

TTL_S = 1.0
BEAT_S = 0.2


def hold_the_loop(seconds: float, look: redis.Redis, key: str) -> list[bool]:
    """Keep the calling thread (the event loop's) busy for ``seconds``, as a storm of handshakes
    would, looking every 0.1 s whether ``key`` exists (a synchronous client: nothing of asyncio
    runs meanwhile)."""
    seen = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(0.1)
        seen.append(bool(look.exists(key)))
    return seen


def node(name: str) -> NodeInfo:
    return NodeInfo(name=name, address="127.0.0.1:1", pid=1, started_at=time.time(), at=0.0)


async def test_a_busy_loop_stays_announced_and_a_stuck_one_does_not() -> None:
    url = redis_url()
    channel = f"homeroom-test-{uuid.uuid4().hex[:12]}"
    registry = RedisRegistry(url, channel)
    beacon = registry.beacon("busy-node", TTL_S, BEAT_S, stall_s=3.0)
    assert isinstance(beacon, Beacon)
    look = redis.Redis.from_url(url)
    try:
        beacon.update(node("busy-node"))
        beacon.start()
        while beacon.beats == 0:  # noqa: ASYNC110 (written by a thread: no event to wait on)
            await asyncio.sleep(0.02)
        assert [n.name for n in await registry.nodes()] == ["busy-node"]

        # The loop held for twice the TTL (the loop's thread sleeps: nothing of asyncio runs).
        held_until = time.monotonic() + 2 * TTL_S
        seen = hold_the_loop(2 * TTL_S, look, beacon.key)
        assert len(seen) >= 15
        assert all(seen), "the node vanished while its loop was only busy"
        await asyncio.sleep(3 * BEAT_S)  # the loop runs again and marks itself
        assert beacon.stalled == 0
        # The announcement is stamped when written, not when the loop last read the node.
        nodes = await registry.nodes()
        assert nodes[0].at > held_until - 1

        # Held past stall_s: no more announcements, the key expires, the node is lost.
        seen = hold_the_loop(3.0 + TTL_S + 4 * BEAT_S, look, beacon.key)
        assert not seen[-1], "a stuck loop kept its node announced"
        assert beacon.stalled > 0
        # The loop back: announced again.
        deadline = time.monotonic() + 5
        while not look.exists(beacon.key):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(beacon.stop)
        await registry.withdraw("busy-node")
        await registry.close()
        look.close()
    beats = beacon.beats
    await asyncio.sleep(3 * BEAT_S)
    assert beacon.beats == beats  # stopped means stopped: nothing writes the key again


async def test_a_node_whose_second_beat_is_late_stays_announced(tmp_path: Path) -> None:
    """Between a node's first announcement (written by its loop as it starts) and its loop's
    next beat, the beacon keeps the first reading alive: on a loaded machine a second beat
    later than the TTL made a node that had just started vanish, and placement sent its lessons
    elsewhere (a CI failure of tests/live/test_failover.py). The first reading also leaves the
    start-up's own CPU out, so the new node does not look full to placement."""
    url = redis_url()
    channel = f"homeroom-test-{uuid.uuid4().hex[:12]}"
    look = redis.Redis.from_url(url)
    key = f"{channel}:node:late-beat"
    seen: list[bool] = []

    def hold_after_start(app: web.Application) -> None:
        async def hold(_app: web.Application) -> None:
            # Runs right after the node's own start-up (its first beat), holding the loop
            # for three TTLs: its second beat cannot come meanwhile.
            seen.extend(hold_the_loop(3 * TTL_S, look, key))

        app.on_startup.append(hold)

    settings = make_settings(
        tmp_path,
        redis_url=url,
        bus_channel=channel,
        node_name="late-beat",
        node_heartbeat_s=BEAT_S,
        node_ttl_s=TTL_S,
    )
    srv = await start_server(settings, seed=False, routes=hold_after_start)
    registry = RedisRegistry(url, channel)
    try:
        assert len(seen) >= 20
        assert all(seen), "the node vanished before its loop's second beat"
        first = (await registry.nodes())[0]
        assert first.cpu < CPU_FULL, "a node that just started looked full"
    finally:
        await stop_server(srv)
        await registry.close()
        look.close()
