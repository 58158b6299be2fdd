"""Admission control of new connections (realtime/transport/admission.py, realtime/gate.py).

A real server with room for two handshakes at once: two raw Engine.IO sessions opened but not
yet connected hold both places; a third new connection, over WebSocket or long-polling, is
refused at once with 503, ``Retry-After`` and the stable body (``unavailable`` /
``server_busy`` / ``retry_after_s``), while requests of sessions already open pass. Once one of
the two has connected, a new connection gets in. With a queue, a newcomer waits its turn
instead and gets in as soon as a place frees. Catch-ups (``sync``) have a gate of their own,
refused ``server_busy`` beyond it. The gate's own rules (order, wait, refusal, cancellation,
the rate behind Retry-After) are checked directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from clients.homeroom import HomeroomClient
from realtime.app import GATEWAY
from realtime.demo import DEMO_PASSWORD
from realtime.gate import Full, Gate
from realtime.transport.admission import HANDSHAKES
from tests.conftest import Server, free_port, make_settings, start_server, stop_server

pytestmark = pytest.mark.timeout(60)

WS = "/socket.io/?EIO=4&transport=websocket"
POLL = "/socket.io/?EIO=4&transport=polling"


async def token(srv: Server, http: aiohttp.ClientSession, username: str) -> str:
    async with http.post(
        srv.url + "/api/v1/auth/login", json={"username": username, "password": DEMO_PASSWORD}
    ) as r:
        return str((await r.json())["access_token"])


class Raw:
    """One Socket.IO connection spoken by hand, so the test decides when each step goes."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, srv: Server, http: aiohttp.ClientSession) -> Raw:
        """The Engine.IO session opened (upgraded, its open packet read), not connected."""
        ws = await http.ws_connect(srv.url + WS)
        opened = await ws.receive_str()
        assert opened.startswith("0"), opened
        return cls(ws)

    @classmethod
    async def connect(cls, srv: Server, http: aiohttp.ClientSession, tok: str) -> Raw:
        raw = await cls.open(srv, http)
        await raw.join(tok)
        return raw

    async def join(self, tok: str) -> None:
        """The Socket.IO connect, with the token."""
        await self.ws.send_str("40" + json.dumps({"token": tok}))
        answer = await self.ws.receive_str()
        assert answer.startswith("40"), answer

    async def sync(self) -> dict[str, Any]:
        await self.ws.send_str('421["sync",{"cursors":{}}]')
        while True:
            frame = await self.ws.receive_str()
            if frame == "2":
                await self.ws.send_str("3")
            elif frame.startswith("431"):
                return dict(json.loads(frame[3:])[0])


async def refused(http: aiohttp.ClientSession, url: str) -> None:
    """``url`` (a new session) is refused at once, with the stable body and Retry-After."""
    async with http.get(url) as r:
        assert r.status == 503
        assert int(r.headers["Retry-After"]) >= 1
        body = await r.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "unavailable"
    assert body["error"]["details"]["reason"] == "server_busy"
    assert body["error"]["details"]["retry_after_s"] == int(r.headers["Retry-After"])


@contextlib.asynccontextmanager
async def node(
    tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[Server, Gate, aiohttp.ClientSession, str]]:
    """A server with these admission settings, its gate, an HTTP session and a token."""
    srv = await start_server(make_settings(tmp_path, **settings))
    try:
        async with aiohttp.ClientSession() as http:
            yield srv, srv.app[HANDSHAKES], http, await token(srv, http, "wanghao")
    finally:
        await stop_server(srv)


async def test_new_connections_beyond_the_limit_are_refused_until_a_handshake_ends(
    tmp_path: Path,
) -> None:
    settings = {"handshake_concurrency": 2, "handshake_queue": 0, "handshake_wait_s": 1}
    async with node(tmp_path, **settings) as (srv, gate, http, tok):
        first = await Raw.open(srv, http)
        second = await Raw.open(srv, http)
        assert gate.in_progress == 2

        # A third new session, either transport: refused at once.
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(srv.url + WS)
        assert err.value.status == 503
        await refused(http, srv.url + WS)
        await refused(http, srv.url + POLL)
        assert gate.refused == 3
        # Other requests are not counted: REST, the health check.
        async with http.get(srv.url + "/healthz") as r:
            assert r.status == 200

        # The first one connects: its handshake is over, its place goes to a newcomer.
        await first.join(tok)
        assert gate.in_progress == 1
        third = await Raw.connect(srv, http, tok)
        assert (await third.sync())["ok"] is True
        # A connection that leaves before it connects gives its place back too.
        await second.ws.close()
        for _ in range(100):
            if gate.in_progress == 0:
                break
            await asyncio.sleep(0.02)
        assert gate.in_progress == 0
        assert (await first.sync())["ok"] is True
        for raw in (first, third):
            await raw.ws.close()


