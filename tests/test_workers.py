"""``homeroom serve --workers N``: a supervisor and N real node processes.

Two workers on a fresh PostgreSQL database and a Redis channel of the test's own: each answers on
its own port as a node of its own name, with its own metrics; they see each other in the
registry and a message crosses them. ``kill -9`` of one worker: the other goes on answering, and
the supervisor starts it again (same name and port, a new process). SIGTERM to the supervisor
drains both and it exits. Each worker holds its own media UDP port (``media_udp_port + i``).
Several workers on SQLite, or without Redis, are refused and say why.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from clients.homeroom import HomeroomClient
from realtime.demo import DEMO_PASSWORD
from tests.conftest import TEST_SECRET, free_port
from tests.live.test_udp_port import process_sockets, process_udp_sockets
from tests.services import drop_postgres_database, postgres_database, redis_url
from tests.test_restart import ROOT, clean_env, homeroom

pytestmark = pytest.mark.timeout(120)


def _free_ports(n: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A base port with the n ports from it free (TCP, or ``kind``)."""
    for _ in range(50):
        base = free_port()
        try:
            for p in range(base, base + n):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return base
    raise AssertionError("no run of free ports")


def _config(tmp_path: Path, port: int, **values: Any) -> Path:
    lines = [
        'host = "127.0.0.1"',
        f"port = {port}",
        f'secret = "{TEST_SECRET}"',
        "media_warm_start = false",
        f'storage_dir = "{tmp_path}/files"',
        "shutdown_timeout_s = 3.0",
    ]
    for k, v in values.items():
        lines.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}")
    path = tmp_path / "homeroom.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_several_workers_need_postgresql_and_redis(tmp_path: Path) -> None:
    sqlite = _config(tmp_path, free_port(), database_url=f"sqlite:///{tmp_path}/h.db")
    out = homeroom("--config", str(sqlite), "serve", "--workers", "2", env=clean_env())
    assert out.returncode == 2
    assert "needs PostgreSQL" in out.stderr and "SQLite" in out.stderr
    pg = _config(tmp_path, free_port(), database_url="postgresql://postgres@127.0.0.1/none")
    out = homeroom("--config", str(pg), "serve", "--workers", "2", env=clean_env())
    assert out.returncode == 2
    assert "needs Redis" in out.stderr
    out = homeroom("--config", str(pg), "serve", "--workers", "many", env=clean_env())
    assert out.returncode == 2 and "'auto'" in out.stderr
    assert not (tmp_path / "h.db").exists()  # refused before anything was touched
    # Worker i takes media_udp_port + i (and media_tcp_port + i): the last one would be beyond
    # 65535.
    for setting in ("media_udp_port", "media_tcp_port"):
        edge = _config(
            tmp_path,
            free_port(),
            database_url="postgresql://postgres@127.0.0.1/none",
            redis_url="redis://127.0.0.1:1",
            **{setting: 65535},
        )
        out = homeroom("--config", str(edge), "serve", "--workers", "2", env=clean_env())
        assert out.returncode == 2 and f"{setting} + i" in out.stderr, out.stderr


