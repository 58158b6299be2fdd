"""A real nginx (Debian's) in front of three real ``homeroom serve`` nodes on PostgreSQL + Redis,
with the configuration ``homeroom nginx-config`` makes (the one shipped in deploy/nginx/).

Socket.IO clients that use HTTP long-polling only, and others on WebSocket, all connect through
nginx and end up spread over the three nodes. A long-polling client sends every request of its
session as a separate HTTP request; nginx sends each to the node that holds the session (its id
begins with the node's route), so the client keeps one session throughout. Chat and notices
cross the nodes and arrive exactly once. Sign-in is REST through nginx. ``kill -9`` of a node:
its clients (long-polling and WebSocket) reconnect through nginx to the other nodes and catch
up on everything acknowledged, exactly once, while sign-in goes on working.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import socketio

from clients.homeroom import HomeroomClient
from realtime.cluster import nginx
from realtime.cluster.route import route_of
from realtime.demo import DEMO_PASSWORD
from tests.loadbalancer import (
    Nginx,
    healthy,
    lb_nodes,
    main_config,
    nginx_binary,
    node_config,
    start_nodes,
)
from tests.services import drop_postgres_database, postgres_database, redis_url
from tests.test_node_interop import Node as NodeClient
from tests.test_node_interop import _ensure_node_modules as ensure_node_modules
from tests.test_restart import ROOT, ServerProcess, clean_env, homeroom
from tests.test_workers import _config, _free_ports, _supervisor

pytestmark = pytest.mark.timeout(180)
in_module_loop = pytest.mark.asyncio(loop_scope="module")

NODES = 3


@dataclass
class Cluster:
    nodes: list[ServerProcess]
    lb: Nginx
    clients: list[HomeroomClient] = field(default_factory=list)

    def address(self, route: str) -> str:
        return next(n.address for n in self.lb.nodes if n.route == route)

    async def client(self, username: str, *transports: str) -> HomeroomClient:
        """Signed in over REST and connected over Socket.IO, both through nginx."""
        c = HomeroomClient(self.lb.url)
        self.clients.append(c)
        await c.login(username, DEMO_PASSWORD)
        await c.connect(transports=list(transports))
        return c


def route(c: HomeroomClient) -> str:
    """The node holding this client's Engine.IO session (its id names it)."""
    sid = c.sio.eio.sid
    found = route_of(sid) if sid else None
    assert found is not None, f"session id {sid!r} names no node"
    return found