async def test_a_long_poll_keeps_its_place_until_it_connects(tmp_path: Path) -> None:
    srv = await start_server(make_settings(tmp_path, handshake_concurrency=1, handshake_queue=0))
    try:
        gate = srv.app[HANDSHAKES]
        async with aiohttp.ClientSession() as http:
            async with http.get(srv.url + POLL) as r:
                assert r.status == 200
                opened = await r.text()
            sid = json.loads(opened[opened.index("{") :])["sid"]
            assert gate.in_progress == 1  # opened, not connected yet: still its handshake
            await refused(http, srv.url + POLL)
            # The requests of the open session pass.
            tok = await token(srv, http, "wanghao")
            async with http.post(
                srv.url + POLL + f"&sid={sid}", data="40" + json.dumps({"token": tok})
            ) as r:
                assert r.status == 200
            async with http.get(srv.url + POLL + f"&sid={sid}") as r:
                assert (await r.text()).startswith("40")
            assert gate.in_progress == 0
            async with http.post(
                srv.url + POLL + f"&sid={sid}", data='421["sync",{"cursors":{}}]'
            ) as r:
                assert r.status == 200
            async with http.get(srv.url + POLL + f"&sid={sid}") as r:
                assert '"ok":true' in (await r.text()).replace(" ", "")
            assert gate.in_progress == 0
    finally:
        await stop_server(srv)


async def test_with_a_queue_a_newcomer_waits_its_turn(tmp_path: Path) -> None:
    settings = {"handshake_concurrency": 1, "handshake_queue": 4, "handshake_wait_s": 20}
    async with node(tmp_path, **settings) as (srv, gate, http, tok):
        first = await Raw.open(srv, http)
        waiting = asyncio.ensure_future(Raw.connect(srv, http, tok))
        while gate.waiting == 0:  # noqa: ASYNC110 (the gate has no event to wait on)
            await asyncio.sleep(0.01)
        assert not waiting.done()
        await first.join(tok)  # the place passes on
        second = await asyncio.wait_for(waiting, 10)
        assert (await second.sync())["ok"] is True
        assert gate.refused == 0 and gate.queued == 1
        for raw in (first, second):
            await raw.ws.close()


# --- the gate's rules ---------------------------------------------------------------------------


async def test_gate_order_wait_refusal_and_cancellation() -> None:
    gate = Gate(1, 2, wait_s=0.3)
    held = await gate.enter()
    a = asyncio.ensure_future(gate.enter())
    b = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0)
    assert gate.waiting == 2
    with pytest.raises(Full) as full:  # the queue is full: refused at once
        await gate.enter()
    assert full.value.retry_after_s >= 1
    a.cancel()  # a waiter that goes away leaves its turn
    await asyncio.gather(a, return_exceptions=True)
    assert gate.waiting == 1
    held.release()
    held.release()  # once only
    tb = await b
    assert gate.in_progress == 1 and gate.waiting == 0
    # A waiter that is not given a place within wait_s is refused.
    with pytest.raises(Full):
        await gate.enter()
    tb.release()
    assert gate.in_progress == 0
    assert gate.refused == 2


async def test_retry_after_follows_the_backlog_and_the_rate() -> None:
    now = [0.0]
    gate = Gate(2, 100, wait_s=10, clock=lambda: now[0])
    tickets = [await gate.enter() for _ in range(2)]
    waiters = [asyncio.ensure_future(gate.enter()) for _ in range(40)]
    await asyncio.sleep(0)
    # Nothing finished yet: the rate is taken as `limit` a second.
    assert gate.retry_after_s() == 5  # 42 / 2 per second, capped at 5
    # Ten finish within the gate's first second: 10 a second; 30 waiting and 2 holding.
    for i in range(10):
        now[0] += 0.1
        tickets.pop(0).release()
        tickets.append(await waiters[i])
    assert gate.rate() == pytest.approx(10.0)
    assert gate.retry_after_s() == 4  # ceil((2 + 30) / 10)
    # Five seconds later with nothing finished since: the rate falls, the wait grows.
    now[0] += 5.0
    assert gate.retry_after_s() == 5  # (the cap)
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    for t in tickets:
        t.release()
    assert gate.in_progress == 0


