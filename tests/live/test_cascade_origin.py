"""The origin of a cascaded lesson dies (issue #13): the whole session moves, and everyone,
viewers of the old edges included, plays again.

Node A (a ``homeroom serve`` process, killed with ``kill -9``) is the lesson's origin with room
for two viewers; the next viewers are served by edges on B and C (apps in this process). Every
Socket.IO connection is on B or C, so nobody loses theirs: they are told ``session.moved`` and
join again, the teacher publishes again on the new origin, and the viewers are placed anew (on
the new origin, or on an edge it feeds). The old edges' copies of the session, fed by A, end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.homeroom import HomeroomClient
from clients.live import LiveParticipant
from realtime.transport.rest import LIVE, NODES
from tests.conftest import Server, free_port, make_settings, start_server, stop_server
from tests.live.helpers import eventually
from tests.live.test_failover import Viewer, client_of, common_settings, frames_again, node_of
from tests.media.peers import CounterVideoTrack, ToneAudioTrack
from tests.nodes import node_process
from tests.services import drop_postgres_database
from tests.test_restart import ServerProcess


@pytest.mark.timeout(180)
async def test_kill_9_of_a_cascaded_lessons_origin_moves_it_with_its_edge_viewers(
    tmp_path: Path,
) -> None:
    common = common_settings()
    db_name = common.pop("_db_name")
    common["cascade_leg_reserve"] = 2
    servers: list[Server] = []
    origin: ServerProcess | None = None
    clients: list[HomeroomClient] = []
    viewers: dict[str, Viewer] = {}
    host: LiveParticipant | None = None
    try:
        b = await start_server(
            make_settings(tmp_path / "b", node_name="node-b", cascade_node_streams=8, **common)
        )
        servers.append(b)
        c = await start_server(
            make_settings(tmp_path / "c", node_name="node-c", cascade_node_streams=8, **common),
            seed=False,
        )
        c.demo = b.demo
        servers.append(c)
        origin = node_process(tmp_path, "node-a", free_port(), cascade_node_streams=6, **common)
        origin.start()
        await origin.wait_ready()
        for srv in servers:
            await eventually(
                lambda srv=srv: (
                    set(srv.app[NODES].membership.nodes) == {"node-a", "node-b", "node-c"}
                ),
                10,
                "every node seen",
            )
        # Started through A, it runs on A (equal loads: the node asked).
        starter = await client_of(origin.url, "li")
        clients.append(starter)
        sid = (
            await starter.request(
                "session.start", {"class_id": b.class_id, "kind": "lesson", "title": "全区公开课"}
            )
        )["session"]["id"]
        assert await node_of(b, sid) == "node-a"
        teacher = await b.client("li")
        host = LiveParticipant(teacher, sid)
        await host.join()
        await host.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
        li = b.uid("li")
        # A sends 6 streams and keeps 2 for legs: two viewers (two streams each) fill it; the
        # next ones are served by edges, their own nodes while those have room.
        for srv, name in (
            (b, "liming"),
            (c, "liuxin"),
            (b, "liuyang"),
            (c, "wanghao"),
            (b, "zhangwei"),
        ):
            v = Viewer(await srv.client(name), sid, li)
            await v.start()
            viewers[name] = v
        await eventually(
            lambda: all(v.frames() > 10 for v in viewers.values()), 30, "everyone watching"
        )
        edges = {srv.settings.node_name: sid in srv.app[LIVE].edges.sessions for srv in servers}
        assert any(edges.values()), f"no viewer was served by an edge: {edges}"

        origin.crash()  # kill -9
        recover_s = await frames_again(
            [*viewers.values()], 20, "every viewer, on the old edges too, decoding the teacher"
        )
        print(f"origin killed: every viewer played again after {recover_s:.2f} s")
        moved_to = await node_of(b, sid)
        assert moved_to in ("node-b", "node-c")
        new_origin = servers[["node-b", "node-c"].index(moved_to)]
        rt = new_origin.app[LIVE].runtimes[sid]
        assert not rt.session.ended

        # The copies A fed go (each node lets them go when it sees A gone from the registry,
        # which may be after the viewers play again); whatever edge serves viewers now is fed
        # by the new origin.
        def fed_by_the_new_origin() -> bool:
            copies = [srv.app[LIVE].edges.sessions.get(sid) for srv in servers]
            return all(copy is None or copy.origin == moved_to for copy in copies)

        await eventually(fed_by_the_new_origin, 10, "the copies A fed gone")
        assert host.rejoins >= 1
        assert recover_s < 10, f"viewers played again only after {recover_s:.1f} s"
        await teacher.request("session.end", {"session_id": sid})
    finally:
        if host is not None:
            await host.close()
        for v in viewers.values():
            await v.close()
        for cl in clients:
            await cl.close()
        if origin is not None:
            origin.crash()
        for srv in reversed(servers):
            await stop_server(srv)
        drop_postgres_database(db_name)
