"""Two nodes, one PostgreSQL database, one Redis: a class spans nodes.

Node A and node B are two apps on two ports sharing the database and a Redis channel of their own
(a random ``bus_channel`` per run, so parallel runs never hear each other). People connected to
different nodes chat, get notices, typing indicators and resyncs live; everything that crosses
Redis is msgpack, never pickle (checked by listening on the channel with redis-py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from tests.conftest import Server, make_settings, sentinel, start_server, stop_server
from tests.services import drop_postgres_database, postgres_database, redis_url

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]


@dataclass
class Cluster:
    a: Server
    b: Server
    channel: str
    raw: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def class_id(self) -> int:
        return self.a.class_id

    def uid(self, username: str) -> int:
        return self.a.uid(username)

    def bus_messages(self) -> list[dict[str, Any]]:
        return [msgpack.unpackb(data, raw=False, strict_map_key=False) for _, data in self.raw]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    redis = redis_url()
    db_url, db_name = postgres_database()
    channel = f"homeroom-test-{uuid.uuid4().hex[:12]}"
    listener = aioredis.from_url(redis)
    pubsub = listener.pubsub()
    await pubsub.psubscribe(f"{channel}*")  # the channel and anything derived from it
    servers: list[Server] = []
    try:

        def settings(name: str) -> Any:
            return make_settings(
                tmp_path_factory.mktemp(name),
                database_url=db_url,
                redis_url=redis,
                bus_channel=channel,
            )

        a = await start_server(settings("node-a"))  # seeds the demo school
        servers.append(a)
        b = await start_server(settings("node-b"), seed=False)
        servers.append(b)
        b.demo = a.demo
        c = Cluster(a, b, channel)

        async def record() -> None:
            async for item in pubsub.listen():
                if item["type"] == "pmessage":
                    c.raw.append((item["channel"].decode(), item["data"]))

        recorder = asyncio.create_task(record())
        yield c
        recorder.cancel()
    finally:
        for srv in reversed(servers):
            await stop_server(srv)
        await pubsub.aclose()
        await listener.aclose()
        drop_postgres_database(db_name)


async def test_chat_crosses_nodes(cluster: Cluster) -> None:
    stream = f"class:{cluster.class_id}:students"
    wang = await cluster.a.client("wanghao")  # on node A
    liming = await cluster.b.client("liming")  # on node B
    teacher = await cluster.b.client("li")  # on node B
    msg = await wang.send_chat(stream, "A 节点发出 from node A")
    for c in (liming, teacher):
        ev = await c.wait_for(
            lambda e: e["type"] == "chat.message" and e["data"]["id"] == msg["id"]
        )
        assert ev["seq"] == msg["seq"] and ev["data"]["body"] == "A 节点发出 from node A"
    reply = await liming.send_chat(stream, "B 节点回复 from node B")
    ev = await wang.wait_for(
        lambda e: e["type"] == "chat.message" and e["data"]["id"] == reply["id"]
    )
    assert ev["seq"] == msg["seq"] + 1  # one sequence for the stream across both nodes
    # Guardians on either node see none of it.
    mom = await cluster.a.client("wang_mom")
    await sentinel(cluster.a, mom)
    assert stream not in mom.events


async def test_notices_published_on_b_reach_a_guardian_on_a(cluster: Cluster) -> None:
    mom = await cluster.a.client("wang_mom")  # node A
    teacher = await cluster.b.client("li")  # node B
    notice = await teacher.publish_notice(
        cluster.class_id, "明天运动会，请签同意书", kind="confirm_required"
    )
    ev = await mom.wait_for(
        lambda e: e["type"] == "notice.published" and e["data"]["id"] == notice["id"]
    )
    assert ev["stream"] == f"notices:{cluster.class_id}:guardians"
    await mom.confirm_notice(notice["id"])  # confirmed on A ...
    receipt = await teacher.wait_for(  # ... the teacher on B sees it live
        lambda e: (
            e["type"] == "notice.receipt"
            and e["data"]["user_id"] == cluster.uid("wang_mom")
            and e["data"]["state"] == "confirmed"
        )
    )
    assert receipt["stream"] == f"staff:{cluster.class_id}"


async def test_typing_and_resync_cross_nodes(cluster: Cluster) -> None:
    cid = cluster.class_id
    wang = await cluster.a.client("wanghao")
    liming = await cluster.b.client("liming")
    await wang.request("chat.typing", {"stream": f"class:{cid}:students"})
    for _ in range(100):
        if any(ev == "typing" for ev, _ in liming.ephemeral):
            break
        await asyncio.sleep(0.02)
    assert any(
        ev == "typing" and d["user_id"] == cluster.uid("wanghao") for ev, d in liming.ephemeral
    )
    # A conversation opened on B is followed at once by its other person, who is on A.
    teacher = await cluster.b.client("chen")
    dad = await cluster.a.client("wang_dad")
    conv = await teacher.open_conversation(cid, cluster.uid("wang_dad"))
    for _ in range(100):
        if conv["stream"] in dad.cursors:
            break
        await asyncio.sleep(0.02)
    assert conv["stream"] in dad.cursors
    msg = await teacher.send_chat(conv["stream"], "王浩爸爸，您好")
    ev = await dad.wait_for(lambda e: e["stream"] == conv["stream"])
    assert ev["data"]["id"] == msg["id"]


async def test_nothing_on_the_bus_is_pickle(cluster: Cluster) -> None:
    cid = cluster.class_id
    wang = await cluster.a.client("wanghao")
    teacher = await cluster.b.client("li")
    marker = f"marker {uuid.uuid4().hex}"
    await wang.send_chat(f"class:{cid}:students", marker)  # stream events
    await wang.request("chat.typing", {"stream": f"class:{cid}:students"})  # ephemeral
    await teacher.open_conversation(cid, cluster.uid("zhangwei"))  # resync
    for _ in range(100):
        if any(marker.encode() in data for _, data in cluster.raw):
            break
        await asyncio.sleep(0.02)
    assert cluster.raw, "nothing was heard on the bus channel"
    assert {ch for ch, _ in cluster.raw} == {cluster.channel}
    for _, data in cluster.raw:
        assert data[:1] != b"\x80", "a pickle protocol header"
    messages = cluster.bus_messages()  # every one decodes as msgpack ...
    assert all(
        isinstance(m, dict) and m.get("t") in {"events", "eph", "resync", "resync_all"}
        for m in messages
    )
    kinds = {m["t"] for m in messages}
    assert {"events", "eph", "resync"} <= kinds  # ... whatever kind it is
    chat = [
        ev
        for m in messages
        if m["t"] == "events"
        for ev in m["events"]
        if ev["type"] == "chat.message" and ev["data"]["body"] == marker
    ]
    assert len(chat) == 1 and chat[0]["stream"] == f"class:{cluster.class_id}:students"


async def test_bus_channel_isolates_deployments(cluster: Cluster, tmp_path: Path) -> None:
    """A third node on another channel (same Redis, its own database) hears nothing of ours."""
    other = await start_server(
        make_settings(
            tmp_path, redis_url=redis_url(), bus_channel=f"homeroom-test-{uuid.uuid4().hex[:12]}"
        )
    )
    try:
        listener = await other.client("liming")
        wang = await cluster.a.client("wanghao")
        ours = await cluster.b.client("liming")
        sent = await wang.send_chat(f"class:{cluster.class_id}:students", "只给本校 ours only")
        # Redis has carried it (to our node B); a sentinel on the other deployment's channel,
        # published after it, reaches its listener after anything of ours would have.
        await ours.wait_for(lambda e: e["type"] == "chat.message" and e["seq"] == sent["seq"])
        await sentinel(other, listener)
        heard = [e for evs in listener.events.values() for e in evs]
        assert not any(e["data"].get("body") == "只给本校 ours only" for e in heard)
    finally:
        await stop_server(other)