async def test_hold_gives_a_place_back() -> None:
    gate = Gate(1, 0, wait_s=1, hold_s=0.2)
    t = await gate.enter()
    await asyncio.sleep(0.3)
    assert t.released and gate.in_progress == 0
    t = await gate.enter()
    t.release()
    assert gate.in_progress == 0


async def test_catch_ups_beyond_the_limit_wait_or_are_refused(tmp_path: Path) -> None:
    """``sync`` has a gate of its own: beyond ``sync_concurrency`` one waits its turn on the
    server; with no room to wait it is answered ``unavailable`` / ``server_busy`` with
    ``retry_after_s``, and sent again it is answered."""
    settings = {"sync_concurrency": 1, "handshake_queue": 0}
    async with node(tmp_path, **settings) as (srv, _gate, http, tok):
        syncs = srv.app[GATEWAY].syncs
        raw = await Raw.connect(srv, http, tok)
        held = await syncs.enter()  # another catch-up in progress
        refusal = await raw.sync()
        assert refusal["ok"] is False
        assert refusal["error"]["code"] == "unavailable"
        assert refusal["error"]["details"]["reason"] == "server_busy"
        assert refusal["error"]["details"]["retry_after_s"] >= 1
        held.release()
        assert (await raw.sync())["ok"] is True
        assert syncs.in_progress == 0 and syncs.refused == 1
        await raw.ws.close()


async def test_a_client_that_gave_up_waiting_gets_no_handshake(tmp_path: Path) -> None:
    """A new connection waits its turn; its client times out and closes the connection; when
    its turn comes the node starts no Engine.IO session for it (nobody would read it) and the
    place goes on to the next, who gets in."""
    settings = {"handshake_concurrency": 1, "handshake_queue": 4, "handshake_wait_s": 5}
    async with node(tmp_path, **settings) as (srv, gate, http, tok):
        eio = srv.app[GATEWAY].sio.eio
        opened: list[str] = []
        handle_connect = eio._handle_connect

        async def counting(environ: Any, *args: Any, **kw: Any) -> Any:
            opened.append(environ.get("QUERY_STRING", ""))
            return await handle_connect(environ, *args, **kw)

        eio._handle_connect = counting
        holder = await Raw.open(srv, http)  # the only place
        assert len(opened) == 1
        impatient = asyncio.create_task(http.ws_connect(srv.url + WS))
        await until(lambda: gate.waiting == 1)
        impatient.cancel()  # the client gives up: its connection closes
        with contextlib.suppress(asyncio.CancelledError):
            await impatient
        await asyncio.sleep(0.2)
        patient = asyncio.create_task(Raw.open(srv, http))
        await until(lambda: gate.waiting == 2)
        await holder.join(tok)  # the place: to the one who gave up, then at once to the next
        newcomer = await asyncio.wait_for(patient, 5)
        assert len(opened) == 2  # the holder and the newcomer; none for the one who left
        await newcomer.join(tok)
        assert gate.in_progress == 0
        for raw in (holder, newcomer):
            await raw.ws.close()


async def test_a_catch_up_whose_connection_left_while_it_waited_is_not_read(
    tmp_path: Path,
) -> None:
    """A ``sync`` waiting its turn at the catch-ups' gate is dropped with its connection: the
    store is not read for nobody (python-socketio's handler is cancelled on the disconnect)."""
    settings = {"sync_concurrency": 1}
    async with node(tmp_path, **settings) as (srv, _gate, http, tok):
        gateway = srv.app[GATEWAY]
        raw = await Raw.connect(srv, http, tok)
        sid = next(iter(gateway.identities))
        held = await gateway.syncs.enter()  # another catch-up in progress
        read: list[str] = []
        real = gateway._sync

        async def counting(*args: Any) -> Any:
            read.append("sync")
            return await real(*args)

        gateway._sync = counting  # type: ignore[method-assign]
        await raw.ws.send_str('421["sync",{"cursors":{}}]')
        await until(lambda: gateway.syncs.waiting == 1)
        await raw.ws.close()
        await until(lambda: sid not in gateway.identities)
        held.release()
        await until(lambda: gateway.syncs.in_progress == 0)
        assert read == []


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.02)


