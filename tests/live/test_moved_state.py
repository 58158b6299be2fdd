"""A moved session keeps its hands, its stage and its lobby (issue #12, section 3).

Node A is a real ``homeroom serve`` process that runs the session; nodes B and C are apps in
this process, where every participant is connected (PostgreSQL + Redis of the test's own,
heartbeat 0.5 s, TTL 2 s). ``kill -9`` of A in the middle of a lesson: the hands raised (in
order) and the student on stage are still there on the new node, the student on stage
publishes again by himself and the teacher sees him again, and nobody is told anything twice.
``SIGTERM`` (a drain) of A during a parent meeting: the guardian admitted from the lobby is
still admitted, the one waiting still waits, and the host admits her on the new node.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clients.homeroom import HomeroomClient
from clients.live import LiveParticipant
from realtime.transport.rest import LIVE, NODES
from tests.conftest import Server, make_settings, start_server, stop_server
from tests.live.helpers import eventually
from tests.live.test_failover import Viewer, client_of, common_settings, frames_again, node_of
from tests.media.peers import CounterVideoTrack, ToneAudioTrack
from tests.nodes import node_process
from tests.services import drop_postgres_database
from tests.test_restart import ServerProcess


def notices(p: LiveParticipant, name: str) -> list[dict[str, Any]]:
    return [d for n, d in p.notices if n == name]


def moves(client: HomeroomClient, sid: int) -> list[dict[str, Any]]:
    return [
        e
        for evs in client.events.values()
        for e in evs
        if e["type"] == "session.moved" and e["data"]["id"] == sid
    ]


class Cluster:
    """Nodes B and C in this process, node A a ``homeroom serve`` process, and what to close."""

    def __init__(self, b: Server, c: Server, a: ServerProcess) -> None:
        self.b, self.c, self.a = b, c, a
        self.closing: list[Any] = []  # participants and clients, closed first


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, **a_settings: Any) -> AsyncIterator[Cluster]:
    common = common_settings()
    db_name = common.pop("_db_name")
    servers: list[Server] = []
    a: ServerProcess | None = None
    nodes: Cluster | None = None
    try:
        b = await start_server(make_settings(tmp_path / "b", node_name="node-b", **common))
        servers.append(b)
        c = await start_server(
            make_settings(tmp_path / "c", node_name="node-c", **common), seed=False
        )
        c.demo = b.demo
        servers.append(c)
        a = node_process(tmp_path, "node-a", **common, **a_settings)
        a.start()
        await a.wait_ready()
        await eventually(lambda: b.app[NODES].membership.alive("node-a"), 10, "B seeing A")
        nodes = Cluster(b, c, a)
        yield nodes
    finally:
        for x in nodes.closing if nodes is not None else []:
            await x.close()
        if a is not None:
            a.stop()
        for srv in reversed(servers):
            await stop_server(srv)
        drop_postgres_database(db_name)


async def started_on_a(nodes: Cluster, kind: str, **extra: Any) -> int:
    """A session started through A (placement: equal load, the asking node): it runs on A."""
    starter = await client_of(nodes.a.url, "li")
    nodes.closing.append(starter)
    body = {"class_id": nodes.b.class_id, "kind": kind, "title": "语文", **extra}
    sid = int((await starter.request("session.start", body))["session"]["id"])
    assert await node_of(nodes.b, sid) == "node-a"
    return sid


@pytest.mark.timeout(180)
async def test_kill_9_keeps_the_hands_in_order_and_the_student_on_stage(tmp_path: Path) -> None:
    async with cluster(tmp_path) as nodes:
        b, c = nodes.b, nodes.c
        sid = await started_on_a(nodes, "lesson", stage_places=2)
        li, liming = b.uid("li"), b.uid("liming")
        # The teacher on B publishes and watches the student she puts on stage.
        host = Viewer(await b.client("li"), sid, liming)
        nodes.closing.append(host)
        await host.start()
        await host.p.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
        students = {}
        for srv, name in ((b, "wanghao"), (c, "liming"), (c, "zhangwei"), (b, "liuyang")):
            st = Viewer(await srv.client(name), sid, li)
            nodes.closing.append(st)
            await st.start()
            students[name] = st
        # Two hands, in this order; Li Ming invited and on stage, publishing his camera.
        await students["zhangwei"].p.client.request("hand.raise", {"session_id": sid})
        await students["wanghao"].p.client.request("hand.raise", {"session_id": sid})
        await host.p.client.request("stage.invite", {"session_id": sid, "user_id": liming})
        await eventually(lambda: notices(students["liming"].p, "stage.invited"), 10, "invited")
        await students["liming"].p.client.request("stage.accept", {"session_id": sid})
        await students["liming"].p.publish({CounterVideoTrack(): "camera"})
        # Liu Yang turned his own microphone off (not published: he is not on stage).
        await students["liuyang"].p.client.request(
            "media.mute_self", {"session_id": sid, "audio": True}
        )
        # Zhao Lei is there too, and never comes back after the kill (his client does not
        # join again by itself): his attendance ends at the move, not at the lesson's end.
        zhao = await c.client("zhaolei")
        nodes.closing.append(zhao)
        await zhao.request("session.join", {"session_id": sid})
        await eventually(lambda: host.frames() > 10, 30, "the teacher seeing Li Ming")
        hands = [f"user:{b.uid('zhangwei')}", f"user:{b.uid('wanghao')}"]
        assert host.p.state["hands"] == hands

        nodes.a.crash()  # kill -9, right after the last acknowledged change
        t0 = time.monotonic()
        # Li Ming publishes again by himself (still on stage) and the teacher sees him again.
        await frames_again([host], 20, "the teacher seeing Li Ming after the move")
        print(f"stage_back_s={time.monotonic() - t0:.2f}")
        assert await node_of(b, sid) in ("node-b", "node-c")
        assert students["liming"].p.rejoins >= 1
        assert all(len(moves(st.p.client, sid)) == 1 for st in students.values())
        everyone = {li, liming, b.uid("wanghao"), b.uid("zhangwei"), b.uid("liuyang")}
        await eventually(
            lambda: (
                {p["user_id"] for p in host.p.state["participants"] if p["connected"]} >= everyone
            ),
            15,
            "everyone back",
        )
        everyone_back = time.time()
        view = host.p.state
        assert view["hands"] == hands  # both hands, in their order, each once
        people = {p["user_id"]: p for p in view["participants"]}
        assert people[liming]["on_stage"] is True
        assert people[liming]["publishing"] == ["camera"]
        assert people[b.uid("liuyang")]["self_muted"] == ["audio"]
        assert view["stage_places"] == 2  # the start's choice, kept too
        # Told once: Li Ming was invited once; nobody's media was refused or ended by the move.
        assert len(notices(students["liming"].p, "stage.invited")) == 1
        assert not any(notices(st.p, "rtc.unpublished") for st in students.values())
        # The lesson goes on from there: the teacher takes the first hand down.
        await host.p.client.request("hand.lower", {"session_id": sid, "hand": hands[0]})
        await eventually(lambda: host.p.state["hands"] == hands[1:], 10, "the next hand")
        await host.p.client.request("session.end", {"session_id": sid})
        report = await host.p.client.attendance_report(sid)
        rows = {r["student_id"]: r for r in report["students"]}
        assert rows[b.uid("zhaolei")]["came"] and rows[b.uid("zhaolei")]["joins"] == 1
        assert rows[b.uid("zhaolei")]["last_leave"] < everyone_back, rows[b.uid("zhaolei")]
        # Those who came back were there until the end, across the move.
        assert rows[b.uid("wanghao")]["last_leave"] > everyone_back


@pytest.mark.timeout(180)
async def test_a_drain_keeps_the_meetings_lobby_and_who_was_admitted(tmp_path: Path) -> None:
    async with cluster(tmp_path, drain_timeout_s=8, shutdown_timeout_s=3) as nodes:
        b, c = nodes.b, nodes.c
        sid = await started_on_a(nodes, "meeting")
        host = LiveParticipant(await b.client("li"), sid)
        nodes.closing.append(host)
        await host.join()
        guardians = {}
        for srv, name in ((b, "wang_mom"), (c, "li_mom")):
            g = LiveParticipant(await srv.client(name), sid)
            nodes.closing.append(g)
            assert (await g.join())["you"]["in_lobby"] is True
            guardians[name] = g
        wang_mom, li_mom = b.uid("wang_mom"), b.uid("li_mom")

        def statuses(name: str) -> list[str]:
            return [d["status"] for d in notices(guardians[name], "session.lobby")]

        await host.client.request("lobby.admit", {"session_id": sid, "user_ids": [wang_mom]})
        await eventually(lambda: "admitted" in statuses("wang_mom"), 10, "Wang's mother in")
        await guardians["wang_mom"].publish({CounterVideoTrack(): "camera"})

        assert nodes.a.proc is not None
        nodes.a.proc.terminate()  # SIGTERM: the meeting is handed over, then A stops
        await eventually(lambda: all(g.rejoins >= 1 for g in guardians.values()), 30, "rejoins")
        assert (await node_of(b, sid)) in ("node-b", "node-c")
        assert [m["data"]["reason"] for m in moves(host.client, sid)] == ["drain"]
        await eventually(
            lambda: (
                [p["user_id"] for p in host.state.get("lobby", [])] == [li_mom]
                and wang_mom in {p["user_id"] for p in host.state.get("participants", [])}
            ),
            15,
            "the host seeing the lobby as it was",
        )
        # Wang Hao's mother is still admitted: her join on the new node was answered with the
        # meeting, she was told "admitted" once and never sent back to the lobby; Li Ming's
        # mother still waits, and the move admitted nobody.
        assert "participants" in guardians["wang_mom"].state
        told = statuses("wang_mom")
        assert told.count("admitted") == 1 and told[-1] == "admitted", told
        assert "admitted" not in statuses("li_mom")
        await host.client.request("lobby.admit", {"session_id": sid, "user_ids": [li_mom]})
        await eventually(lambda: "admitted" in statuses("li_mom"), 10, "Li's mother admitted")
        await host.client.request("session.end", {"session_id": sid})


@pytest.mark.timeout(60)
async def test_a_session_that_ended_here_tells_its_publishers_nothing(live_server: Server) -> None:
    """Once a session ended on this node (moved away: ``move_all`` and ``let_go`` mark it so
    before closing its legs), a refresh of its media (a connection dropping there) used to
    refuse every track and tell each publisher ``rtc.unpublished``; the pages, already joined on
    the new node, obeyed it and stopped their camera or shared screen."""
    srv = live_server
    li = await srv.client("li")
    sid = (
        await li.request(
            "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "语文"}
        )
    )["session"]["id"]
    host = LiveParticipant(li, sid)
    await host.join()
    await host.publish({CounterVideoTrack(): "camera"})
    rt = srv.app[LIVE].runtimes[sid]
    await eventually(lambda: rt.router.tracks(), 10, "the camera published")
    rt.session.ended = True  # moved away
    await rt.refresh()
    # A sentinel told after it, on the same connection: whatever the refresh told came first.
    await srv.app[LIVE].tell(sid, srv.uid("li"), "stage.invited", {"session_id": sid})
    await eventually(lambda: notices(host, "stage.invited"), 10, "the sentinel")
    assert notices(host, "rtc.unpublished") == []
    assert rt.router.tracks()  # still forwarding until its legs close
    rt.session.ended = False
    await host.close()
