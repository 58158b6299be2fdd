"""The node registry's rules and the supervisor's plan, without I/O."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import msgspec
import pytest

from realtime.cluster import supervisor
from realtime.cluster.registry import Membership, NodeInfo, cpu_fraction, decode, encode, orphaned
from realtime.config import ConfigError, Settings
from realtime.transport.rest import LIVE
from tests.conftest import make_settings, start_server, stop_server


def node(name: str, **kw: object) -> NodeInfo:
    return NodeInfo(name=name, address=f"{name}:8080", pid=1, started_at=0.0, at=1.0, **kw)  # type: ignore[arg-type]


def test_membership_says_who_came_and_went() -> None:
    m = Membership()
    assert not m.known
    first = m.observe([node("a"), node("b")])
    assert (first.came, first.went) == (["a", "b"], [])
    second = m.observe([node("b"), node("c")])
    assert (second.came, second.went) == (["c"], ["a"])
    assert m.alive("b") and not m.alive("a") and m.known


def test_only_sessions_of_nodes_gone_are_orphaned() -> None:
    running = {1: "a", 2: "b", 3: "me", 4: "c"}
    assert orphaned(running, alive={"b", "me"}, me="me") == [1, 4]
    # A node never takes itself for lost, even when the registry missed its last beat.
    assert orphaned(running, alive=set(), me="me") == [1, 2, 4]


def test_announcements_round_trip_ignore_newer_fields_and_refuse_anything_else() -> None:
    info = node("a", live_sessions=2, published_tracks=3, subscribers=40, cpu=0.5)
    assert decode(encode(info)) == info
    # A newer node's extra field (a rolling upgrade): the older node reads the rest.
    assert decode(msgspec.msgpack.encode({**info.view(), "added_later": 1})) == info
    with pytest.raises(msgspec.DecodeError):
        decode(msgspec.msgpack.encode({**info.view(), "cpu": "high"}))
    with pytest.raises(msgspec.DecodeError):
        decode(msgspec.msgpack.encode({"name": "x"}))
    with pytest.raises(msgspec.DecodeError):
        decode(b"\x93not a map")


def test_cpu_fraction() -> None:
    assert cpu_fraction(1.0, 1.5, 10.0, 11.0) == 0.5
    assert cpu_fraction(1.0, 1.0, 10.0, 10.0) == 0.0  # no time passed


def test_worker_count_and_plan() -> None:
    assert supervisor.worker_count("auto", cpus=16) == 16
    assert supervisor.worker_count("3") == 3
    for bad in ("0", "lots", "1000"):
        with pytest.raises(ConfigError):
            supervisor.worker_count(bad)
    plan = supervisor.plan(Settings(port=9000, node_name="sch"), 3, "host")
    assert [(w.port, w.name) for w in plan] == [
        (9000, "sch-w0"),
        (9001, "sch-w1"),
        (9002, "sch-w2"),
    ]
    assert supervisor.plan(Settings(port=9000), 1, "host")[0].name == "host-w0"


def test_several_workers_need_a_shared_store_and_bus() -> None:
    pg = "postgresql://db/homeroom"
    supervisor.check_cluster(Settings(), 1)  # one worker: anything goes
    with pytest.raises(ConfigError, match="PostgreSQL"):
        supervisor.check_cluster(Settings(redis_url="redis://r"), 2)
    with pytest.raises(ConfigError, match="Redis"):
        supervisor.check_cluster(Settings(database_url=pg), 2)
    with pytest.raises(ConfigError, match="fixed port"):
        supervisor.check_cluster(Settings(database_url=pg, redis_url="redis://r", port=0), 2)
    supervisor.check_cluster(Settings(database_url=pg, redis_url="redis://r"), 2)


def test_a_worker_failing_at_start_up_backs_off() -> None:
    w = supervisor.Worker(0, 9000, "w0")
    w.started_at = 100.0
    w.exited(101.0)  # died after a second: failing at start-up
    assert w.delay == 2 * supervisor.RESTART_MIN_S
    for _ in range(20):
        w.exited(101.0)
    assert w.delay == supervisor.RESTART_MAX_S
    w.started_at = 0.0
    w.exited(100.0)  # ran long enough: restarted at once again
    assert w.delay == supervisor.RESTART_MIN_S and w.restart_at == 100.0 + w.delay


def test_heartbeat_must_be_shorter_than_the_ttl() -> None:
    with pytest.raises(ConfigError, match="node_heartbeat_s"):
        Settings(demo=True, node_heartbeat_s=5.0, node_ttl_s=4.0).validate()


async def test_a_single_node_lists_itself_to_admins_only(tmp_path: Path) -> None:
    srv = await start_server(
        make_settings(tmp_path, metrics_allow="10.0.0.0/8", metrics_token="ops-token"), seed=False
    )
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(srv.url + "/healthz/nodes") as r:
                assert r.status == 403  # it names internal addresses: as /metrics
            auth = {"Authorization": "Bearer ops-token"}
            async with http.get(srv.url + "/healthz/nodes", headers=auth) as r:
                assert r.status == 200
                body = await r.json()
        me = srv.app[LIVE].node
        assert body["node"] == me and body["shared"] is False
        assert [n["name"] for n in body["nodes"]] == [me]
        assert body["nodes"][0]["address"] == f"127.0.0.1:{srv.settings.port}"
        assert body["nodes"][0]["live_sessions"] == 0
    finally:
        await stop_server(srv)