async def test_the_python_client_waits_what_a_busy_server_asks(tmp_path: Path) -> None:
    """clients/homeroom.py: a handshake refused busy (503) is tried again only after the
    server's ``Retry-After`` (with jitter: at least half of it), on a first connect and on a
    reconnection, and gets in once a place is free; it does not hammer the node meanwhile."""
    settings = {"handshake_concurrency": 1, "handshake_queue": 0, "handshake_wait_s": 1}
    async with node(tmp_path, **settings) as (srv, gate, http, tok):
        holder = await Raw.open(srv, http)  # the only place
        client = HomeroomClient(srv.url)
        t0 = time.monotonic()
        first = asyncio.create_task(client.connect(tok))
        await until(lambda: client.busy_waits == 1)
        assert gate.refused == 1
        await holder.join(tok)  # its handshake is over: the place is free
        await asyncio.wait_for(first, 10)
        # Retry-After was 1 s (an empty backlog), so the second attempt came 0.5-1.5 s later.
        assert time.monotonic() - t0 >= 0.5
        assert gate.refused == 1 and client.sio.connected

        # Its connection breaks while another holds the only place: the reconnection is
        # refused, waits what it was asked, and gets in once the place is free.
        holder2 = await Raw.open(srv, http)
        refused_before = gate.refused
        assert client.sio.eio.ws is not None
        await client.sio.eio.ws.close()
        await until(lambda: client.busy_waits >= 2 and not client.sio.connected)
        await asyncio.sleep(1.0)
        # One refusal a second at most (python-socketio alone tries again within 0.2-2 s).
        assert gate.refused - refused_before <= 2
        await holder2.join(tok)
        await until(lambda: client.sio.connected, timeout=10)
        assert (await client.request("sync", {"cursors": {}}))["ok"] is True
        await client.close()
        for raw in (holder, holder2):
            await raw.ws.close()


BURST = 1000
ROOT = Path(__file__).resolve().parent.parent


def somaxconn() -> int:
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


def serve(tmp_path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``homeroom serve --demo`` on SQLite, its own process, its output in ``log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEROOM_")}
    env.update(HOMEROOM_DATABASE_URL=f"sqlite:///{tmp_path}/h.db", HOMEROOM_PORT=str(port))
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "realtime.cli", "serve", "--demo"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_a_burst_of_new_connections_is_taken_at_once(tmp_path: Path) -> None:
    """``homeroom serve`` listens with a backlog of ``listen_backlog`` (4096): the connections
    of a burst wait in the kernel for the node to accept them, rather than being dropped and
    retransmitted seconds later (aiohttp's default backlog, 128, did that to the 2,000
    clients of a killed worker). The node is stopped (SIGSTOP) while 1,000 clients connect:
    every connection is made at once; once it runs again, every one is answered."""
    most = somaxconn()
    assert most >= BURST, f"net.core.somaxconn is {most}: the kernel caps the backlog"
    port = free_port()
    log = tmp_path / "serve.log"
    proc = serve(tmp_path, port, log)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:  # until it answers (it prints "serving on" before it listens)
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.1)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            # A SYN the kernel dropped is sent again after 1 s: 0.8 s tells them apart.
            results = await asyncio.gather(
                *(
                    asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.8)
                    for _ in range(BURST)
                ),
                return_exceptions=True,
            )
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        conns = [r for r in results if isinstance(r, tuple)]
        errors = [repr(r) for r in results if not isinstance(r, tuple)][:3]
        assert len(conns) == BURST, f"{BURST - len(conns)} not made at once: {errors}"
        request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        for _reader, writer in conns:
            writer.write(request)

        async def status(reader: asyncio.StreamReader) -> bytes:
            return (await reader.readline()).split(b" ")[1]

        answers = await asyncio.wait_for(
            asyncio.gather(*(status(reader) for reader, _ in conns)), 30
        )
        assert answers == [b"200"] * BURST
    finally:
        for _reader, writer in conns:
            writer.close()
        proc.terminate()
        proc.wait(timeout=20)