def _supervisor(config: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "realtime.cli",
                "--config",
                str(config),
                *("serve", "--workers", "2"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _health(http: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        async with http.get(url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
            return await r.json() if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def _until(what: str, check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_workers_are_nodes_restarted_and_drained(tmp_path: Path) -> None:
    db_url, db_name = postgres_database()
    base = _free_ports(2)
    media_base = _free_ports(2, socket.SOCK_DGRAM)
    tcp_base = _free_ports(2)
    while abs(tcp_base - base) < 2:  # the HTTP ports and the media TCP ports apart
        tcp_base = _free_ports(2)
    config = _config(
        tmp_path,
        base,
        media_udp_port=media_base,
        media_tcp_port=tcp_base,
        ice_host_addresses="127.0.0.1",
        database_url=db_url,
        redis_url=redis_url(),
        bus_channel=f"homeroom-test-{uuid.uuid4().hex[:12]}",
        node_name="school",
        node_heartbeat_s=0.5,
        node_ttl_s=2.0,
        rate_burst=1000,
        rate_per_s=1000.0,
    )
    env = clean_env()
    seeded = homeroom("--config", str(config), "demo", env=env)
    assert seeded.returncode == 0, seeded.stderr
    log = tmp_path / "supervisor.log"
    urls = [f"http://127.0.0.1:{base + i}" for i in range(2)]
    sup = _supervisor(config, log, env)
    clients: list[HomeroomClient] = []
    try:
        async with aiohttp.ClientSession() as http:
            # Each worker: its own port, its own name; both see the two in the registry.
            for i, url in enumerate(urls):
                body = await _until(
                    f"worker {i}",
                    lambda url=url: _both_seen(http, url),
                )
                assert body["node"] == f"school-w{i}"
            for i, url in enumerate(urls):
                async with http.get(url + "/metrics") as r:
                    text = await r.text()
                assert f'homeroom_node_info{{node="school-w{i}"}} 1.0' in text
                assert "homeroom_nodes_alive 2.0" in text

            # Each worker bound its own media ports, and only those: media_udp_port + i and
            # media_tcp_port + i (listening, for ICE over TCP).
            pids = await _pids(http, urls[0])
            for i in range(2):
                bound = {(a, p) for _, a, p in process_udp_sockets(pids[f"school-w{i}"])}
                assert ("127.0.0.1", media_base + i) in bound, (i, bound)
                assert ("127.0.0.1", media_base + 1 - i) not in bound, (i, bound)
                listening = {
                    (a, p) for _, a, p, state in process_sockets(pids[f"school-w{i}"], "tcp")
                    if state == 10
                }  # fmt: skip
                assert ("127.0.0.1", tcp_base + i) in listening, (i, listening)
                assert ("127.0.0.1", tcp_base + 1 - i) not in listening, (i, listening)
            assert f"media UDP port {media_base + 1}" in log.read_text()
            assert f"media TCP port {tcp_base + 1}" in log.read_text()

            # A message crosses the workers (the shared database and Redis).
            wang = HomeroomClient(urls[0], reconnection=False)
            liming = HomeroomClient(urls[1], reconnection=False)
            clients += [wang, liming]
            for c, who in ((wang, "wanghao"), (liming, "liming")):
                await c.login(who, DEMO_PASSWORD)
                await c.connect()
            stream = next(s for s in wang.cursors if s.endswith(":students"))
            sent = await wang.send_chat(stream, "跨进程 across workers")
            await liming.wait_for(lambda e: e["data"].get("id") == sent["id"])

            # kill -9 worker 0: worker 1 goes on; the supervisor starts worker 0 again.
            pids = await _pids(http, urls[1])
            os.kill(pids["school-w0"], signal.SIGKILL)
            killed_at = time.monotonic()
            await _until("worker 0 down", lambda: _down(http, urls[0]), timeout=10)
            assert await _health(http, urls[1]) is not None
            # The people on worker 1 noticed nothing: a message is still stored and delivered.
            sent = await liming.send_chat(stream, "还在 still here")
            await liming.wait_for(lambda e: e["data"].get("id") == sent["id"])
            await _until("worker 0 back", lambda: _health(http, urls[0]))
            print(f"worker_restart_s={time.monotonic() - killed_at:.2f}")
            new = await _until(
                "worker 0 announced again",
                lambda: _new_pid(http, urls[1], pids["school-w0"]),
            )
            assert new != pids["school-w0"]
            assert f"worker school-w0 exited (-{int(signal.SIGKILL)})" in log.read_text()

        # SIGTERM: both drained, the supervisor exits.
        started = time.monotonic()
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=30) == 0
        print(f"drain_s={time.monotonic() - started:.2f}")
        assert time.monotonic() - started < 20
        async with aiohttp.ClientSession() as http:
            for url in urls:
                assert await _health(http, url) is None
        assert "every worker stopped" in log.read_text()
    finally:
        for c in clients:
            await c.close()
        if sup.poll() is None:
            sup.kill()
            sup.wait()
        drop_postgres_database(db_name)


async def _both_seen(http: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    body = await _health(http, url)
    return body if body is not None and body["nodes"] == 2 else None


async def _down(http: aiohttp.ClientSession, url: str) -> bool:
    return await _health(http, url) is None


async def _pids(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with http.get(url + "/healthz/nodes") as r:
        body = await r.json()
    return {n["name"]: n["pid"] for n in body["nodes"]}


async def _new_pid(http: aiohttp.ClientSession, url: str, old: int) -> int | None:
    pid = (await _pids(http, url)).get("school-w0")
    return pid if pid is not None and pid != old else None
