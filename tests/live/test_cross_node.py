"""Live sessions across nodes: placed on the least loaded node, used from any node.

Three nodes (apps in this process, each with its own Socket.IO server and Redis bus) share a
fresh PostgreSQL database and a Redis channel of this module's own. A session runs on the node
placement chose (its media node); people connected to the other nodes join, publish, subscribe,
trickle ICE, raise hands, go on stage, ask questions and are admitted from a lobby exactly as on
the media node: their requests are carried over the bus to it, and what it tells them comes
back to the node holding their connection. Media flows between the aiortc peers and the media
node directly (its ICE candidates, 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import async_playwright

from clients.homeroom import RequestError
from clients.live import LiveParticipant
from realtime.actions.roster import add_member, create_class
from realtime.config import Settings
from realtime.demo import DEMO_PASSWORD
from realtime.domain.roles import Role
from realtime.store.schema import classes
from realtime.transport.rest import HUB, LIVE, NODES
from tests.chromium import CHROMIUM, require
from tests.conftest import Server, make_settings, start_server, stop_server
from tests.live.chromium_scenario import CHROMIUM_FLAGS, SOCKET_IO_JS, add_test_page
from tests.live.helpers import Watch, advancing, eventually
from tests.media.peers import CounterVideoTrack, ToneAudioTrack
from tests.services import drop_postgres_database, postgres_database, redis_url

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(150)]


@dataclass
class Nodes:
    servers: list[Server]

    @property
    def first(self) -> Server:
        return self.servers[0]

    def media_node(self, session_id: int) -> Server:
        """The node whose LiveService runs the session."""
        found = [s for s in self.servers if session_id in s.app[LIVE].runtimes]
        assert len(found) == 1, f"session {session_id} runs on {len(found)} nodes"
        return found[0]

    def others(self, srv: Server) -> list[Server]:
        return [s for s in self.servers if s is not srv]


def node_settings(
    tmp: Path, name: str, database_url: str, redis: str, channel: str, **extra: Any
) -> Settings:
    """The settings of node ``name`` of a test cluster (apps in one process) sharing a database
    and a bus channel; ``extra``: settings of its own."""
    return make_settings(
        tmp,
        database_url=database_url,
        redis_url=redis,
        bus_channel=channel,
        node_name=name,
        node_heartbeat_s=0.5,
        node_ttl_s=2.0,
        ice_host_addresses="127.0.0.1",
        session_grace_s=2,
        # These nodes share one process, and so one CPU figure, which says nothing of either:
        # placement goes by sessions and subscribers only here.
        placement_cpu_full=1000.0,
        **extra,
    )


async def start_nodes(settings: list[Settings], servers: list[Server]) -> None:
    """A node per settings, the first seeding the demo school, each appended to ``servers`` as
    it starts (the caller stops those, whatever fails); then every node has read the registry
    with all of them in it, so placement sees them all."""
    for one in settings:
        # Every node serves the test page too (a Chromium test loads it from one).
        srv = await start_server(one, seed=not servers, routes=add_test_page)
        if servers:
            srv.demo = servers[0].demo
        servers.append(srv)
    names = {s.settings.node_name for s in servers}
    for srv in servers:
        await eventually(
            lambda srv=srv: set(srv.app[NODES].membership.nodes) == names,
            15,
            f"{srv.settings.node_name} seeing every node",
        )


async def cluster_of(
    n: int, tmp_path_factory: pytest.TempPathFactory, **extra: Any
) -> AsyncIterator[Nodes]:
    """``n`` nodes (apps in this process); ``extra``: settings of them all."""
    db_url, db_name = postgres_database()
    channel = f"homeroom-test-{uuid.uuid4().hex[:12]}"
    servers: list[Server] = []
    try:
        names = [f"node-{'abc'[i]}" for i in range(n)]
        await start_nodes(
            [
                node_settings(
                    tmp_path_factory.mktemp(name), name, db_url, redis_url(), channel, **extra
                )
                for name in names
            ],
            servers,
        )
        yield Nodes(servers)
    finally:
        for srv in reversed(servers):
            await stop_server(srv)
        drop_postgres_database(db_name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def three(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Nodes]:
    async for nodes in cluster_of(3, tmp_path_factory):
        yield nodes


async def test_a_lesson_used_from_other_nodes(three: Nodes) -> None:
    a = three.first
    teacher_c = await a.client("li")
    start = await teacher_c.request(
        "session.start", {"class_id": a.class_id, "kind": "lesson", "title": "数学：分数"}
    )
    sid = start["session"]["id"]
    media = three.media_node(sid)
    elsewhere = three.others(media)
    # The teacher's connection is on A; the media on whichever node placement chose.
    host = LiveParticipant(teacher_c, sid)
    await host.join()
    ack = await host.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
    assert {t["source"] for t in ack["published"]} == {"camera", "microphone"}

    # Students connected to the two nodes that do not run the lesson.
    students: dict[str, LiveParticipant] = {}
    watches: dict[str, Watch] = {}
    for name, node in (("wanghao", elsewhere[0]), ("liming", elsewhere[1])):
        p = LiveParticipant(await node.client(name), sid)
        w = Watch()
        w.attach(p)
        joined = await p.join()
        assert joined["you"]["role"] == "student"
        await p.subscribe()
        students[name], watches[name] = p, w
    li = a.uid("li")
    for name, w in watches.items():
        await eventually(
            lambda w=w: advancing(w.video_from(li)), 20, f"{name} decoding the teacher"
        )
        await eventually(lambda w=w: w.audio_frames.get(li, 0) > 10, 10, f"{name} hearing her")
    # Their legs are the media node's (its ICE candidates); their requests crossed the bus.
    rt = media.app[LIVE].runtimes[sid]
    assert set(rt.subscribers) >= {a.uid("wanghao"), a.uid("liming")}
    assert all(node.app[LIVE].calls.made > 0 for node in elsewhere)

    # Hands and stage, across nodes: the queue reaches the teacher on A.
    wang = students["wanghao"]
    await wang.client.request("hand.raise", {"session_id": sid})
    await eventually(
        lambda: host.state.get("hands") == [f"user:{a.uid('wanghao')}"], 10, "the raised hand"
    )
    # A refusal made on the media node comes back with its code.
    with pytest.raises(RequestError) as err:
        await students["liming"].client.request(
            "stage.invite", {"session_id": sid, "user_id": a.uid("zhangwei")}
        )
    assert err.value.code == "forbidden"
    await teacher_c.request("stage.invite", {"session_id": sid, "user_id": a.uid("wanghao")})
    await eventually(lambda: any(n == "stage.invited" for n, _ in wang.notices), 10, "invited")
    await wang.client.request("stage.accept", {"session_id": sid})
    on_stage = await wang.publish({CounterVideoTrack(): "camera"})
    assert [t["source"] for t in on_stage["published"]] == ["camera"]
    host_watch = Watch()
    host_watch.attach(host)
    await host.subscribe()
    wid = a.uid("wanghao")
    await eventually(
        lambda: advancing(host_watch.video_from(wid)), 20, "the teacher decoding Wang Hao"
    )
    await eventually(
        lambda: advancing(watches["liming"].video_from(wid)), 20, "Li Ming decoding Wang Hao"
    )

    # Q&A of the lesson: a question asked on one node reaches the teacher following on A.
    q = await students["liming"].client.ask(a.class_id, "分母为什么不能是零？", session_id=sid)
    seen = await teacher_c.wait_for(
        lambda e: e["type"] == "question.asked" and e["data"]["id"] == q["id"], timeout=10
    )
    assert seen["stream"] in host.client.cursors

    # The host's statistics, asked over REST on a node that does not run the session.
    stats = await teacher_c.http("GET", f"/api/v1/sessions/{sid}/stats")
    assert stats["session_id"] == sid and stats["participants"] == 3

    # Li Ming's connection drops on his node: the media node hears it (away, then gone).
    await students["liming"].close()
    await students["liming"].client.close()
    lm = a.uid("liming")

    def away() -> bool:
        people = {p["user_id"]: p for p in host.state.get("participants", [])}
        return lm not in people or not people[lm]["connected"]

    await eventually(away, 10, "the teacher seeing Li Ming drop")
    await eventually(
        lambda: lm not in {p["user_id"] for p in host.state.get("participants", [])},
        15,
        "Li Ming's place given up after the grace period",
    )

    # The teacher ends it from A: Wang Hao, on another node, is told.
    await teacher_c.request("session.end", {"session_id": sid})
    await eventually(lambda: any(n == "session.ended" for n, _ in wang.notices), 10, "the end")
    for p in (host, wang):
        await p.close()
    for w in (*watches.values(), host_watch):
        w.stop()


async def test_a_guardian_on_another_node_is_admitted_from_the_lobby(three: Nodes) -> None:
    a = three.first
    host_c = await a.client("li")
    sid = (
        await host_c.request(
            "session.start", {"class_id": a.class_id, "kind": "meeting", "title": "家长会"}
        )
    )["session"]["id"]
    media = three.media_node(sid)
    far = three.others(media)[-1]
    # The host on the media node; the guardian on another one.
    host_c = await media.client("li")
    host = LiveParticipant(host_c, sid)
    await host.join()
    mom = LiveParticipant(await far.client("wang_mom"), sid)
    joined = await mom.join()
    assert joined["you"]["in_lobby"] is True and "participants" not in joined["session"]
    with pytest.raises(RequestError) as err:
        await mom.publish({CounterVideoTrack(): "camera"})
    assert err.value.code == "forbidden"
    await eventually(lambda: len(host.state.get("lobby", [])) == 1, 10, "the host's lobby")
    ack = await host_c.request("lobby.admit", {"session_id": sid, "user_ids": [a.uid("wang_mom")]})
    assert ack["admitted"] == [a.uid("wang_mom")]
    await eventually(
        lambda: any(d.get("status") == "admitted" for _, d in mom.notices), 10, "admitted"
    )
    # Admitted, she follows the meeting on her node: its state reaches her there.
    await eventually(
        lambda: a.uid("wang_mom") in {p["user_id"] for p in mom.state.get("participants", [])},
        10,
        "the guardian seeing the meeting",
    )
    watch = Watch()
    watch.attach(mom)
    await host.publish({CounterVideoTrack(): "camera"})
    await mom.subscribe()
    await eventually(
        lambda: advancing(watch.video_from(a.uid("li"))), 20, "the guardian seeing the host"
    )
    await host_c.request("session.end", {"session_id": sid})
    await eventually(lambda: any(n == "session.ended" for n, _ in mom.notices), 10, "the end")
    watch.stop()
    for p in (host, mom):
        await p.close()


async def test_a_session_whose_node_does_not_answer_is_unavailable(three: Nodes) -> None:
    a = three.first
    teacher = await a.client("li")
    sid = (
        await teacher.request(
            "session.start", {"class_id": a.class_id, "kind": "lesson", "title": "无人应答"}
        )
    )["session"]["id"]
    media = three.media_node(sid)
    far = three.others(media)[0]
    student = await far.client("wanghao")
    # The media node stops listening on the bus (as if frozen): a clear error, in bounded time.
    live = far.app[LIVE]
    before = live.calls.timeout_s
    live.calls.timeout_s = 1.0
    handler = media.app[LIVE].calls.handlers.pop("live")
    try:

        async def never(_node: str, _body: dict[str, object]) -> dict[str, object]:
            await asyncio.sleep(3600)
            return {}

        media.app[LIVE].calls.handlers["live"] = never
        t0 = time.monotonic()
        with pytest.raises(RequestError) as err:
            await student.request("session.join", {"session_id": sid})
        assert err.value.code == "unavailable"
        assert time.monotonic() - t0 < 5
    finally:
        media.app[LIVE].calls.handlers["live"] = handler
        live.calls.timeout_s = before
    # An operator sees it: the asking node counts the call that went unanswered.
    async with aiohttp.ClientSession() as http, http.get(far.url + "/metrics") as r:
        text = await r.text()
    unanswered = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("homeroom_node_calls_unanswered_total ")
    )
    assert unanswered >= 1
    # Answering again, the same request works; a session that does not exist is not_found.
    assert (await student.request("session.join", {"session_id": sid}))["you"]["role"] == (
        "student"
    )
    with pytest.raises(RequestError) as err:
        await student.request("session.join", {"session_id": sid + 1000})
    assert err.value.code == "not_found"
    await teacher.request("session.end", {"session_id": sid})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def two(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Nodes]:
    async for nodes in cluster_of(2, tmp_path_factory):
        yield nodes


async def test_four_lessons_started_through_one_node_of_two_run_two_and_two(two: Nodes) -> None:
    a = two.first
    hub = a.app[HUB]
    # A fourth class with its own teacher (the demo school has three).
    async with hub.store.transaction() as conn:
        school = (
            (await conn.execute(classes.select().where(classes.c.id == a.class_id)))
            .first()
            .school_id
        )
        extra = await create_class(conn, school, "五年级三班 / Grade 5 Class 3")
        await add_member(conn, extra, a.uid("chen"), Role.TEACHER)
    starts = [
        ("li", a.class_id),
        ("wu", a.demo["linked_class_ids"][0]),
        ("zhou", a.demo["linked_class_ids"][1]),
        ("chen", extra),
    ]
    sessions = []
    for teacher, class_id in starts:
        c = await a.client(teacher)  # every start arrives on node A
        ack = await c.request(
            "session.start", {"class_id": class_id, "kind": "lesson", "title": f"{teacher} 的课"}
        )
        sessions.append(ack["session"]["id"])
    where = [two.media_node(sid).settings.node_name for sid in sessions]
    assert sorted(where) == ["node-a", "node-a", "node-b", "node-b"], where
    # A student on either node joins his lesson wherever it runs.
    for srv in two.servers:
        student = await srv.client("wanghao")
        joined = await student.request("session.join", {"session_id": sessions[0]})
        assert joined["you"]["role"] == "student"
    for (teacher, _), sid in zip(starts, sessions, strict=True):
        c = await two.servers[1].client(teacher)  # ended through node B, wherever it runs
        await c.request("session.end", {"session_id": sid})
    for srv in two.servers:
        assert srv.app[LIVE].runtimes == {}


async def test_chromium_on_one_node_plays_a_lesson_whose_media_runs_on_another(
    two: Nodes,
) -> None:
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (run `make live-deps`)")
    require(SOCKET_IO_JS.exists(), f"{SOCKET_IO_JS} is missing (npm ci in tests/node)")
    a = two.first
    teacher_c = await a.client("li")
    sid = (
        await teacher_c.request(
            "session.start", {"class_id": a.class_id, "kind": "lesson", "title": "Chromium 跨节点"}
        )
    )["session"]["id"]
    media = two.media_node(sid)
    page_node = two.others(media)[0]
    teacher = await media.client("li") if media is not a else teacher_c
    host = LiveParticipant(teacher, sid)
    await host.join()
    await host.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = await browser.new_page()
            await page.goto(page_node.url + "/test/live.html")
            await page.evaluate("([u, p]) => hr.login(u, p)", ["wanghao", DEMO_PASSWORD])
            await page.evaluate("() => hr.connect()")
            await page.evaluate("(s) => hr.join(s)", sid)
            await page.evaluate("() => hr.subscribe()")
            playing: list[dict[str, float]] = []

            async def shows(minimum_time: float) -> bool:
                playing[:] = await page.evaluate("() => hr.playing()")
                return any(v["width"] > 0 and v["time"] > minimum_time for v in playing)

            deadline = time.monotonic() + 30
            while not await shows(0.0):
                assert time.monotonic() < deadline, (
                    f"no video playing: {playing}, {await page.evaluate('() => hr.stats()')}"
                )
                await asyncio.sleep(0.2)
            first = max(v["time"] for v in playing)
            deadline = time.monotonic() + 10
            while not await shows(first + 1.0):  # time advancing: it plays, not one frame
                assert time.monotonic() < deadline, f"the video stopped at {playing}"
                await asyncio.sleep(0.2)
            assert (playing[0]["width"], playing[0]["height"]) == (192, 144)
            # Its media stays on loopback, both ends (Chromium offers the machine's other
            # addresses too: the nodes talk ICE with 127.0.0.0/8 only).
            pair = (await page.evaluate("() => hr.stats()"))["subscribe"]["pair"]
            assert (pair["local"]["address"], pair["remote"]["address"]) == (
                "127.0.0.1",
                "127.0.0.1",
            ), pair
        finally:
            await browser.close()
    # The page's requests went through its node to the media node.
    assert page_node.app[LIVE].calls.made > 0
    await teacher_c.request("session.end", {"session_id": sid})
    await host.close()