async def until_async(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def connect_until(
    cluster: Cluster, username: str, transport: str, where: Callable[[str], bool]
) -> HomeroomClient:
    """A client that nginx sent to a node ``where`` accepts (new connections until one is)."""
    for _ in range(12):
        c = await cluster.client(username, transport)
        if where(route(c)):
            return c
    raise AssertionError(f"nginx never sent a {transport} client where the test needs it")


def chat_ids(c: HomeroomClient, stream: str) -> list[int]:
    return [e["data"]["id"] for e in c.events[stream] if e["type"] == "chat.message"]


async def until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    db_url, db_name = postgres_database()
    workdir = tmp_path_factory.mktemp("lb")
    nodes: list[ServerProcess] = []
    lb: Nginx | None = None
    c: Cluster | None = None
    try:
        nodes = await start_nodes(
            workdir,
            NODES,
            database_url=db_url,
            redis=redis_url(),
            channel=f"homeroom-test-{uuid.uuid4().hex[:12]}",
            node_heartbeat_s=0.5,
            node_ttl_s=2.0,
            rate_burst=1000,
            rate_per_s=1000.0,
            trusted_proxies="127.0.0.1",  # nginx's address towards the nodes
            signin_address_failure_burst=3,
        )
        lb = Nginx(workdir / "nginx", lb_nodes(nodes))
        await lb.start()
        c = Cluster(nodes, lb)
        yield c
    finally:
        if c is not None:
            for client in c.clients:
                # A client of the killed node may not close cleanly.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 5)
        if lb is not None:
            lb.stop()
        for n in nodes:
            n.terminate()
        for n in nodes:
            n.stop()
        drop_postgres_database(db_name)


def test_the_shipped_configuration_is_the_generated_one(tmp_path: Path) -> None:
    """deploy/nginx/homeroom.conf is what ``homeroom nginx-config`` makes, and nginx takes it."""
    shipped = (ROOT / "deploy" / "nginx" / "homeroom.conf").read_text()
    assert shipped == nginx.render(nginx.EXAMPLE, server_name="homeroom.school.example")
    for n in nginx.EXAMPLE:
        assert f'"~^{n.route}[.]"' in shipped and f"server {n.address}" in shipped
    (tmp_path / "nginx.conf").write_text(
        main_config(tmp_path, ROOT / "deploy" / "nginx" / "homeroom.conf")
    )
    out = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    # Two nodes whose names would give the same route are refused, as is an address without port.
    with pytest.raises(ValueError, match="same route"):
        nginx.render([nginx.Node("a.b", "10.0.0.1:1"), nginx.Node("a:b", "10.0.0.2:1")])
    with pytest.raises(ValueError, match="HOST:PORT"):
        nginx.render([nginx.Node("a", "10.0.0.1")])


def test_nginx_config_names_the_workers_as_the_supervisor_does(tmp_path: Path) -> None:
    """``homeroom nginx-config --workers N`` gives each worker of ``serve --workers N`` its own
    upstream under the name the worker's session ids carry; ``--node`` takes any nodes."""
    config = node_config(tmp_path / "homeroom.toml", 9100, node_name="school.example")
    out = homeroom(
        "--config",
        str(config),
        "nginx-config",
        "--workers",
        "2",
        "--listen",
        "8443",
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == nginx.render(
        [
            nginx.Node("school.example-w0", "127.0.0.1:9100"),
            nginx.Node("school.example-w1", "127.0.0.1:9101"),
        ],
        listen="8443",
    )
    assert '"~^school-example-w1[.]" homeroom_node1;' in out.stdout
    nodes = ["--node", "a=10.0.0.1:8080", "--node", "b=10.0.0.2:8080"]
    out = homeroom("nginx-config", *nodes, env=clean_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout == nginx.render(
        [nginx.Node("a", "10.0.0.1:8080"), nginx.Node("b", "10.0.0.2:8080")]
    )
    out = homeroom("nginx-config", "--node", "a=10.0.0.1", env=clean_env())
    assert out.returncode == 2 and "is not HOST:PORT" in out.stderr


@in_module_loop
@pytest.mark.timeout(300)
async def test_workers_behind_nginx_as_the_operations_guide_says(tmp_path: Path) -> None:
    """One machine as docs/operations.md sets it up: ``serve --workers 2`` and nginx with the
    file ``homeroom nginx-config --workers 2`` writes. Long-polling clients land on both
    workers, keep their sessions, and chat across them."""
    db_url, db_name = postgres_database()
    base = _free_ports(2)
    config = _config(
        tmp_path,
        base,
        database_url=db_url,
        redis_url=redis_url(),
        bus_channel=f"homeroom-test-{uuid.uuid4().hex[:12]}",
        node_name="school",
        rate_burst=1000,
        rate_per_s=1000.0,
        trusted_proxies="127.0.0.1",
    )
    env = clean_env()
    seeded = homeroom("--config", str(config), "demo", env=env)
    assert seeded.returncode == 0, seeded.stderr
    lb = Nginx(tmp_path / "nginx", [])
    made = homeroom(
        "--config", str(config), "nginx-config", "--workers", "2",
        "--listen", f"127.0.0.1:{lb.port}", env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    lb.site = made.stdout
    sup = _supervisor(config, tmp_path / "supervisor.log", env)
    clients: list[HomeroomClient] = []
    try:
        for port in (base, base + 1):
            await until_async(
                "worker up", lambda port=port: healthy(f"http://127.0.0.1:{port}"), timeout=150
            )
        await lb.start()

        # Signed in first, then connected: nginx takes turns over the workers, and a sign-in
        # between two handshakes would take every other turn.
        for username in ("wanghao", "liming", "zhangwei", "liuyang"):
            c = HomeroomClient(lb.url)
            clients.append(c)
            await c.login(username, DEMO_PASSWORD)
        a = clients[0]
        await a.connect(transports=["polling"])
        for b in clients[1:]:
            await b.connect(transports=["polling"])
            if route(b) != route(a):
                break
        assert {route(a), route(b)} == {"school-w0", "school-w1"}
        sessions = (a.sio.eio.sid, b.sio.eio.sid)
        stream = next(s for s in a.cursors if s.endswith(":students"))
        for sender, receiver in ((a, b), (b, a), (a, b)):
            sent = await sender.send_chat(stream, f"{route(sender)} → {route(receiver)}")
            await receiver.wait_for(lambda e, sent=sent: e["data"].get("id") == sent["id"], 15)
        assert (a.sio.eio.sid, b.sio.eio.sid) == sessions
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(), 5)
        lb.stop()
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()
        drop_postgres_database(db_name)


@in_module_loop
async def test_polling_and_websocket_clients_across_three_nodes(cluster: Cluster) -> None:
    polling = [await cluster.client(u, "polling") for u in ("wanghao", "liming", "zhangwei")]
    websocket = [await cluster.client(u, "websocket") for u in ("liuyang", "liuxin", "zhaolei")]
    teacher = await cluster.client("li", "websocket")
    mom = await cluster.client("wang_mom", "polling")
    dad = await cluster.client("li_mom", "websocket")
    # Long-polling first, then upgraded to WebSocket (the upgrade request carries the sid).
    grandpa = await cluster.client("zhang_grandpa", "polling", "websocket")
    everyone = [*polling, *websocket, teacher, mom, dad, grandpa]
    # nginx spread them: the long-polling clients alone are on all three nodes.
    assert {route(c) for c in polling} == {f"lb-{i}" for i in range(NODES)}
    assert {route(c) for c in websocket} | {route(c) for c in polling} == {
        f"lb-{i}" for i in range(NODES)
    }
    sessions = {id(c): c.sio.eio.sid for c in everyone}
    await until("the upgrade to WebSocket", lambda: grandpa.sio.eio.transport() == "websocket")
    for c in everyone:
        assert c.sio.eio.transport() == ("polling" if c in (*polling, mom) else "websocket")

    stream = next(s for s in teacher.cursors if s.endswith(":students"))
    students = [*polling, *websocket]
    sent = []
    for i, c in enumerate(students):
        sent.append(await c.send_chat(stream, f"第{i}条 through nginx from {route(c)}"))
    ids = [m["id"] for m in sent]
    for c in (*students, teacher):
        await until("every message on every node", lambda c=c: set(chat_ids(c, stream)) >= set(ids))
    for c in (*students, teacher):
        got = [i for i in chat_ids(c, stream) if i in ids]
        assert sorted(got) == sorted(ids), "each message exactly once"

    notice = await teacher.publish_notice(
        int(stream.split(":")[1]), "明天春游 trip tomorrow", kind="confirm_required"
    )
    for g in (mom, dad):
        ev = await g.wait_for(
            lambda e: e["type"] == "notice.published" and e["data"]["id"] == notice["id"],
            timeout=15,
        )
        assert ev["stream"].endswith(":guardians")
    await mom.confirm_notice(notice["id"])  # over long-polling, on the node that holds mom
    await teacher.wait_for(
        lambda e: (
            e["type"] == "notice.receipt"
            and e["data"]["user_id"] == mom.user["id"]
            and e["data"]["state"] == "confirmed"
        ),
        timeout=15,
    )
    for g in (mom, dad):
        got = [
            e
            for evs in g.events.values()
            for e in evs
            if e["type"] == "notice.published" and e["data"]["id"] == notice["id"]
        ]
        assert len(got) == 1

    # Nobody was ever disconnected: the same session from the first request to the last.
    for c in everyone:
        assert c.sio.eio.sid == sessions[id(c)] and c.sio.connected
    # And nginx sent every request of a session to the node that holds it.
    routed = [
        r for r in cluster.lb.requests() if r["uri"] == "/socket.io/" and r["sid"] not in ("", "-")
    ]
    polls = [r for r in routed if r["status"] == "200"]
    assert len(polls) >= 5 * len((*polling, mom)), "long-polling clients made their requests"
    for r in routed:
        assert r["upstream"] == cluster.address(route_of(r["sid"]) or ""), r
        assert r["status"] in ("200", "101"), r
    # nginx logs a WebSocket when it ends: the upgrade went, with its sid, to its node.
    await grandpa.close()

    def upgraded() -> list[dict[str, str]]:
        return [
            r
            for r in cluster.lb.requests()
            if r["sid"] == sessions[id(grandpa)] and r["status"] == "101"
        ]

    await until("the upgrade in nginx's log", lambda: bool(upgraded()))
    [upgrade] = upgraded()
    assert upgrade["upstream"] == cluster.address(route_of(upgrade["sid"]) or "")


@in_module_loop
async def test_the_reference_javascript_client_long_polls_through_nginx(
    cluster: Cluster,
) -> None:
    """Node.js socket.io-client, long-polling only, through nginx (tests/node/interop.js)."""
    ensure_node_modules()
    wang = await cluster.client("wanghao", "websocket")
    liming = HomeroomClient(cluster.lb.url)
    await liming.login("liming", DEMO_PASSWORD)
    stream = next(s for s in wang.cursors if s.endswith(":students"))
    tag = uuid.uuid4().hex[:8]
    node = await NodeClient.start(
        url=cluster.lb.url,
        token=liming.token,
        stream=stream,
        body=f"Node.js 经 nginx 轮询 [{tag}]",
        expect_body=f"王浩 via nginx [{tag}]",
        transport="polling",
        parser="json",
        timeout_ms=40000,
    )
    try:
        assert (await node.step("connected", timeout=30))["transport"] == "polling"
        await node.step("synced", timeout=30)
        sent = await wang.send_chat(stream, f"王浩 via nginx [{tag}]")
        assert (await node.step("received", timeout=30))["event"]["data"]["id"] == sent["id"]
        ack = (await node.step("sent", timeout=30))["ack"]
        assert ack["ok"] is True, ack
        ev = await wang.wait_for(lambda e: e["data"].get("body") == ack["message"]["body"], 15)
        assert ev["seq"] == sent["seq"] + 1
        await node.step("done", timeout=30)
        assert await node.finish() == 0
    finally:
        node.kill()


@in_module_loop
async def test_a_browser_handshake_passes_the_origin_check_through_nginx(cluster: Cluster) -> None:
    """nginx forwards the host and scheme the browser used: Engine.IO accepts the page's own
    origin, and still refuses another site's."""
    url = cluster.lb.url + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Origin": cluster.lb.url}) as r:
            body = await r.text()
            assert r.status == 200, body
            assert r.headers["Access-Control-Allow-Origin"] == cluster.lb.url
        assert body.startswith("0{") and route_of(body.split('"sid":"')[1]) is not None
        async with http.get(url, headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 400


async def sign_in_from(url: str, address: str, username: str, forged: str = "") -> str:
    """A sign-in from this client address (a loopback alias); the error code, or "ok"."""
    headers = {"X-Forwarded-For": forged} if forged else {}
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(
            url + "/api/v1/auth/login",
            json={"username": username, "password": "wrong password"},
            headers=headers,
        ) as r,
    ):
        body = await r.json()
    return "ok" if body.get("ok", True) else str(body["error"]["code"])


@in_module_loop
async def test_the_nodes_see_each_clients_own_address_through_nginx(cluster: Cluster) -> None:
    """nginx adds the client's address to X-Forwarded-For and the nodes trust nginx for it:
    failed sign-ins throttle the address they came from, not everyone behind nginx, and a
    client cannot pass for another address by writing the header itself."""
    # From 127.0.0.5: every other attempt writes a fresh address of its own in the header. Were
    # it believed, those attempts would never be throttled; each node throttles 127.0.0.5 after
    # three failures, so a run of six refusals comes once every node has seen three.
    codes: list[str] = []
    for i in range(40):
        forged = f"203.0.113.{i + 1}" if i % 2 else ""
        user = f"nobody-{uuid.uuid4().hex[:8]}"  # no account backoff: a new name each time
        codes.append(await sign_in_from(cluster.lb.url, "127.0.0.5", user, forged=forged))
        if codes[-6:] == ["rate_limited"] * 6:
            break
    assert codes[:3] == ["unauthorized"] * 3, codes
    assert codes[-6:] == ["rate_limited"] * 6, codes
    # Another client behind the same nginx is not throttled.
    assert await sign_in_from(cluster.lb.url, "127.0.0.6", "nobody-else") == "unauthorized"


@in_module_loop
async def test_without_the_route_in_the_session_id_long_polling_breaks(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The same nginx, but every request goes to the least busy node: a long-polling client's
    requests after its handshake reach nodes that do not know its session, and it cannot even
    connect. (What the route in the session id is for.)"""
    naive = Nginx(
        tmp_path / "naive",
        cluster.lb.nodes,
        edit=lambda conf: conf.replace(
            "proxy_pass http://$homeroom_node;", "proxy_pass http://homeroom;"
        ),
    )
    await naive.start()
    c = HomeroomClient(naive.url, reconnection=False)
    try:
        await c.login("wanghao", DEMO_PASSWORD)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await c.connect(transports=["polling"])
        assert not c.sio.connected
        lost = [r for r in naive.requests() if r["sid"] not in ("", "-")]
        assert any(r["status"] == "400" for r in lost), lost  # "Session ID unknown"
    finally:
        with contextlib.suppress(Exception):
            await c.close()
        naive.stop()


@in_module_loop
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_a_node_lost_its_clients_reconnect_through_nginx_and_catch_up(
    cluster: Cluster, how: str
) -> None:
    """SIGTERM (a node drained for a restart, then started again) and ``kill -9``."""
    # A long-polling and a WebSocket client on one node, and a sender on another. (nginx sends
    # new connections to the node with the fewest: the WebSocket ones count, and move it on.)
    polling = await cluster.client("wanghao", "polling")
    lost = [polling, await connect_until(cluster, "liming", "websocket", route(polling).__eq__)]
    sender = await connect_until(cluster, "chen", "websocket", route(polling).__ne__)
    gone = route(lost[0])
    node = cluster.nodes[int(gone.removeprefix("lb-"))]
    stream = next(s for s in sender.cursors if s.endswith(":students"))
    watchers = [*lost, sender]
    start = {id(c): c.cursors[stream] for c in watchers}

    acked = []
    for i in range(5):
        for c in watchers:
            acked.append(await c.send_chat(stream, f"before {i}", client_id=f"{how}-{i}-{id(c)}"))
    assert node.proc is not None
    os.kill(node.proc.pid, getattr(signal, how))  # right after the last acknowledgement
    stopped_at = time.monotonic()
    for i in range(5):  # the others go on
        acked.append(await sender.send_chat(stream, f"during {i}", client_id=f"{how}-during-{i}"))

    # Its clients reconnect through nginx, to the other nodes, and catch up.
    ids = [m["id"] for m in acked]
    for c in watchers:
        await until(
            "the lost node's clients back and caught up",
            lambda c=c: (
                c.sio.connected
                and c.sio.eio.sid is not None
                and route_of(c.sio.eio.sid) != gone
                and set(chat_ids(c, stream)) >= set(ids)
            ),
            timeout=60,
        )
    print(f"lb_{how}_reconnect_caught_up_s={time.monotonic() - stopped_at:.2f}")
    assert node.proc.wait(timeout=30) == (0 if how == "SIGTERM" else -signal.SIGKILL)
    seq_of = {m["id"]: m["seq"] for m in acked}
    for c in watchers:
        got = [e for e in c.events[stream] if e["seq"] > start[id(c)]]
        assert [e["data"]["id"] for e in got if e["data"]["id"] in seq_of] == sorted(
            ids, key=seq_of.__getitem__
        ), "every acknowledged message exactly once, in order"
        seqs = [e["seq"] for e in got]
        assert seqs == list(range(start[id(c)] + 1, start[id(c)] + 1 + len(seqs))), "no gap"
    assert lost[0].sio.eio.transport() == "polling"  # still long-polling, on another node

    # A new message reaches everyone live; sign-in and new connections go on through nginx,
    # none to the node that is gone (nginx tries it, is refused, and moves on).
    last = await lost[0].send_chat(stream, f"after {how}", client_id=f"{how}-after")
    for c in watchers:
        await c.wait_for(lambda e: e["data"].get("id") == last["id"], timeout=15)
    for transport in ("polling", "websocket", "polling"):
        fresh = await cluster.client("li", transport)
        assert route(fresh) != gone
    assert not await healthy(node.url)

    if how == "SIGTERM":  # a restart: the node comes back for what follows
        node.start()
        await node.wait_ready(timeout=60)
