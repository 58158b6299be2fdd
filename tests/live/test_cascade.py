"""One lesson over several nodes (issue #13): an origin full of viewers serves the next ones on
edge nodes, which it feeds over one leg each.

Nodes share a fresh PostgreSQL database and a Redis channel of their own; every node may send
4 streams and keeps 2 for legs (``cascade_node_streams``, ``cascade_leg_reserve``: set low so
that a handful of viewers fills a node). The teacher and the viewers are aiortc peers
(``clients/live.py``) that decode what they receive; media stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page, async_playwright

from clients.homeroom import HomeroomClient, RequestError
from clients.live import LiveParticipant
from clients.simulcast import SimulcastCamera
from media.simulcast import LayeredTrack
from realtime.demo import DEMO_PASSWORD
from realtime.live.service import LiveService
from realtime.transport.rest import LIVE, NODES
from tests.chromium import CHROMIUM, require
from tests.conftest import Server, free_port, make_settings, start_server, stop_server
from tests.live.chromium_scenario import CHROMIUM_FLAGS, SOCKET_IO_JS
from tests.live.helpers import advancing, eventually
from tests.live.test_cross_node import Nodes, cluster_of
from tests.live.test_failover import Viewer, client_of, common_settings
from tests.live.test_layers import LAYERS
from tests.media.peers import CounterVideoTrack, TextureVideoTrack, ToneAudioTrack
from tests.nodes import Balancer, node_process
from tests.services import drop_postgres_database
from tests.tcpproxy import TcpProxy
from tests.test_restart import ServerProcess

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(150)]

SMALL = {"cascade_node_streams": 4, "cascade_leg_reserve": 2}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def three(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Nodes]:
    async for nodes in cluster_of(3, tmp_path_factory, **SMALL):
        yield nodes


def live(srv: Server) -> LiveService:
    service: LiveService = srv.app[LIVE]
    return service


async def settled(three: Nodes) -> None:
    """Every node announces no viewer and no leg any more (the previous test's are gone), so a
    session started through A runs on A (equal loads: the node asked)."""
    await eventually(
        lambda: all(
            info.subscribers == 0 and info.relay_legs == 0
            for srv in three.servers
            for info in srv.app[NODES].membership.nodes.values()
        ),
        15,
        "every node announcing no viewer",
    )


async def hosting(three: Nodes, title: str) -> tuple[HomeroomClient, int, LiveParticipant]:
    """Ms. Li starts a lesson through A (it runs there: equal loads, the node asked) and joins
    it, publishing nothing yet."""
    await settled(three)
    a = three.first
    teacher_c = await a.client("li")
    sid = (
        await teacher_c.request(
            "session.start", {"class_id": a.class_id, "kind": "lesson", "title": title}
        )
    )["session"]["id"]
    assert three.media_node(sid) is a
    host = LiveParticipant(teacher_c, sid)
    await host.join()
    return teacher_c, sid, host


async def teaching(three: Nodes, title: str) -> tuple[HomeroomClient, int, LiveParticipant]:
    """:func:`hosting`, and she publishes her camera and microphone."""
    teacher_c, sid, host = await hosting(three, title)
    await host.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
    return teacher_c, sid, host


async def watching(
    sid: int, publisher: int, placed: tuple[tuple[str, Server], ...]
) -> dict[str, Viewer]:
    """A viewer of ``publisher`` per (name, node), connected to that node, joined and
    subscribed in this order (each placed before the next asks)."""
    viewers: dict[str, Viewer] = {}
    for name, node in placed:
        v = Viewer(await node.client(name), sid, publisher)
        await v.start()
        viewers[name] = v
    return viewers


async def test_viewers_beyond_the_origins_limit_watch_through_edges_b_and_c(three: Nodes) -> None:
    a, b, c = three.servers
    teacher_c, sid, host = await teaching(three, "全区公开课")
    li = a.uid("li")

    # Two viewers fill the origin (4 streams less 2 kept for legs); the next ones are served
    # by the node holding their connection, as new edges fed by A.
    placed = (("liuyang", a), ("liuxin", a), ("wanghao", b), ("zhangwei", c))
    viewers = await watching(sid, li, placed)
    rt = live(a).runtimes[sid]
    assert rt.cascade is not None
    assert set(rt.subscribers) == {a.uid("liuyang"), a.uid("liuxin")}
    assert rt.cascade.viewers == {a.uid("wanghao"): "node-b", a.uid("zhangwei"): "node-c"}
    assert set(live(b).edges.sessions[sid].viewers) == {a.uid("wanghao")}
    assert set(live(c).edges.sessions[sid].viewers) == {a.uid("zhangwei")}
    for name, v in viewers.items():
        await eventually(
            lambda v=v: advancing(v.watch.video_from(li)), 20, f"{name} decoding the teacher"
        )
        await eventually(
            lambda v=v: v.watch.audio_frames.get(li, 0) > 10, 10, f"{name} hearing her"
        )
    # The edges' copies carry the origin's track ids.
    origin_ids = {t.track_id for t in rt.router.tracks()}
    for edge in (b, c):
        assert {t.track_id for t in live(edge).edges.sessions[sid].router.tracks()} == origin_ids
    stats = await teacher_c.http("GET", f"/api/v1/sessions/{sid}/stats")
    assert stats["edges"] == {"node-b": 1, "node-c": 1}

    # Zhang Wei, served by C, goes on stage: he publishes on C, his own node, which relays his
    # camera and microphone to the origin A over an uplink; from A they reach Liu Yang (on A)
    # and, down B's leg, Wang Hao on B.
    zhang, wang, yang = viewers["zhangwei"], viewers["wanghao"], viewers["liuyang"]
    zid = a.uid("zhangwei")
    await teacher_c.request("stage.invite", {"session_id": sid, "user_id": zid})
    await eventually(lambda: any(n == "stage.invited" for n, _ in zhang.p.notices), 10, "invited")
    await zhang.p.client.request("stage.accept", {"session_id": sid})
    await zhang.p.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
    on_c = live(c).edges.sessions[sid]
    assert set(on_c.publishers) == {zid}
    assert zid not in rt.publishers
    assert rt.cascade.publishers == {zid: "node-c"}
    his = {t.track_id for t in on_c.router.tracks() if t.publisher_id == str(zid)}
    assert len(his) == 2
    for name, v in (("Liu Yang on A", yang), ("Wang Hao on B", wang)):
        await eventually(
            lambda v=v: advancing(v.watch.video_from(zid)), 20, f"{name} decoding Zhang Wei"
        )
        await eventually(
            lambda v=v: v.watch.audio_frames.get(zid, 0) > 10, 10, f"{name} hearing Zhang Wei"
        )
    # The same track ids everywhere; A's copy arrives over C's uplink, and A's leg to C does
    # not carry them back.
    assert his <= {t.track_id for t in rt.router.tracks()}
    assert his <= {t.track_id for t in live(b).edges.sessions[sid].router.tracks()}
    assert set(rt.cascade.uplinks["node-c"].relayed().values()) == his
    assert not his & {t.track_id for t in rt.cascade.legs["node-c"].tracks()}
    # Muted by the teacher, he stops for edge viewers too; unmuted, he plays again.
    await teacher_c.request("moderate.mute", {"session_id": sid, "user_id": zid, "video": True})
    await asyncio.sleep(1.0)  # what was in flight arrives
    frozen = len(wang.watch.video_from(zid))
    await asyncio.sleep(1.5)
    assert len(wang.watch.video_from(zid)) <= frozen + 1
    await teacher_c.request("moderate.mute", {"session_id": sid, "user_id": zid, "video": False})
    await eventually(
        lambda: len(wang.watch.video_from(zid)) > frozen + 10, 20, "Zhang Wei unmuted on B"
    )
    # Off the stage: his tracks end everywhere, at C where he published too, and nobody
    # receives him any more.
    await teacher_c.request("stage.remove", {"session_id": sid, "user_id": zid})
    await eventually(
        lambda: all(
            zid not in {int(t.publisher_id) for t in router.tracks()}
            for router in (rt.router, *(live(e).edges.sessions[sid].router for e in (b, c)))
        ),
        10,
        "Zhang Wei's tracks ended on A, B and C",
    )
    await eventually(
        lambda: not rt.cascade.uplinks["node-c"].relayed(), 10, "C's uplink carrying nothing"
    )
    await asyncio.sleep(1.0)  # what was in flight arrives
    stopped = {id(v): len(v.watch.video_from(zid)) for v in (yang, wang)}
    await asyncio.sleep(1.5)
    for v in (yang, wang):
        assert len(v.watch.video_from(zid)) <= stopped[id(v)] + 1

    # Zhang Wei leaves: C serves nobody of this lesson now, and its leg is dropped.
    await zhang.p.client.request("session.leave", {"session_id": sid})
    await eventually(lambda: sid not in live(c).edges.sessions, 10, "C letting the lesson go")
    assert set(rt.cascade.legs) == {"node-b"}
    assert not rt.cascade.uplinks and not rt.cascade.publishers
    await eventually(lambda: advancing(wang.watch.video_from(li)), 10, "Wang Hao still playing")

    # The end reaches the edges: their copies go.
    await teacher_c.request("session.end", {"session_id": sid})
    await eventually(lambda: sid not in live(b).edges.sessions, 10, "B letting the lesson go")
    for v in viewers.values():
        await v.close()
    await host.close()


async def test_a_viewer_placed_on_an_edge_before_anything_is_published_gets_the_teacher(
    three: Nodes,
) -> None:
    """Ms. Li starts her lesson on A and joins without publishing; Liu Yang and Liu Xin fill A,
    Wang Hao (connected to B) is served by B, a new edge whose leg has nothing to carry yet (so
    no offer attaches B: his subscribe does). Then she publishes: everyone decodes her, Wang
    Hao through B."""
    a, b, _c = three.servers
    teacher_c, sid, host = await hosting(three, "先进后开")
    li = a.uid("li")
    viewers = await watching(sid, li, (("liuyang", a), ("liuxin", a), ("wanghao", b)))
    rt = live(a).runtimes[sid]
    assert rt.cascade is not None
    assert set(rt.subscribers) == {a.uid("liuyang"), a.uid("liuxin")}
    assert rt.cascade.viewers == {a.uid("wanghao"): "node-b"}
    assert set(live(b).edges.sessions[sid].viewers) == {a.uid("wanghao")}
    await host.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
    for name, v in viewers.items():
        await eventually(
            lambda v=v: advancing(v.watch.video_from(li)), 20, f"{name} decoding the teacher"
        )
    await teacher_c.request("session.end", {"session_id": sid})
    await eventually(lambda: sid not in live(b).edges.sessions, 10, "B letting the lesson go")
    for v in viewers.values():
        await v.close()
    await host.close()


async def test_a_viewer_on_an_edge_whose_connection_drops_resumes_there(three: Nodes) -> None:
    """Wang Hao watches through edge B over a Socket.IO connection that drops (a TCP proxy of
    the test's own, cut and restored) while his media goes on: he joins again with ``resume``
    and keeps his peer connection on B, and the offer B made meanwhile (Liu Yang put on stage)
    reaches him again."""
    a, b, _ = three.servers
    teacher_c, sid, host = await teaching(three, "断线续看")
    li, yang, wang = a.uid("li"), a.uid("liuyang"), a.uid("wanghao")
    proxy = TcpProxy("127.0.0.1", b.settings.port, free_port())
    await proxy.start()
    viewers: list[Viewer] = []
    client = HomeroomClient(f"http://127.0.0.1:{proxy.port}")
    # A dropped connection's grace is the default's here (these nodes' is 2 s).
    settings = live(a).hub.settings
    grace, settings.session_grace_s = settings.session_grace_s, 30
    try:
        for name in ("liuyang", "liuxin"):  # they fill the origin
            viewers.append(Viewer(await a.client(name), sid, li))
            await viewers[-1].start()
        yang_v = viewers[0]
        await client.login("wanghao", DEMO_PASSWORD)
        await client.connect()
        wang_v = Viewer(client, sid, li)
        viewers.append(wang_v)
        await wang_v.start()
        rt = live(a).runtimes[sid]
        assert rt.cascade is not None and rt.cascade.viewers == {wang: "node-b"}
        leg = live(b).edges.sessions[sid].viewers[wang]
        await eventually(
            lambda: advancing(wang_v.watch.video_from(li)), 20, "Wang Hao watching through B"
        )

        await proxy.cut()
        await eventually(
            lambda: not rt.session.participants[wang].connected, 10, "the origin seeing him drop"
        )
        seen = wang_v.frames()
        await eventually(lambda: wang_v.frames() >= seen + 30, 10, "frames while disconnected")
        await teacher_c.request("stage.invite", {"session_id": sid, "user_id": yang})
        await eventually(
            lambda: any(n == "stage.invited" for n, _ in yang_v.p.notices), 10, "invited"
        )
        await yang_v.p.client.request("stage.accept", {"session_id": sid})
        await yang_v.p.publish({CounterVideoTrack(): "camera"})
        await eventually(lambda: leg.outstanding() is not None, 10, "B's offer made meanwhile")
        assert wang_v.p.resumes == 0 and wang_v.p.rejoins == 0

        await proxy.restore()
        await eventually(lambda: wang_v.p.resumes == 1, 20, "the resume")
        assert wang_v.p.rejoins == 0  # nothing started over
        assert live(b).edges.sessions[sid].viewers[wang] is leg  # the same peer connection
        await eventually(
            lambda: advancing(wang_v.watch.video_from(yang)), 15, "Liu Yang reaching him"
        )
        await eventually(lambda: advancing(wang_v.watch.video_from(li)), 5, "the teacher still")
        assert leg.outstanding() is None
        await teacher_c.request("session.end", {"session_id": sid})
    finally:
        for v in viewers:
            await v.close()
        await host.close()
        await client.close()
        await proxy.close()
        settings.session_grace_s = grace


class EdgeLesson:
    """A lesson on A with viewers on A, on edge C (a ``homeroom serve`` process, to kill) and
    on edge B; what :func:`edge_lesson` made, to use and to close."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self.edge_c: ServerProcess | None = None
        self.balancer: Balancer | None = None
        self.clients: list[HomeroomClient] = []
        self.viewers: dict[str, Viewer] = {}
        self.host: LiveParticipant | None = None
        self.teacher: HomeroomClient | None = None
        self.sid = 0

    @property
    def a(self) -> Server:
        return self.servers[0]


@contextlib.asynccontextmanager
async def edge_lesson(tmp_path: Path, title: str) -> AsyncIterator[EdgeLesson]:
    """Ms. Li's lesson on A (nodes A and B in this process, C a process; PostgreSQL and Redis
    of the test's own), her camera and microphone published. A has room for two viewers,
    C for two, B for more: Li Ming and Liu Xin are served by A, Liu Yang (connected to C
    through a balancer that fails over to B) and Wang Hao by C, Zhang Wei by B."""
    common = common_settings()
    db_name = common.pop("_db_name")
    common["placement_cpu_full"] = 1000.0  # one process's CPU says nothing of A or B
    common["cascade_leg_reserve"] = 2
    lesson = EdgeLesson()
    try:
        a = await start_server(
            make_settings(tmp_path / "a", node_name="node-a", cascade_node_streams=4, **common)
        )
        lesson.servers.append(a)
        b = await start_server(
            make_settings(tmp_path / "b", node_name="node-b", cascade_node_streams=6, **common),
            seed=False,
        )
        b.demo = a.demo
        lesson.servers.append(b)
        c_port = free_port()
        lesson.edge_c = node_process(tmp_path, "node-c", c_port, cascade_node_streams=5, **common)
        lesson.edge_c.start()
        await lesson.edge_c.wait_ready()
        for srv in lesson.servers:
            await eventually(
                lambda srv=srv: (
                    set(srv.app[NODES].membership.nodes) == {"node-a", "node-b", "node-c"}
                ),
                10,
                "every node seen",
            )
        lesson.teacher = teacher_c = await a.client("li")
        lesson.sid = sid = (
            await teacher_c.request(
                "session.start", {"class_id": a.class_id, "kind": "lesson", "title": title}
            )
        )["session"]["id"]
        assert sid in live(a).runtimes
        lesson.host = LiveParticipant(teacher_c, sid)
        await lesson.host.join()
        await lesson.host.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
        lesson.balancer = Balancer([c_port, b.settings.port], failover=True)
        await lesson.balancer.start()
        via_c = await client_of(lesson.balancer.url, "liuyang")
        lesson.clients.append(via_c)
        placed = [
            ("liming", await a.client("liming")),  # A: the origin's first two viewers
            ("liuxin", await a.client("liuxin")),
            ("liuyang", via_c),  # a new edge on C, its node
            ("wanghao", await b.client("wanghao")),  # C still has room
            ("zhangwei", await b.client("zhangwei")),  # C is full: a new edge on B
        ]
        for name, client in placed:
            v = Viewer(client, sid, a.uid("li"))
            await v.start()
            lesson.viewers[name] = v
        yield lesson
    finally:
        if lesson.host is not None:
            await lesson.host.close()
        for v in lesson.viewers.values():
            await v.close()
        for c in lesson.clients:
            await c.close()
        if lesson.balancer is not None:
            await lesson.balancer.close()
        if lesson.edge_c is not None:
            lesson.edge_c.crash()
        for srv in reversed(lesson.servers):
            await stop_server(srv)
        drop_postgres_database(db_name)


@pytest.mark.timeout(180)
async def test_kill_9_of_an_edge_places_its_viewers_again_and_others_never_stop(
    tmp_path: Path,
) -> None:
    async with edge_lesson(tmp_path, "全校集会") as lesson:
        a, sid, viewers = lesson.a, lesson.sid, lesson.viewers
        edge_c, teacher_c = lesson.edge_c, lesson.teacher
        assert edge_c is not None and teacher_c is not None
        rt = live(a).runtimes[sid]
        assert rt.cascade is not None
        assert rt.cascade.viewers == {
            a.uid("liuyang"): "node-c",
            a.uid("wanghao"): "node-c",
            a.uid("zhangwei"): "node-b",
        }
        await eventually(
            lambda: all(v.frames() > 10 for v in viewers.values()), 30, "everyone watching"
        )

        on_c = [viewers["liuyang"], viewers["wanghao"]]
        others = [v for name, v in viewers.items() if v not in on_c]
        # The others are watched for a stall of their video (> 1 s without a new frame).
        stalls: list[float] = []
        stop = asyncio.Event()

        async def watch_others() -> None:
            last = {id(v): (v.frames(), time.monotonic()) for v in others}
            while not stop.is_set():
                await asyncio.sleep(0.1)
                now = time.monotonic()
                for v in others:
                    frames, since = last[id(v)]
                    if v.frames() > frames:
                        last[id(v)] = (v.frames(), now)
                    elif now - since > 1.0:
                        stalls.append(now - since)

        watcher = asyncio.get_running_loop().create_task(watch_others())
        t0 = time.monotonic()
        base = {id(v): v.frames() for v in on_c}
        edge_c.crash()
        each: dict[str, float] = {}
        names = {id(v): name for name, v in viewers.items()}

        def playing_again() -> bool:
            for v in on_c:
                if names[id(v)] not in each and v.frames() >= base[id(v)] + 5:
                    each[names[id(v)]] = round(time.monotonic() - t0, 2)
            return len(each) == len(on_c)

        await eventually(playing_again, 10, "C's viewers playing again")
        again = max(each.values())
        print(f"edge killed: its viewers played again after {each} s")
        stop.set()
        await watcher
        assert again < 5, f"C's viewers played again after {again:.1f} s"
        assert not stalls, f"viewers of A and B stalled: {stalls}"
        # Liu Yang joined again through B; Wang Hao, whose connection is on B, was told to
        # subscribe again. Both are served by B now.
        assert viewers["wanghao"].p.resubscribes >= 1
        assert rt.cascade.viewers == {
            a.uid("liuyang"): "node-b",
            a.uid("wanghao"): "node-b",
            a.uid("zhangwei"): "node-b",
        }
        assert set(rt.cascade.legs) == {"node-b"}
        await teacher_c.request("session.end", {"session_id": sid})


@pytest.mark.timeout(180)
async def test_kill_9_of_the_edge_a_student_on_stage_publishes_on_puts_him_back_elsewhere(
    tmp_path: Path,
) -> None:
    """Wang Hao, connected to B and served by C, is on stage: he publishes on C, which relays
    him to the origin A, and down to B. C dies (``kill -9``): his tracks end everywhere with
    C's uplink. He is told to subscribe again (placed on B) and to publish again, which he
    does on B; everyone sees and hears him again within 5 s: Li Ming on A, Zhang Wei on B, and
    Liu Yang, whose connection was on C and who joined again through B."""
    async with edge_lesson(tmp_path, "边缘上台") as lesson:
        a, sid, viewers = lesson.a, lesson.sid, lesson.viewers
        edge_c, teacher_c = lesson.edge_c, lesson.teacher
        assert edge_c is not None and teacher_c is not None
        rt = live(a).runtimes[sid]
        assert rt.cascade is not None
        wid = a.uid("wanghao")
        assert rt.cascade.viewers[wid] == "node-c"

        wang = viewers["wanghao"]
        await teacher_c.request("stage.invite", {"session_id": sid, "user_id": wid})
        await eventually(
            lambda: any(n == "stage.invited" for n, _ in wang.p.notices), 10, "invited"
        )
        await wang.p.client.request("stage.accept", {"session_id": sid})
        await wang.p.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
        assert rt.cascade.publishers == {wid: "node-c"}
        audience = {name: viewers[name] for name in ("liming", "zhangwei", "liuyang")}
        for name, v in audience.items():
            await eventually(
                lambda v=v: advancing(v.watch.video_from(wid)), 20, f"{name} seeing Wang Hao"
            )

        t0 = time.monotonic()
        base = {name: len(v.watch.video_from(wid)) for name, v in audience.items()}
        heard = {name: v.watch.audio_frames.get(wid, 0) for name, v in audience.items()}
        edge_c.crash()
        each: dict[str, float] = {}

        def seen_again() -> bool:
            for name, v in audience.items():
                if name not in each and len(v.watch.video_from(wid)) >= base[name] + 5:
                    each[name] = round(time.monotonic() - t0, 2)
            return len(each) == len(audience)

        await eventually(seen_again, 10, "everyone seeing Wang Hao again")
        again = max(each.values())
        print(f"edge of a publisher killed: he was seen again after {each} s")
        assert again < 5, f"Wang Hao was seen again after {again:.1f} s"
        # Told to subscribe and publish again, he did both on B, where he is served now.
        assert wang.p.resubscribes >= 1 and wang.p.republishes >= 1
        assert rt.cascade.viewers[wid] == "node-b"
        assert rt.cascade.publishers == {wid: "node-b"}
        assert wid not in rt.publishers
        for name, v in audience.items():
            await eventually(
                lambda v=v, name=name: v.watch.audio_frames.get(wid, 0) > heard[name] + 10,
                5,
                f"{name} hearing Wang Hao again",
            )
        # And he sees the teacher again.
        playing = wang.frames()
        await eventually(lambda: wang.frames() > playing + 5, 10, "Wang Hao seeing the teacher")
        await teacher_c.request("session.end", {"session_id": sid})


async def test_chromium_on_edges_b_and_c_plays_the_teacher_and_a_student_on_stage_at_c(
    three: Nodes,
) -> None:
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (run `make live-deps`)")
    require(SOCKET_IO_JS.exists(), f"{SOCKET_IO_JS} is missing (npm ci in tests/node)")
    a, b, c = three.servers
    teacher_c, sid, host = await teaching(three, "Chromium 边缘")
    li = a.uid("li")
    # Two aiortc viewers fill the origin.
    fill = [Viewer(await a.client(name), sid, li) for name in ("liuyang", "liuxin")]
    for v in fill:
        await v.start()
    rt = live(a).runtimes[sid]
    assert rt.cascade is not None
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            pages = {}
            for name, node in (("wanghao", b), ("liming", c)):
                page = await (await browser.new_context()).new_page()
                await page.goto(node.url + "/test/live.html")
                await page.evaluate("([u, p]) => hr.login(u, p)", [name, DEMO_PASSWORD])
                await page.evaluate("() => hr.connect()")
                await page.evaluate("(s) => hr.join(s)", sid)
                await page.evaluate("() => hr.subscribe()")
                pages[name] = page
            assert rt.cascade.viewers == {a.uid("wanghao"): "node-b", a.uid("liming"): "node-c"}

            async def plays(page: Page, videos: int, what: str) -> None:
                """``videos`` videos advancing by a second, and audio arriving (headless Chromium
                plays no audio out, so its packets are counted, not its samples)."""
                first: dict[int, float] = {}
                first_samples = 0
                deadline = time.monotonic() + 30
                while True:
                    playing = await page.evaluate("() => hr.playing()")
                    stats = await page.evaluate("() => hr.stats()")
                    audio = [i for i in stats["subscribe"]["inbound"] if i["kind"] == "audio"]
                    samples = sum(i["packets"] or 0 for i in audio)
                    first_samples = first_samples or samples
                    for i, v in enumerate(playing):
                        if v["width"] > 0 and v["time"] > 0:
                            first.setdefault(i, v["time"])
                    advanced = [
                        i for i, v in enumerate(playing) if i in first and v["time"] > first[i] + 1
                    ]
                    if len(advanced) >= videos and samples > first_samples > 0:
                        return
                    assert time.monotonic() < deadline, f"{what}: {playing}, {stats}"
                    await asyncio.sleep(0.3)

            await plays(pages["wanghao"], 1, "Chromium on B playing the teacher")
            await plays(pages["liming"], 1, "Chromium on C playing the teacher")

            # Li Ming, the Chromium page served by C, goes on stage: the browser publishes its
            # camera and microphone on C (his own node, candidates trickled through A), which
            # relays them to A: Chromium on B plays him too (C -> A -> B), and so does Liu
            # Yang's aiortc viewer on A.
            lid = a.uid("liming")
            await teacher_c.request("stage.invite", {"session_id": sid, "user_id": lid})
            page_c = pages["liming"]
            await page_c.evaluate("(s) => hr.request('stage.accept', {session_id: s})", sid)
            published = await page_c.evaluate("() => hr.publish()")
            assert len(published["published"]) == 2, published
            assert set(live(c).edges.sessions[sid].publishers) == {lid}
            assert lid not in rt.publishers
            await plays(pages["wanghao"], 2, "Chromium on B playing Li Ming as well")
            for name, page in pages.items():  # media on loopback, both ends (tests/conftest.py)
                stats = await page.evaluate("() => hr.stats()")
                for leg in ("subscribe", "publish"):
                    pair = (stats[leg] or {}).get("pair")
                    if pair is not None:
                        ends = (pair["local"]["address"], pair["remote"]["address"])
                        assert ends == ("127.0.0.1", "127.0.0.1"), (name, leg, pair)
            await eventually(
                lambda: len(fill[0].watch.video_from(lid)) > 30, 20, "Liu Yang on A seeing him"
            )
            await eventually(
                lambda: fill[0].watch.audio_frames.get(lid, 0) > 10, 10, "Liu Yang hearing him"
            )
        finally:
            await browser.close()
    await teacher_c.request("session.end", {"session_id": sid})
    for v in fill:
        await v.close()
    await host.close()


async def test_dual_lesson_with_classrooms_served_and_publishing_on_edges(three: Nodes) -> None:
    """A dual-teacher lesson whose classrooms are each served by another node: Ms. Wu's
    classroom by B, Mr. Zhou's by C. Each classroom camera is published on its own node and
    relayed through the origin A to the master teacher and the other classroom."""
    a, b, c = three.servers
    linked = a.demo["linked_class_ids"]
    await settled(three)
    master_c = await a.client("chen")
    sid = (
        await master_c.request(
            "session.start",
            {
                "class_id": a.class_id,
                "kind": "dual_lesson",
                "title": "English 双师",
                "linked_class_ids": linked,
            },
        )
    )["session"]["id"]
    assert three.media_node(sid) is a
    chen, wu_id, zhou_id = a.uid("chen"), a.uid("wu"), a.uid("zhou")
    master = Viewer(master_c, sid, chen)
    await master.p.join()
    await master.p.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
    await master.p.subscribe()
    student = Viewer(await a.client("liuyang"), sid, chen)  # A is full with these two
    await student.start()
    rooms: dict[str, Viewer] = {}
    for name, node in (("wu", b), ("zhou", c)):
        v = Viewer(await node.client(name), sid, chen)
        await v.start()  # her classroom is served by her node first, then publishes there
        await v.p.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
        rooms[name] = v
    rt = live(a).runtimes[sid]
    assert rt.cascade is not None
    assert rt.cascade.viewers == {wu_id: "node-b", zhou_id: "node-c"}
    assert rt.cascade.publishers == {wu_id: "node-b", zhou_id: "node-c"}
    assert set(live(b).edges.sessions[sid].publishers) == {wu_id}
    assert set(live(c).edges.sessions[sid].publishers) == {zhou_id}

    # The master teacher sees and hears both classrooms; both see and hear him.
    for room in (wu_id, zhou_id):
        await eventually(
            lambda r=room: advancing(master.watch.video_from(r)), 20, f"master seeing {room}"
        )
        await eventually(
            lambda r=room: master.watch.audio_frames.get(r, 0) > 10, 10, f"master hearing {room}"
        )
    for name, v in (*rooms.items(), ("liuyang", student)):
        await eventually(lambda v=v: advancing(v.watch.video_from(chen)), 20, f"{name} seeing him")
        await eventually(
            lambda v=v: v.watch.audio_frames.get(chen, 0) > 10, 10, f"{name} hearing him"
        )
    # Classrooms do not see each other until one is put on stage.
    assert rooms["zhou"].watch.video_from(wu_id) == []
    assert student.watch.video_from(wu_id) == []

    # Ms. Wu's classroom raises its hand (from B); the master puts it on stage: Mr. Zhou's
    # classroom on C sees it (B -> A -> C), and so does the student on A.
    await rooms["wu"].p.client.request("hand.raise", {"session_id": sid, "classroom": True})
    await eventually(
        lambda: master.p.state.get("hands") == [f"classroom:{linked[0]}"], 5, "the classroom's hand"
    )
    await master_c.request("classroom.stage", {"session_id": sid, "class_id": linked[0]})
    for name, v in (("zhou on C", rooms["zhou"]), ("liuyang on A", student)):
        await eventually(
            lambda v=v: advancing(v.watch.video_from(wu_id)), 20, f"{name} seeing Ms. Wu's room"
        )
    assert master.p.state["hands"] == []

    # Ms. Wu's classroom leaves: its camera ends everywhere and B lets the lesson go.
    await rooms["wu"].p.client.request("session.leave", {"session_id": sid})
    await eventually(lambda: sid not in live(b).edges.sessions, 10, "B letting the lesson go")
    await eventually(
        lambda: (
            wu_id not in {int(t.publisher_id) for t in rt.router.tracks()}
            and wu_id
            not in {int(t.publisher_id) for t in live(c).edges.sessions[sid].router.tracks()}
        ),
        10,
        "Ms. Wu's camera ended on A and C",
    )
    assert set(rt.cascade.uplinks) == {"node-c"}
    await eventually(
        lambda: advancing(master.watch.video_from(zhou_id)), 10, "Mr. Zhou's room still seen"
    )

    await master_c.request("session.end", {"session_id": sid})
    await eventually(lambda: sid not in live(c).edges.sessions, 10, "C letting the lesson go")
    for v in (master, student, *rooms.values()):
        await v.close()


async def test_meeting_with_lobby_and_guardians_on_edges(three: Nodes) -> None:
    """A parent meeting whose guardians are served by edges B and C: the lobby holds them
    wherever they are connected; admitted, each publishes on their own node and everyone
    sees everyone; the host's mute and removal reach every node."""
    a, b, c = three.servers
    await settled(three)
    host_c = await a.client("li")
    sid = (
        await host_c.request(
            "session.start", {"class_id": a.class_id, "kind": "meeting", "title": "家长会 边缘"}
        )
    )["session"]["id"]
    assert three.media_node(sid) is a
    li, chen = a.uid("li"), a.uid("chen")
    everyone: list[Viewer] = []
    try:
        host = Viewer(host_c, sid, li)
        everyone.append(host)
        await host.p.join()
        await host.p.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
        await host.p.subscribe()
        co = Viewer(await a.client("chen"), sid, chen)  # A is full with these two
        everyone.append(co)
        await co.start()
        await co.p.publish({CounterVideoTrack(): "camera"})

        guardians: dict[str, Viewer] = {}
        for name, node in (("wang_mom", b), ("li_mom", c), ("zhang_mom", c)):
            v = Viewer(await node.client(name), sid, li)
            everyone.append(v)
            joined = await v.p.join()
            assert joined["you"]["in_lobby"] is True
            guardians[name] = v
        # In the lobby, on an edge's connection too: no media.
        with pytest.raises(RequestError) as err:
            await guardians["wang_mom"].p.subscribe()
        assert err.value.code == "forbidden"
        await eventually(
            lambda: len(host.p.state.get("lobby", [])) == 3, 5, "the host seeing the lobby"
        )
        await host_c.request("lobby.decline", {"session_id": sid, "user_ids": [a.uid("zhang_mom")]})
        await host_c.request("lobby.admit", {"session_id": sid})  # wang_mom and li_mom

        def admitted(v: Viewer) -> bool:
            return any(d.get("status") == "admitted" for _, d in v.p.notices)

        members = {"li": host, "chen": co}
        for name in ("wang_mom", "li_mom"):
            v = guardians[name]
            await eventually(lambda v=v: admitted(v), 5, f"{name} admitted")
            await v.p.subscribe()
            await v.p.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
            members[name] = v
        rt = live(a).runtimes[sid]
        assert rt.cascade is not None
        wang, li_mom = a.uid("wang_mom"), a.uid("li_mom")
        assert rt.cascade.viewers == {wang: "node-b", li_mom: "node-c"}
        assert rt.cascade.publishers == {wang: "node-b", li_mom: "node-c"}
        assert not any(n == "lobby.admitted" for n, _ in guardians["zhang_mom"].p.notices)

        # Four people, each sees the other three, whichever node serves them.
        for viewer, v in members.items():
            for pub in members:
                if pub != viewer:
                    uid = a.uid(pub)
                    await eventually(
                        lambda v=v, uid=uid: advancing(v.watch.video_from(uid)),
                        20,
                        f"{viewer} seeing {pub}",
                    )
        # And hears each other one with a microphone (the co-teacher has none): several
        # voices on one leg and in one viewer's first offer.
        for viewer, v in members.items():
            for pub in ("li", "wang_mom", "li_mom"):
                if pub != viewer:
                    uid = a.uid(pub)
                    await eventually(
                        lambda v=v, uid=uid: v.watch.audio_frames.get(uid, 0) > 10,
                        10,
                        f"{viewer} hearing {pub}",
                    )

        # The host mutes Wang Hao's mother (published on B): Li Ming's mother on C and the host on
        # A stop receiving her camera; unmuted, she plays again.
        await host_c.request("moderate.mute", {"session_id": sid, "user_id": wang, "video": True})
        await eventually(
            lambda: any(n == "media.muted" for n, _ in guardians["wang_mom"].p.notices), 5, "told"
        )
        await asyncio.sleep(1.0)  # what was in flight arrives
        before = {k: len(members[k].watch.video_from(wang)) for k in ("li_mom", "li")}
        await asyncio.sleep(1.5)
        for k, n in before.items():
            assert len(members[k].watch.video_from(wang)) <= n + 1, k
        await host_c.request("moderate.mute", {"session_id": sid, "user_id": wang, "video": False})
        for k, n in before.items():
            await eventually(
                lambda k=k, n=n: len(members[k].watch.video_from(wang)) > n + 10, 20, f"{k} again"
            )

        # Removed by the host, Li Ming's mother's camera ends everywhere and C lets the meeting go.
        await host_c.request("moderate.remove", {"session_id": sid, "user_id": li_mom})
        await eventually(lambda: sid not in live(c).edges.sessions, 10, "C letting the meeting go")
        await eventually(
            lambda: (
                li_mom not in {int(t.publisher_id) for t in rt.router.tracks()}
                and li_mom
                not in {int(t.publisher_id) for t in live(b).edges.sessions[sid].router.tracks()}
            ),
            10,
            "her tracks ended on A and B",
        )
        assert set(rt.cascade.uplinks) == {"node-b"}

        await host_c.request("session.end", {"session_id": sid})
        await eventually(lambda: sid not in live(b).edges.sessions, 10, "B letting it go")
    finally:
        with contextlib.suppress(RequestError):
            await host_c.request("session.end", {"session_id": sid})
        for v in everyone:
            await v.close()


async def test_an_edge_that_does_not_answer_is_given_up_and_nothing_hangs(three: Nodes) -> None:
    """C is up in the registry but its answers to the origin never come (a frozen event loop,
    a cut bus): the viewer the rule places on C is placed on B instead, within the edge time-out
    and well within the client's; the next one, with B and A full, is told ``unavailable`` at
    once instead of waiting for C again."""
    a, _, c = three.servers
    teacher_c, sid, host = await teaching(three, "冻结的边缘")
    li = a.uid("li")
    release = asyncio.Event()
    frozen = live(c).calls.handlers["edge"]

    async def never(origin: str, body: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {}

    live(c).calls.handlers["edge"] = never
    viewers = [Viewer(await a.client(name), sid, li) for name in ("liuyang", "liuxin")]
    try:
        for v in viewers:  # A is full with these two
            await v.start()
        wang = Viewer(await c.client("wanghao"), sid, li)  # its connection on C: C is near
        viewers.append(wang)
        await wang.p.join()
        t0 = time.monotonic()
        await wang.p.subscribe()
        took = time.monotonic() - t0
        print(f"an edge that did not answer: the viewer placed elsewhere after {took:.2f} s")
        timeout = a.settings.cascade_edge_timeout_s
        assert timeout <= took < timeout + 3, took
        rt = live(a).runtimes[sid]
        assert rt.cascade is not None
        assert rt.cascade.viewers == {a.uid("wanghao"): "node-b"}
        assert set(rt.cascade.legs) == {"node-b"}
        assert "node-c" in live(a).shunned
        await eventually(lambda: advancing(wang.watch.video_from(li)), 20, "Wang Hao playing")

        # B has no room left for another viewer, A neither, and C is not asked again.
        zhang = Viewer(await c.client("zhangwei"), sid, li)
        viewers.append(zhang)
        await zhang.p.join()
        t0 = time.monotonic()
        with pytest.raises(RequestError) as err:
            await zhang.p.subscribe()
        assert err.value.code == "unavailable"
        assert time.monotonic() - t0 < timeout  # C was not asked again
        playing = len(wang.watch.video_from(li))
        await eventually(
            lambda: len(wang.watch.video_from(li)) > playing + 10, 10, "Wang Hao still playing"
        )
    finally:
        live(c).calls.handlers["edge"] = frozen
        release.set()
        live(a).shunned.clear()
    await teacher_c.request("session.end", {"session_id": sid})
    for v in viewers:
        await v.close()
    await host.close()


async def test_a_camera_in_layers_reaches_an_edge_in_layers_and_its_viewer_is_told_its_layer(
    three: Nodes,
) -> None:
    """Ms. Li publishes her camera in three layers on A; Wang Hao, connected to B, is served on
    B. The leg carries every layer (three streams, counted so in A's load), B republishes them
    as one track in layers under A's id, and Wang Hao climbs from the lowest layer by his own
    link, told each layer (``media.layer``, from B through A) as a viewer of A is. On stage,
    his own camera in layers crosses the uplink from B to A as every layer too."""
    a, b, _ = three.servers
    teacher_c, sid, host = await hosting(three, "分层边缘")
    camera = SimulcastCamera(TextureVideoTrack(640, 360, 10), LAYERS)
    cameras = [camera]
    ack = await host.publish_layers(camera, others={ToneAudioTrack(): "microphone"})
    assert not ack["rejected"], ack
    camera_id = next(t["track_id"] for t in ack["published"] if t["source"] == "camera")
    li = a.uid("li")
    rt = live(a).runtimes[sid]
    assert rt.cascade is not None
    # A leg would carry three streams for the camera: with 4 streams and 2 legs kept in
    # reserve, A serves no viewer itself and feeds one edge.
    assert rt.cascade.leg_cost() == 3
    wang = Viewer(await b.client("wanghao"), sid, li)
    try:
        await wang.start()
        assert rt.cascade.viewers == {a.uid("wanghao"): "node-b"}
        assert rt.cascade.streams() == 3  # the leg to B: the camera's three layers (+ sound)
        on_b = live(b).edges.sessions[sid]
        copy = on_b.router.get(camera_id)
        assert isinstance(copy, LayeredTrack) and len(copy.layers) == 3
        await eventually(lambda: len(wang.watch.video_from(li)) > 20, 20, "Wang Hao playing")
        await eventually(lambda: wang.watch.audio_frames.get(li, 0) > 10, 10, "and hearing")

        def layers_told() -> list[int]:
            return [
                d["layer"]
                for name, d in wang.p.notices
                if name == "media.layer" and d["track_id"] == camera_id
            ]

        # His open link takes him up from layer 0, chosen on B, told through A.
        await eventually(lambda: any(n >= 1 for n in layers_told()), 30, "told a higher layer")
        mine = copy.stats.snapshot()["subscribers"][str(a.uid("wanghao"))]
        assert mine["layer"] >= 1 and mine["layer_switches"] >= 1
        assert layers_told()[-1] == mine["layer"]

        # On stage he publishes his camera in layers on B: the uplink carries every layer and
        # A republishes them in layers under B's track id.
        wid = a.uid("wanghao")
        await teacher_c.request("stage.invite", {"session_id": sid, "user_id": wid})
        await eventually(lambda: any(n == "stage.invited" for n, _ in wang.p.notices), 10, "asked")
        await wang.p.client.request("stage.accept", {"session_id": sid})
        his_camera = SimulcastCamera(TextureVideoTrack(640, 360, 10), LAYERS)
        cameras.append(his_camera)
        ack = await wang.p.publish_layers(his_camera, others={ToneAudioTrack(): "microphone"})
        assert not ack["rejected"], ack
        his_id = next(t["track_id"] for t in ack["published"] if t["source"] == "camera")
        assert isinstance(on_b.router.get(his_id), LayeredTrack)

        def at_a() -> object:
            return next((t for t in rt.router.tracks() if t.track_id == his_id), None)

        await eventually(lambda: at_a() is not None, 20, "his camera reaching A")
        mirrored = rt.router.get(his_id)
        assert isinstance(mirrored, LayeredTrack) and len(mirrored.layers) == 3
        assert on_b.uplink is not None and sorted(on_b.uplink.layer_counts()) == [1, 3]
        assert on_b.relay_streams() == 1 + 3  # the leg in, and the uplink's three streams
    finally:
        await teacher_c.request("session.end", {"session_id": sid})
        await wang.close()
        for cam in cameras:
            cam.stop()
        await host.close()
