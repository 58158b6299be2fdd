"""The cluster's costs, side by side in one run: one worker against two, and a worker killed.

Run from the repository root (``make setup`` first)::

    .venv/bin/python -m bench.cluster            # ~4 minutes when quiet; the last line is JSON
    .venv/bin/python -m bench.cluster --quick    # a smoke test, 1-2 minutes

Everything runs as in production on PostgreSQL (the machine's, a fresh database per deployment)
and Redis (a ``redis-server`` of the benchmark's own per deployment, so its CPU can be read):

- **single**: ``homeroom serve --workers 1``: one node;
- **cluster**: ``homeroom serve --workers 2``: a supervisor and two worker processes (nodes).

The same school is written into both stores (bench/chat_fanout.py's), tokens are minted with each
deployment's secret, and the same lean clients drive both (bench/sioclient.py, receivers in
bench/loadworker.py processes).

- **chat**: one sender, a room of 500 receivers. On the single node everyone is on it; on the
  cluster the sender and half the receivers are on worker 0, the other half on worker 1.
  Repetitions alternate the two. ``cluster_cpu_ratio``: the servers' CPU-seconds (psutil: the
  serving processes and their children) per delivery, cluster over single.
  ``cross_node_p99_ratio``: p99 send->receipt of the receivers on worker 1 (the sender is on
  worker 0) over the single node's p99, at a fixed rate.
- **kill -9**: ``--storm`` (2,000) guardians connected to worker 0 follow their streams by
  the protocol's rules (bench/syncing_client.py), a teacher sends chat to them from each worker
  at a fixed rate, then worker 0 gets SIGKILL. ``reconnect_2000_s``: from the kill until every
  one of them has reconnected to the other worker and finished its catch-up ``sync``.
  ``lost_acked``: acknowledged messages that some client never got (the sender on the killed
  worker reconnects and sends again what had no ack, with the same ``client_id``),
  ``duplicated``: messages a client got twice; both also checked against the store (the
  stream replayed from 0). Where the storm's time went: each client's phases
  (``storm_client_s_each``), the survivor's admission gates (``storm_gates``), the CPU of the
  survivor, the load processes, PostgreSQL and Redis, the load processes' loop lag and the
  survivor's ``/healthz`` answer time. Clients reconnect as the shipped nginx would route them
  (``--balancer nginx``: least_conn, a refusing node left out 10 s) or to each address in turn
  (``turns``). ``--set KEY=VALUE`` gives the workers a setting, ``--sample DIR`` profiles the
  server processes through the storm (py-spy, collapsed stacks in ``DIR/<pid>.txt``).
- **store**: the single node on PostgreSQL against the same node on SQLite, in turn: CPU per
  ``chat.send`` and per connect + ``sync`` (``postgresql_over_sqlite_send``, ``_connect``).
- **live sessions across workers**: four lessons started through worker 0 run 2 and 2
  (``placement_2_and_2``); viewers (bench/sfu/peer.py) join the publisher's lesson through the
  other worker and through the media node, in turn: join to first keyframe
  (``join_cross_node_s``, ``join_same_node_s``).
- **a lesson's node killed**: a lesson is placed on one worker while its publisher and
  ``--viewers`` (20) viewers (bench/sfu/peer.py, counting frames without decoding) are connected
  to the other; that media node gets SIGKILL. The lesson moves (``session.moved``) and everyone
  joins it again by themselves (clients/live.py). ``recover_s``: from the kill until every
  viewer has a keyframe on its new peer connection. The supervisor restarts the killed worker;
  the step waits for it before the next.

A step that fails or runs out of the run's budget (10 minutes) reports what it has; the
``missing`` list says which keys are null and why. docs/performance.md has the details.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import psutil

from bench.chat_fanout import (
    LARGE,
    People,
    Started,
    WorkerPool,
    asyncio_run_in_thread,
    chat,
    close_sender,
    latency,
    median,
    open_sender,
    pct,
    rounded,
    seed_homeroom,
    send_ok,
    start_homeroom,
    throughput,
    wait_for_port,
)
from bench.procs import cpu_seconds, free_port, say, tail
from bench.sioclient import SioConnection, new_session

ROOT = Path(__file__).resolve().parent.parent
PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q", "-c"]
BUDGET_S = 600
TARGETS = {
    "cluster_cpu_ratio": ("<=", 1.25),
    "cross_node_p99_ratio": ("<=", 2.0),
    "join_cross_node_s": ("<", 0.5),
    "recover_s": ("<", 5.0),
    "lost_acked": ("==", 0),
    "reconnect_2000_s": ("<", 10.0),
}
RECOVER_TIMEOUT_S = 60.0
# --handshakes: the workers' handshake_concurrency (admission control), when not the default.
HANDSHAKES: list[int] = []
# --set KEY=VALUE: more of the workers' settings, as TOML lines (e.g. listen_backlog=128).
SETTINGS: list[str] = []
# --sample DIR: where py-spy writes the server processes' stacks through the storm.
SAMPLE: list[str] = []
# Samples per second (py-spy's default; the wall clock, idle samples dropped).
SAMPLE_RATE = 100


# --- the deployments ----------------------------------------------------------------------------


def tokens(dep: Deployment, uids: list[int]) -> list[str]:
    return [dep.token(u) for u in uids]


def run_of_free_ports(n: int) -> int:
    """A base port with the ``n`` ports from it free (the workers take port + i)."""
    for _ in range(50):
        base = free_port()
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return base
    raise RuntimeError("no run of free ports")


def tree_cpu(pid: int) -> float:
    """CPU-seconds (user + system) of a process and of every process under it, now."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return math.nan
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


@dataclass
class Deployment:
    """``homeroom serve --workers N`` on a database and a Redis of its own."""

    name: str
    workers: int
    urls: list[str] = field(default_factory=list)
    pid: int = 0
    redis_pid: int = 0
    database: str = ""
    secret: str = ""
    tokens: dict[int, str] = field(default_factory=dict)
    log: Path = Path("/dev/null")

    @property
    def url(self) -> str:
        return self.urls[0]

    def token(self, uid: int) -> str:
        if uid not in self.tokens:
            from realtime.auth import TokenIssuer

            self.tokens[uid] = TokenIssuer({"k1": self.secret}, "k1", 4 * 3600).issue(uid, 1)
        return self.tokens[uid]

    def cpu(self) -> float:
        return tree_cpu(self.pid)

    def redis_cpu(self) -> float:
        return cpu_seconds(self.redis_pid)


def start_redis(started: Started, tmp: Path, name: str) -> tuple[str, int]:
    port = free_port()
    log = tmp / f"redis-{name}.log"
    args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    proc = started.popen([*args, "--appendonly", "no", "--dir", str(tmp)], log)
    wait_for_port(port, proc, log, 20)
    return f"redis://127.0.0.1:{port}/0", proc.pid


def create_database() -> str:
    name = "homeroom_bench_" + uuid.uuid4().hex[:10]
    subprocess.run([*PG, f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return name


def drop_database(name: str) -> None:
    subprocess.run([*PG, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)


def postgres_cpu() -> dict[int, float]:
    """CPU-seconds of each of the machine's PostgreSQL processes (shared with anything else
    using it), by pid: compare two readings over the pids in both (a backend that exits takes
    its CPU with it)."""
    out: dict[int, float] = {}
    for p in psutil.process_iter(["name"]):
        if p.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
    return out


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before[pid] for pid in after.keys() & before.keys())


async def gate_metrics(url: str) -> dict[str, float]:
    """The admission gates' counters of one node (its /metrics, from 127.0.0.1)."""
    out: dict[str, float] = {}
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with (
            aiohttp.ClientSession() as http,
            http.get(url + "/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r,
        ):
            for line in (await r.text()).splitlines():
                if line.startswith(("homeroom_handshakes_", "homeroom_syncs_")):
                    name, _, value = line.partition(" ")
                    out[name] = float(value)
    return out


async def answer_times(url: str, stop: asyncio.Event, period: float = 0.25) -> list[float]:
    """Seconds each /healthz took on ``url`` until ``stop``: one at a time, a connection each."""
    times: list[float] = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        while not stop.is_set():
            t = time.monotonic()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url + "/healthz", timeout=aiohttp.ClientTimeout(30)) as r:
                    await r.read()
                    times.append(time.monotonic() - t)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
    return times


async def health(http: aiohttp.ClientSession, url: str, path: str = "/healthz") -> Any:
    try:
        async with http.get(url + path, timeout=aiohttp.ClientTimeout(total=3)) as r:
            return await r.json() if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def start_deployment(
    started: Started, tmp: Path, people: People, name: str, workers: int, databases: list[str]
) -> Deployment:
    dep = Deployment(name, workers, secret="bench-" + secrets.token_hex(24))
    redis_url, dep.redis_pid = start_redis(started, tmp, name)
    dep.database = create_database()
    databases.append(dep.database)
    database_url = f"postgresql://postgres@127.0.0.1:5432/{dep.database}"
    asyncio_run_in_thread(seed_homeroom(database_url, people))
    asyncio_run_in_thread(add_class(database_url, people.teacher))
    base = run_of_free_ports(workers)
    config = tmp / f"{name}.toml"
    lines = [
        'host = "127.0.0.1"',
        f"port = {base}",
        f'database_url = "{database_url}"',
        f'redis_url = "{redis_url}"',
        f'bus_channel = "bench-{name}"',
        f'node_name = "{name}"',
        f'secret = "{dep.secret}"',
        # Senders send as fast as acks come back: no rate limit in the way.
        "rate_burst = 100000000",
        "rate_per_s = 100000000.0",
        'log_level = "WARNING"',
        "media_warm_start = false",
        'ice_host_addresses = "127.0.0.1"',
        "session_grace_s = 1",
        f'storage_dir = "{tmp}/files-{name}"',
        "shutdown_timeout_s = 3.0",
        *([f"handshake_concurrency = {HANDSHAKES[0]}"] if HANDSHAKES else []),
        *SETTINGS,
    ]
    config.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEROOM_")}
    log = tmp / f"{name}.log"
    args = [sys.executable, "-m", "realtime.cli", "--config", str(config), "serve"]
    proc = started.popen([*args, "--workers", str(workers)], log, cwd=str(ROOT), env=env)
    dep.pid = proc.pid
    dep.log = log
    dep.urls = [f"http://127.0.0.1:{base + i}" for i in range(workers)]
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as http:
        for url in dep.urls:
            while True:
                body = await health(http, url)
                if body is not None and body.get("nodes") == workers:
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{tail(log)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: {url} not ready in 90 s:\n{tail(log)}")
                await asyncio.sleep(0.2)
    return dep


def worker_pid(dep: Deployment, url: str) -> int | None:
    """The pid of the worker process listening on ``url``'s port (psutil, not the registry)."""
    port = int(url.rsplit(":", 1)[1])
    for child in psutil.Process(dep.pid).children():
        with contextlib.suppress(psutil.Error):
            if any(c.laddr.port == port for c in child.net_connections("tcp") if not c.raddr):
                return int(child.pid)
    return None


class Samplers:
    """``--sample DIR``: ``py-spy record`` attached to each of ``pids`` (``--nonblocking``: the
    process is never paused), collapsed stacks (``--format raw``, flamegraph.pl's input) into
    ``DIR/<pid>.txt``. py-spy samples on the wall clock, ``SAMPLE_RATE`` a second, and drops the
    samples of threads the kernel does not report running (state R; no ``--idle``): a thread
    waiting in epoll or on a lock is not counted, one runnable but waiting for a core is (on a
    loaded machine the counts exceed the CPU used: shares, not seconds). ``start`` returns once
    every py-spy has attached; ``stop`` (SIGINT) makes each write its file and end; each also
    ends by itself after ``seconds``, whatever happens to the bench."""

    def __init__(self, out_dir: str, pids: list[int], seconds: float) -> None:
        self.dir, self.pids, self.seconds = Path(out_dir), pids, seconds
        self.procs: list[asyncio.subprocess.Process] = []
        self.readers: list[asyncio.Task[list[str]]] = []

    async def start(self, timeout: float = 15.0) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.dir.mkdir(parents=True, exist_ok=True)
        attached = [asyncio.Event() for _ in self.pids]
        try:
            for pid, ready in zip(self.pids, attached, strict=True):
                proc = await asyncio.create_subprocess_exec(
                    *[spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking"],
                    *["--rate", str(SAMPLE_RATE), "--duration", str(math.ceil(self.seconds))],
                    *["--output", str(self.dir / f"{pid}.txt")],
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,  # its messages (stdout or stderr)
                    stderr=asyncio.subprocess.STDOUT,
                )
                self.procs.append(proc)
                self.readers.append(asyncio.create_task(self._read(proc, ready)))
            waits = [asyncio.create_task(e.wait()) for e in attached]
            done, _ = await asyncio.wait(waits, timeout=timeout)
            for w in waits:
                w.cancel()
            # (one that ended already could not attach: no such process, ptrace refused)
            if len(done) < len(waits) or any(p.returncode is not None for p in self.procs):
                raise RuntimeError(f"py-spy did not attach to all of {self.pids} (said above)")
        except BaseException as e:
            await self.stop()  # (prints what each py-spy said)
            if isinstance(e, FileNotFoundError):
                raise RuntimeError(f"no py-spy ({spy}): make setup installs it") from e
            raise

    @staticmethod
    async def _read(proc: asyncio.subprocess.Process, ready: asyncio.Event) -> list[str]:
        lines = []
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            lines.append(line)
            if line.startswith("py-spy> Sampling process"):
                ready.set()
        await proc.wait()
        ready.set()  # ended (refused, or the process is gone): start() checks the returncode
        return lines

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
        for pid, proc, reader in zip(self.pids, self.procs, self.readers, strict=False):
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            lines = await reader
            wrote = next((x for x in lines if x.startswith("py-spy> Wrote")), None)
            said = wrote.removeprefix("py-spy> ") if wrote else " ".join(lines)[:500]
            say(f"  py-spy {pid}: {said}")
        self.procs.clear()
        self.readers.clear()


def server_pids(dep: Deployment, exclude: int) -> list[int]:
    """The deployment's Python processes (the supervisor, its workers and theirs) but ``exclude``
    and those under it."""
    root = psutil.Process(dep.pid)
    gone = {exclude}
    with contextlib.suppress(psutil.NoSuchProcess):
        gone |= {p.pid for p in psutil.Process(exclude).children(recursive=True)}
    pids = []
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            if p.pid not in gone and "python" in os.path.basename(p.exe()):
                pids.append(p.pid)
    return pids


async def connect_split(pool: WorkerPool, parts: list[tuple[str, list[str]]]) -> None:
    """Load worker i connects ``parts[i]``'s tokens to ``parts[i]``'s address, and syncs."""
    cmds = [
        {"cmd": "connect", "url": url, "tokens": toks, "sync": True, "compress": False}
        for url, toks in parts
    ]
    replies = await pool.all(cmds, timeout=300)
    for i, r in enumerate(replies):
        if r["failed"]:
            raise RuntimeError(f"{r['failed']} connections failed: {r['first_error']}")
        pool.sizes[i] += r["connected"]


# --- chat: one worker against two ---------------------------------------------------------------


@dataclass
class Side:
    dep: Deployment
    pool: WorkerPool
    sender: SioConnection
    cpu_per_10k: list[float] = field(default_factory=list)
    redis_per_10k: list[float] = field(default_factory=list)
    deliveries_per_s: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)  # every receiver
    p50_ms: list[float] = field(default_factory=list)
    p99_other_ms: list[float] = field(default_factory=list)  # receivers on worker 1
    p99_same_ms: list[float] = field(default_factory=list)  # receivers on the sender's worker
    missing: int = 0


async def chat_step(sides: list[Side], args: argparse.Namespace, stream: str) -> None:
    for i in range(args.reps):
        order = sides if i % 2 == 0 else sides[::-1]
        for side in order:
            redis0 = side.dep.redis_cpu()
            r = await throughput(side.dep, side.pool, side.sender, stream, args.room, args.seconds)
            redis = side.dep.redis_cpu() - redis0
            side.cpu_per_10k.append(r["cpu_s_per_10k"])
            side.redis_per_10k.append(
                redis / r["delivered"] * 10_000 if r["delivered"] else math.nan
            )
            side.deliveries_per_s.append(r["deliveries_per_s"])
            side.missing += r["missing"]
            say(
                f"  {side.dep.name} rep {i + 1}: {r['deliveries_per_s']:,.0f} deliveries/s, "
                f"{r['cpu_s_per_10k']:.3f} CPU-s per 10,000 (Redis {side.redis_per_10k[-1]:.3f})"
            )
        for side in order:
            lat = await latency(
                side.pool, side.sender, stream, args.room, args.rate, args.latency_seconds
            )
            stats = await side.pool.all({"cmd": "stats"})
            per = [sorted(s["lats"]) for s in stats]
            side.p99_ms.append(lat["p99_ms"])
            side.p50_ms.append(lat["p50_ms"])
            side.p99_same_ms.append(pct(per[0], 99) * 1000)
            side.p99_other_ms.append(pct(per[-1], 99) * 1000)
            side.missing += lat["missing"]
            say(
                f"  {side.dep.name} rep {i + 1}: p50 {lat['p50_ms']:.1f} ms, p99 "
                f"{lat['p99_ms']:.1f} ms (load worker 0: {side.p99_same_ms[-1]:.1f}, "
                f"1: {side.p99_other_ms[-1]:.1f})"
            )


# --- kill -9: a storm of reconnections, and nothing acknowledged lost ---------------------------


class Sender:
    """Sends chat at a fixed rate; when its connection is lost, reconnects to the next address
    (with the web app's randomized delay) and sends again, with the same ``client_id``, every
    message that had no ack."""

    def __init__(self, dep: Deployment, urls: list[str], uid: int, stream: str, rate: float):
        self.dep, self.urls, self.uid, self.stream, self.rate = dep, urls, uid, stream, rate
        self.url_index = 0
        self.session = new_session()
        self.conn: SioConnection | None = None
        self.unacked: dict[str, dict[str, Any]] = {}
        self.acked: dict[str, int] = {}  # client_id -> message id
        self.refused: list[str] = []
        self.resent = 0
        self.reconnects = 0

    async def connect(self) -> None:
        delay = 0.5
        while True:
            url = self.urls[self.url_index % len(self.urls)]
            conn = SioConnection(self.session, url, self.dep.token(self.uid), compress=False)
            try:
                await conn.connect()
                ack = await conn.call("sync", {"cursors": {}}, timeout=30)
                if not ack.get("ok"):
                    raise RuntimeError(f"sync refused: {ack!r:.200}")
                self.conn = conn
                return
            except Exception:
                await conn.close()
                self.url_index += 1
                await asyncio.sleep(delay * random.uniform(0.6, 1.4))
                delay = min(delay * 2, 4.0)

    def _send(self, payload: dict[str, Any]) -> None:
        assert self.conn is not None
        fut = self.conn.emit_nowait("chat.send", payload)
        fut.add_done_callback(lambda f, cid=payload["client_id"]: self._acked(cid, f))

    def _acked(self, cid: str, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return  # no ack: it stays in unacked and goes again after the reconnection
        ack = fut.result()
        if isinstance(ack, dict) and ack.get("ok"):
            self.unacked.pop(cid, None)
            self.acked[cid] = ack["message"]["id"]
        else:
            self.unacked.pop(cid, None)
            self.refused.append(f"{ack!r:.200}")

    async def _recover(self) -> None:
        self.url_index += 1
        await asyncio.sleep(0.5 * random.uniform(0.6, 1.4))
        await self.connect()
        self.reconnects += 1
        for payload in list(self.unacked.values()):
            self.resent += 1
            self._send(payload)

    async def run(self, stop: asyncio.Event) -> None:
        t0 = time.monotonic()
        i = 0
        while not stop.is_set():
            assert self.conn is not None
            if self.conn.closed.is_set():
                await self._recover()
                continue
            delay = t0 + i / self.rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            payload = chat(self.stream)
            self.unacked[payload["client_id"]] = payload
            self._send(payload)
            i += 1

    async def finish(self, timeout: float = 30) -> None:
        """Until every message has its ack (reconnecting and sending again if need be)."""
        deadline = time.monotonic() + timeout
        while self.unacked and time.monotonic() < deadline:
            assert self.conn is not None
            if self.conn.closed.is_set():
                await self._recover()
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        await self.session.close()


async def replay(dep: Deployment, url: str, uid: int, stream: str) -> Counter[str]:
    """The stream as stored, from 0: chat client_id -> how many messages carry it."""
    session = new_session()
    conn = SioConnection(session, url, dep.token(uid), compress=False)
    counts: Counter[str] = Counter()
    try:
        await conn.connect()
        cursor = 0
        while True:
            ack = await conn.call("sync", {"cursors": {stream: cursor}}, timeout=60)
            for ev in ack["events"]:
                if ev["stream"] == stream:
                    cursor = ev["seq"]
                    if ev["type"] == "chat.message":
                        counts[ev["data"]["client_id"]] += 1
            if stream not in ack["more"]:
                return counts
    finally:
        await conn.close()
        await session.close()


async def kill_step(
    dep: Deployment, pool: WorkerPool, people: People, args: argparse.Namespace, out: dict[str, Any]
) -> None:
    """Writes its figures into ``out`` as they come (a run cut by its budget keeps them)."""
    stream = f"class:{people.class_large}:guardians"
    doomed, other = dep.urls[0], dep.urls[1]
    storm = people.guardians[: args.storm]
    n = len(pool.procs)
    t = time.monotonic()
    cpu0 = dep.cpu()
    parts = [storm[i::n] for i in range(n)]
    balancer = args.balancer == "nginx"
    replies = await pool.all(
        [
            {"cmd": "follow", "urls": dep.urls, "tokens": tokens(dep, p), "balancer": balancer}
            for p in parts
        ],
        timeout=300,
    )
    # Observers on the worker that stays: the teacher's devices, following the same stream.
    watch = [people.teacher] * args.observers
    replies.append(
        await pool._ask(
            n - 1, {"cmd": "follow", "urls": [other, doomed], "tokens": tokens(dep, watch)}, 60
        )
    )
    # Refused connects or syncs were tried again (up to 4 times, as a client would); those
    # that never got in are counted, and the storm is measured on the others.
    out["storm_connect_failed"] = sum(r["failed"] for r in replies)
    out["storm_connect_retries"] = sum(r["retries"] for r in replies)
    out["storm_connect_first_retry"] = next(
        (r["first_retry"] for r in replies if r["first_retry"]), None
    )
    if out["storm_connect_failed"] >= len(storm) // 2:
        first = next(r["first_error"] for r in replies if r["first_error"])
        raise RuntimeError(f"{out['storm_connect_failed']} followers failed to connect: {first}")
    storm = storm[: len(storm) - out["storm_connect_failed"]]  # (only their number is used)
    out["storm_connect_s"] = time.monotonic() - t
    # Server CPU per connection, connect and first sync (PostgreSQL), 50 at a time per process.
    out["connect_sync_cpu_ms"] = (dep.cpu() - cpu0) / (len(storm) + args.observers) * 1000
    say(
        f"  {len(storm)} guardians on worker 0 in {out['storm_connect_s']:.1f} s, "
        f"{out['connect_sync_cpu_ms']:.1f} ms of server CPU each"
    )

    stop = asyncio.Event()
    senders = [
        Sender(dep, [doomed, other], people.teacher, stream, args.storm_rate),
        Sender(dep, [other, doomed], people.teacher, stream, args.storm_rate),
    ]
    for s in senders:
        await s.connect()
    tasks = [asyncio.create_task(s.run(stop)) for s in senders]
    samplers: Samplers | None = None
    try:
        await asyncio.sleep(2.0)
        pid = worker_pid(dep, doomed)
        survivors = [p for u in dep.urls if u != doomed and (p := worker_pid(dep, u))]
        if pid is None or not survivors:
            raise RuntimeError("the workers' processes were not found")
        # A worker busy with a connection storm on a loaded machine may miss its heartbeat's
        # TTL: the others then take it for lost (and would end its lessons). Counted here.
        out["registry_false_losses_before_kill"] = dep.log.read_text().count(
            "is gone from the registry"
        )
        cpu_s0 = sum(tree_cpu(p) for p in survivors)
        gates0 = await gate_metrics(other)
        load_cpu0 = sum(r["cpu_s"] for r in await pool.all({"cmd": "cpu"}))
        pg_cpu0, redis_cpu0 = postgres_cpu(), dep.redis_cpu()
        await pool.all({"cmd": "lag"})
        probe_stop = asyncio.Event()
        probe = asyncio.create_task(answer_times(other, probe_stop))
        if SAMPLE:  # --sample: py-spy on the server processes that stay, through the storm
            longest = min(args.storm_timeout, args.deadline - 120 - time.monotonic()) + 20
            attached = Samplers(SAMPLE[0], server_pids(dep, pid), longest)
            await attached.start()
            samplers = attached
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        say(f"  kill -9 worker 0 (pid {pid})")
        # Leave time for the rest of the step within the run's budget.
        deadline = min(killed + args.storm_timeout, args.deadline - 120)
        in_target: int | None = None
        while True:
            # A count only while the storm lasts (the full stats, once, after: polling them
            # every 0.1 s cost the load processes CPU they need for the clients).
            counts = await pool.all({"cmd": "follow_count", "since": killed})
            synced = sum(c["reconnected_synced"] for c in counts)
            now = time.monotonic()
            if in_target is None and now - killed >= TARGETS["reconnect_2000_s"][1]:
                in_target = synced
            if synced >= len(storm) or now > deadline:
                break
            await asyncio.sleep(0.1)
        if samplers is not None:
            await samplers.stop()
            samplers = None
        stats = await pool.all({"cmd": "follow_stats", "since": killed})
        synced = sum(s["reconnected_synced"] for s in stats)
        out["storm_synced"] = synced
        out["storm_synced_within_10_s"] = synced if in_target is None else in_target
        out["storm_failed_attempts"] = sum(s["failed_attempts"] for s in stats)
        # Why attempts failed, and where (@0: the killed worker's address, @1: the other).
        failures: Counter[str] = Counter()
        for s in stats:
            failures.update(s["failures"])
        out["storm_failures"] = dict(failures)
        # Where the reconnections landed (through the balancer): @0 the killed worker's
        # address (restarted by the supervisor), @1 the survivor.
        landed: Counter[str] = Counter()
        for s in stats:
            landed.update(s.get("landed", {}))
        out["storm_landed"] = {f"@{dep.urls.index(u)}": n for u, n in sorted(landed.items())}
        # Seconds from the kill at which each tenth of the clients was back (about): the
        # catch-up of its reconnection, not a later one (``reconnect_2000_s`` is the last sync
        # of any: a ``resync`` of everyone during the storm moves it).
        deciles = sorted(t for s in stats for t in s["back_s"])
        out["storm_back_deciles_s"] = [round(t, 1) for t in deciles[:: max(1, len(stats))]]
        # Connects refused at once by admission control (503) and syncs answered busy, each
        # tried again after the wait the server asked for: not work lost.
        out["storm_busy_refusals"] = sum(s["busy_refusals"] for s in stats)
        out["storm_busy_syncs"] = sum(s["busy_syncs"] for s in stats)
        # The surviving workers' CPU through the storm (not the restarted worker 0's start-up).
        out["storm_server_cpu_s"] = sum(tree_cpu(p) for p in survivors) - cpu_s0
        # ... and the others' on the same 2 cores: the load processes (the clients), PostgreSQL
        # (the machine's: anything else using it counts too), Redis.
        out["storm_load_cpu_s"] = (
            sum(r["cpu_s"] for r in await pool.all({"cmd": "cpu"})) - load_cpu0
        )
        out["storm_postgres_cpu_s"] = cpu_since(pg_cpu0, postgres_cpu())
        out["storm_redis_cpu_s"] = dep.redis_cpu() - redis_cpu0
        # How late the load processes' loops ran (their own backlog: clients starved?), and
        # how long the survivor took to answer /healthz on a connection of its own (its loop's
        # backlog, as a new connection's request sees it).
        lags = await pool.all({"cmd": "lag"})
        out["storm_load_loop_lag_s"] = {
            "max": round(max(g["max_s"] for g in lags), 3),
            "mean": round(sum(g["sum_s"] for g in lags) / max(1, sum(g["n"] for g in lags)), 4),
        }
        probe_stop.set()
        answers = sorted(await probe)
        out["storm_survivor_answer_s"] = {
            "p50": round(pct(answers, 50), 3) if answers else None,
            "max": round(answers[-1], 3) if answers else None,
        }
        # The survivor's admission gates over the storm: waits in its queues, refusals.
        gates1 = await gate_metrics(other)
        out["storm_gates"] = {
            k.removeprefix("homeroom_").removesuffix("_total"): round(v - gates0.get(k, 0.0), 1)
            for k, v in gates1.items()
            if k.endswith("_total") and not k.endswith("_created")
        }
        # Where the clients' time went, from the loss until back (client-seconds summed over
        # the clients, then per client): asleep (back-off, Retry-After), failed attempts, and
        # the attempt that worked: HTTP upgrade (with the server's queue), Engine.IO open,
        # Socket.IO connect, catch-up.
        spent: Counter[str] = Counter()
        for s in stats:
            spent.update(s["spent"])
        out["storm_client_s_each"] = {k: round(v / max(1, synced), 2) for k, v in spent.items()}
        out["reconnect_cpu_ms"] = out["storm_server_cpu_s"] / max(1, synced) * 1000
        out["load_average_storm"] = round(os.getloadavg()[0], 2)
        last = max(s["last_synced_t"] for s in stats)
        out["reconnect_2000_s"] = last - killed if synced >= len(storm) else None
        if out["reconnect_2000_s"] is None:
            out["why_reconnect_null"] = (
                f"only {synced} of {len(storm)} synced in {now - killed:.0f} s "
                f"({out['storm_failed_attempts']} connection attempts timed out or failed; "
                f"load average {out['load_average_storm']})"
            )
        say(
            f"  {synced} of {len(storm)} reconnected to worker 1 and synced"
            + (f" in {out['reconnect_2000_s']:.2f} s" if out["reconnect_2000_s"] else "")
            + f" ({out['storm_synced_within_10_s']} within 10 s); "
            f"{out['reconnect_cpu_ms']:.1f} ms of server CPU each"
        )
        await asyncio.sleep(2.0)  # the lesson's chat goes on a little after the storm
    finally:
        if samplers is not None:
            await samplers.stop()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    for s in senders:
        await s.finish(timeout=max(5.0, min(30.0, args.deadline - 80 - time.monotonic())))
    out["sent_acked"] = sum(len(s.acked) for s in senders)
    out["sent_unacked"] = sum(len(s.unacked) for s in senders)
    out["sent_refused"] = sum(len(s.refused) for s in senders)
    out["first_refusal"] = next((r for s in senders for r in s.refused), None)
    out["resent_after_kill"] = sum(s.resent for s in senders)
    acked = [c for s in senders for c in s.acked]

    # Every client applies every acknowledged message exactly once: wait for that (a sentinel),
    # then count what is still missing after a generous time.
    deadline = min(time.monotonic() + args.settle_timeout, args.deadline - 20)
    while True:
        checks = await pool.all({"cmd": "follow_check", "acked": acked}, timeout=120)
        missing = sum(c["missing"] for c in checks)
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    stored = await replay(dep, other, people.teacher, stream)
    not_stored = {c for c in acked if c not in stored}
    not_got = set().union(*(c["missing_ids"] for c in checks))
    # Lost: acknowledged, and then not in the store or never shown by a client that is back.
    out["lost_acked"] = len(not_stored | not_got)
    out["lost_acked_ids"] = sorted(not_stored | not_got)[:10]
    out["lost_acked_store"] = len(not_stored)
    out["clients_missing_some"] = sum(c["followers_missing"] for c in checks)
    out["clients_not_back"] = sum(c["not_back"] for c in checks)
    out["duplicated"] = sum(c["duplicates"] for c in checks)
    out["duplicated_store"] = sum(n - 1 for n in stored.values() if n > 1)
    say(
        f"  {out['sent_acked']} acked ({out['resent_after_kill']} sent again after the kill): "
        f"lost {out['lost_acked']} (store {out['lost_acked_store']}), duplicated "
        f"{out['duplicated']} (store {out['duplicated_store']}); "
        f"{out['clients_not_back']} clients not connected again"
    )
    for s in senders:
        await s.close()


# --- live sessions across workers ---------------------------------------------------------------

SFU = Path(__file__).resolve().parent / "sfu"
SEQUENCES = ROOT / "var" / "bench-sfu"
EXTRA_CLASS = 4  # a fourth class for the fourth lesson (chat_fanout's school has three)


async def add_class(database_url: str, teacher: int) -> None:
    from realtime.actions.roster import add_member, create_class
    from realtime.domain.roles import Role
    from realtime.store import open_store

    store = open_store(database_url)
    try:
        async with store.transaction() as conn:
            assert await create_class(conn, 1, "Bench fourth lesson") == EXTRA_CLASS
            await add_member(conn, EXTRA_CLASS, teacher, Role.HEAD_TEACHER)
    finally:
        await store.close()


def session_nodes(database: str) -> dict[int, str]:
    """Running session id -> the node it runs on (the store's word)."""
    sql = "SELECT id, node FROM live_sessions WHERE ended_at IS NULL"
    args = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-Atc", sql]
    rows = subprocess.run(args, check=True, capture_output=True, text=True).stdout.split()
    return {int(r.split("|")[0]): r.split("|")[1] for r in rows}


async def encoded_sequence(started: Started, tmp: Path) -> Path:
    """The publisher's 360p VP8 loop (bench/sfu/video.py, cached in var/bench-sfu)."""
    log = tmp / "encode.log"
    args = [sys.executable, str(SFU / "video.py"), str(SEQUENCES), "360p"]
    proc = started.popen(args, log, cwd=str(ROOT))
    if await asyncio.to_thread(proc.wait) != 0:
        raise RuntimeError(f"encoding the VP8 sequence failed:\n{tail(log)}")
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            return Path(json.loads(line)["path"])
    raise RuntimeError(f"no sequence from bench/sfu/video.py:\n{tail(log)}")


async def start_publisher(
    spawned: Any,
    peers: list[Any],
    log: Path,
    dep: Deployment,
    people: People,
    seq: Path,
    url: str,
    follow_moves: bool = False,
) -> int:
    """A publisher process (bench/sfu/peer.py) that starts the lesson of the room of 500
    through ``url`` and publishes the 360p loop in it (appended to ``peers``): the lesson's id."""
    from bench import sfu_fanout

    cfg = {
        "server": "homeroom",
        "url": url,
        "sequence": str(seq),
        "token": dep.token(people.teacher),
        "class_id": people.class_large,
        "follow_moves": follow_moves,
    }
    pub = await sfu_fanout.Peer.start(spawned, "publisher", cfg, log, "publisher")
    peers.append(pub)
    ready = await pub.event(60)
    if not ready.get("ok"):
        raise RuntimeError(f"publisher: {ready.get('error')}\n{tail(log)}")
    return int(ready["session_id"])


async def live_step(
    started: Started, tmp: Path, dep: Deployment, people: People, args: argparse.Namespace
) -> dict[str, Any]:
    """Four lessons started through worker 0 (placement), then viewers joining the one whose
    media runs on worker 1, their Socket.IO connection on worker 0 (cross-node) or on worker 1
    (same node), in turn: join to first keyframe."""
    from bench import sfu_fanout

    out: dict[str, Any] = {}
    spawned = sfu_fanout.Started()  # the client processes, by pid (bench/sfu_fanout.py's)
    seq = await encoded_sequence(started, tmp)
    front = dep.urls[0]
    teacher = await open_sender(dep, people.teacher, False)
    peers: list[sfu_fanout.Peer] = []
    try:
        # The publisher starts the lesson of the room of 500 (its media node is placement's),
        # then three more lessons are started through the same worker.
        lesson = await start_publisher(
            spawned, peers, tmp / "publisher.log", dep, people, seq, front
        )
        for cid in (people.class_small, people.class_big, EXTRA_CLASS):
            await send_ok(
                teacher, "session.start", {"class_id": cid, "kind": "lesson", "title": "Bench"}
            )
        nodes = session_nodes(dep.database)
        per_node = Counter(nodes.values())
        out["placement"] = sorted(per_node.values())
        out["placement_2_and_2"] = out["placement"] == [2, 2]
        say(f"  4 lessons started through worker 0: {dict(per_node)} (by node)")
        media = nodes[lesson]
        names = {f"{dep.name}-w{i}": url for i, url in enumerate(dep.urls)}
        other = next(url for name, url in names.items() if name != media)
        here = names[media]
        say(f"  the publisher's lesson runs on {media}; viewers join it through both workers")
        subs = await sfu_fanout.Peer.start(
            spawned,
            "subscribers",
            {"server": "homeroom", "url": front, "session_id": lesson},
            tmp / "subscribers.log",
            "subscribers",
        )
        peers.append(subs)
        cross: list[float] = []
        same: list[float] = []
        viewers = iter(people.large)
        for i in range(args.joins):
            for url, into in (
                ((other, cross), (here, same)) if i % 2 == 0 else ((here, same), (other, cross))
            ):
                uid = next(viewers)
                r = await subs.ask(
                    "join",
                    timeout=60,
                    subs=[{"id": f"v{uid}", "token": dep.token(uid)}],
                    target={"url": url},
                )
                res = r["results"][0]
                if res.get("error") or res["first_key_s"] is None:
                    raise RuntimeError(f"viewer {uid} through {url}: {res.get('error')}")
                into.append(res["first_key_s"])
                await asyncio.sleep(1.0)  # isolated joins, as in bench/sfu_fanout.py
        out["join_cross_node_s"] = median(cross)
        out["join_same_node_s"] = median(same)
        out["join_cross_node_all_s"] = [round(x, 3) for x in cross]
        out["join_same_node_all_s"] = [round(x, 3) for x in same]
        say(
            f"  join to first keyframe, median of {len(cross)}: through the other worker "
            f"{out['join_cross_node_s']:.3f} s, through the media node "
            f"{out['join_same_node_s']:.3f} s"
        )
        await subs.ask("leave", timeout=60)
    finally:
        for peer in reversed(peers):
            await peer.stop(spawned)
        spawned.stop_all()
        with contextlib.suppress(Exception):
            for sid in session_nodes(dep.database):
                await teacher.call("session.end", {"session_id": sid}, timeout=30)
        await close_sender(teacher)
    return out


# --- kill -9 of a lesson's media node: every viewer back -----------------------------------------


async def wait_for_workers(dep: Deployment, timeout: float) -> bool:
    """Until every worker answers and counts them all (a killed one is restarted)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            bodies = [await health(http, url) for url in dep.urls]
            if all(b is not None and b.get("nodes") == dep.workers for b in bodies):
                return True
            await asyncio.sleep(0.5)
    return False


async def recover_step(
    started: Started,
    tmp: Path,
    dep: Deployment,
    people: People,
    args: argparse.Namespace,
    out: dict[str, Any],
) -> None:
    """A lesson whose media runs on one worker, its publisher and viewers connected to the
    other; kill -9 of the media node; from the kill until every viewer has a keyframe again
    (on the peer connection it opened when it joined the moved lesson). Figures go into
    ``out`` as they come."""
    from bench import sfu_fanout

    spawned = sfu_fanout.Started()
    seq = await encoded_sequence(started, tmp)
    names = {f"{dep.name}-w{i}": url for i, url in enumerate(dep.urls)}
    peers: list[sfu_fanout.Peer] = []
    teachers: list[SioConnection] = []
    front = ""
    try:
        # Placement (realtime/cluster/placement.py): a first lesson started through a worker
        # stays there (a tie goes to the node asked); the publisher's, started through the same
        # worker, goes to the other. A worker whose CPU is full takes nothing: then the other
        # worker is tried as the front.
        for attempt, (front, placeholder) in enumerate(
            ((dep.urls[1], people.class_small), (dep.urls[0], people.class_big))
        ):
            target = SimpleNamespace(url=front, token=dep.token)
            teacher = await open_sender(target, people.teacher, False)
            teachers.append(teacher)
            await send_ok(
                teacher,
                "session.start",
                {"class_id": placeholder, "kind": "lesson", "title": "Bench placeholder"},
            )
            log = tmp / "recover-publisher.log"
            lesson = await start_publisher(spawned, peers, log, dep, people, seq, front, True)
            pub = peers[-1]
            media = session_nodes(dep.database)[lesson]
            if names.get(media) not in (None, front):
                break
            if attempt == 1:
                raise RuntimeError(f"the lesson was placed on {media}, the publisher's own worker")
            say(f"  the lesson was placed on {media}, the publisher's own worker: again")
            await peers.pop().stop(spawned)
            await send_ok(teacher, "session.end", {"session_id": lesson})
        out["recover_placement_attempts"] = attempt + 1
        doomed = names[media]
        subs = await sfu_fanout.Peer.start(
            spawned,
            "subscribers",
            {"server": "homeroom", "url": front, "session_id": lesson, "follow_moves": True},
            tmp / "recover-subscribers.log",
            "subscribers",
        )
        peers.append(subs)
        viewers = people.large[-args.viewers :]
        r = await subs.ask(
            "join",
            timeout=120,
            subs=[{"id": f"v{uid}", "token": dep.token(uid)} for uid in viewers],
        )
        failed = [x for x in r["results"] if x.get("error") or x["first_key_s"] is None]
        if failed:
            raise RuntimeError(f"{len(failed)} viewers got no keyframe: {failed[0].get('error')}")
        say(f"  the lesson runs on {media}; {len(viewers)} viewers have frames through the other")
        await asyncio.sleep(2.0)  # frames flowing
        await subs.ask("arm")
        pid = worker_pid(dep, doomed)
        if pid is None:
            raise RuntimeError(f"the process of {media} was not found")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        say(f"  kill -9 {media} (pid {pid})")
        deadline = min(killed + RECOVER_TIMEOUT_S, args.deadline - 150)
        while True:
            rec = (await subs.ask("recovery"))["subs"]
            back = sorted(v["t_back"] - killed for v in rec.values() if v["t_back"] is not None)
            if len(back) == len(rec) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        out["recover_viewers"] = len(rec)
        out["recover_viewers_back"] = len(back)
        out["recover_load_average"] = round(os.getloadavg()[0], 2)
        out["recover_rejoins"] = sum(v["rejoins"] for v in rec.values())
        out["recover_publisher"] = await pub.ask("stats")
        out["recover_publisher"].pop("id", None)
        out["recover_publisher"].pop("ok", None)
        if back:
            out["recover_first_s"] = back[0]
            out["recover_median_s"] = median(back)
        if len(back) == len(rec):
            out["recover_s"] = back[-1]
            say(
                f"  every viewer has frames again {out['recover_s']:.2f} s after the kill "
                f"(first {back[0]:.2f} s, median {out['recover_median_s']:.2f} s)"
            )
        else:
            out["why_recover_null"] = (
                f"only {len(back)} of {len(rec)} viewers had frames again "
                f"{time.monotonic() - killed:.0f} s after the kill (load average "
                f"{out['recover_load_average']})"
            )
            say(f"  {out['why_recover_null']}")
    finally:
        for peer in reversed(peers):
            await peer.stop(spawned)
        spawned.stop_all()
        for teacher in teachers:
            with contextlib.suppress(Exception):
                await close_sender(teacher)
        if front:  # the lessons left, ended through the worker that was not killed
            with contextlib.suppress(Exception):
                target = SimpleNamespace(url=front, token=dep.token)
                teacher = await open_sender(target, people.teacher, False)
                try:
                    for sid in session_nodes(dep.database):
                        await teacher.call("session.end", {"session_id": sid}, timeout=30)
                finally:
                    await close_sender(teacher)
        # The next step needs both workers: the supervisor restarts the killed one.
        if not await wait_for_workers(dep, 90):
            raise RuntimeError("the killed worker did not come back within 90 s")


# --- the run ------------------------------------------------------------------------------------


def git_head() -> str:
    head = ["git", "rev-parse", "--short", "HEAD"]
    return subprocess.run(head, cwd=ROOT, capture_output=True, text=True).stdout.strip()


def target_met(key: str, value: Any) -> bool | None:
    if value is None:
        return None
    op, bound = TARGETS[key]
    return {"<=": value <= bound, "<": value < bound, "==": value == bound}[op]


async def per_request(dep: Any, people: People, sends: int, connects: int) -> tuple[float, float]:
    """Server CPU (ms) of one ``chat.send`` (nobody else in the room: storing, not fan-out) and
    of one connect + ``sync`` + close of a guardian."""
    sender = await open_sender(dep, people.sender_small, False)
    try:
        stream = f"class:{people.class_small}:students"
        for _ in range(20):  # warm: statement caches, the pool's connections
            await send_ok(sender, "chat.send", chat(stream))
        cpu0 = dep.cpu()
        for _ in range(sends):
            await send_ok(sender, "chat.send", chat(stream))
        send_ms = (dep.cpu() - cpu0) / sends * 1000
    finally:
        await close_sender(sender)
    cpu0 = dep.cpu()
    for _ in range(connects):
        await close_sender(await open_sender(dep, people.guardians[0], False))
    return send_ms, (dep.cpu() - cpu0) / connects * 1000


async def store_step(
    started: Started, tmp: Path, people: People, single: Deployment, args: argparse.Namespace
) -> dict[str, Any]:
    """The same single node on SQLite and on PostgreSQL, in turn: what PostgreSQL costs more
    per message and per connection (docs/performance.md has SQLite's figures on a quiet
    machine; this ratio carries them over)."""
    target, _ = start_homeroom(started, tmp, people, "sqlite")
    lite = SimpleNamespace(url=target.url, token=target.token, cpu=lambda: tree_cpu(target.pid))
    send: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    conn: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    try:
        for i in range(args.reps):
            pair = [("postgresql", single), ("sqlite", lite)]
            for name, dep in pair if i % 2 == 0 else pair[::-1]:
                s_ms, c_ms = await per_request(dep, people, args.sends, args.sends // 4)
                send[name].append(s_ms)
                conn[name].append(c_ms)
    finally:
        started.stop(next(p for p in started.procs if p.pid == target.pid))
    out = {
        "sqlite_send_cpu_ms": median(send["sqlite"]),
        "postgresql_send_cpu_ms": median(send["postgresql"]),
        "sqlite_connect_sync_cpu_ms": median(conn["sqlite"]),
        "postgresql_connect_sync_cpu_ms": median(conn["postgresql"]),
    }
    out["postgresql_over_sqlite_send"] = out["postgresql_send_cpu_ms"] / out["sqlite_send_cpu_ms"]
    out["postgresql_over_sqlite_connect"] = (
        out["postgresql_connect_sync_cpu_ms"] / out["sqlite_connect_sync_cpu_ms"]
    )
    say(
        f"  one node, CPU per chat.send: SQLite {out['sqlite_send_cpu_ms']:.2f} ms, PostgreSQL "
        f"{out['postgresql_send_cpu_ms']:.2f} ms; per connect + sync: "
        f"{out['sqlite_connect_sync_cpu_ms']:.2f} / {out['postgresql_connect_sync_cpu_ms']:.2f} ms"
    )
    return out


async def chat_part(
    started: Started,
    tmp: Path,
    people: People,
    args: argparse.Namespace,
    cluster: Deployment,
    pool_c: WorkerPool,
    databases: list[str],
) -> dict[str, Any]:
    """The room of 500 on one worker against the same room spread over two."""
    single = await start_deployment(started, tmp, people, "single", 1, databases)
    pool_s = await WorkerPool.start(2, tmp / "loadworkers.log")
    out: dict[str, Any] = {}
    try:
        room = people.large[: args.room]
        half = len(room) // 2
        await connect_split(
            pool_s,
            [(single.url, [single.token(u) for u in part]) for part in (room[:half], room[half:])],
        )
        await connect_split(
            pool_c,
            [
                (cluster.urls[0], [cluster.token(u) for u in room[:half]]),
                (cluster.urls[1], [cluster.token(u) for u in room[half:]]),
            ],
        )
        say(
            f"  {len(room)} receivers on each; cluster: {half} on worker 0, "
            f"{len(room) - half} on worker 1"
        )
        sides = [
            Side(single, pool_s, await open_sender(single, people.sender_large, False)),
            Side(cluster, pool_c, await open_sender(cluster, people.sender_large, False)),
        ]
        say("chat: a room of 500, the sender on worker 0 ...")
        await chat_step(sides, args, f"class:{people.class_large}:students")
        s, c = sides
        out["single_cpu_s_per_10k"] = median(s.cpu_per_10k)
        out["cluster_cpu_s_per_10k"] = median(c.cpu_per_10k)
        out["cluster_cpu_ratio"] = out["cluster_cpu_s_per_10k"] / out["single_cpu_s_per_10k"]
        # A message's whole cost on the server: stored, then delivered to the room.
        out["single_cpu_ms_per_message"] = out["single_cpu_s_per_10k"] * len(room) / 10
        out["cluster_cpu_ms_per_message"] = out["cluster_cpu_s_per_10k"] * len(room) / 10
        out["single_redis_cpu_s_per_10k"] = median(s.redis_per_10k)
        out["cluster_redis_cpu_s_per_10k"] = median(c.redis_per_10k)
        out["single_deliveries_per_s"] = median(s.deliveries_per_s)
        out["cluster_deliveries_per_s"] = median(c.deliveries_per_s)
        out["single_p50_ms"] = median(s.p50_ms)
        out["single_p99_ms"] = median(s.p99_ms)
        out["cluster_p50_ms"] = median(c.p50_ms)
        out["cross_node_p99_ms"] = median(c.p99_other_ms)
        out["same_node_p99_ms"] = median(c.p99_same_ms)
        out["cross_node_p99_ratio"] = out["cross_node_p99_ms"] / out["single_p99_ms"]
        out["chat_missing"] = s.missing + c.missing
        out["latency_rate_per_s"] = args.rate
        for side in sides:
            await close_sender(side.sender)
            await side.pool.close()
        if "store" in args.steps:
            say("one node: SQLite against PostgreSQL ...")
            out.update(await store_step(started, tmp, people, single, args))
    finally:
        await pool_s.stop()
        started.stop(next(p for p in started.procs if p.pid == single.pid))
        out["load_average_after_chat"] = round(os.getloadavg()[0], 2)

    return out


async def run(args: argparse.Namespace, started: Started, tmp: Path, out: dict[str, Any]) -> None:
    """Every step; figures go into ``out`` as they come."""
    people = People.make(big=False)
    databases: list[str] = []
    pools: list[WorkerPool] = []
    try:
        say("starting two workers (cluster) on PostgreSQL + Redis ...")
        cluster = await start_deployment(started, tmp, people, "cluster", 2, databases)
        pool_c = await WorkerPool.start(2, tmp / "loadworkers.log")
        pools.append(pool_c)
        if "chat" in args.steps:
            out.update(await chat_part(started, tmp, people, args, cluster, pool_c, databases))
        if "live" in args.steps:
            say("live sessions across workers ...")
            try:
                out.update(await live_step(started, tmp, cluster, people, args))
            except Exception as exc:  # reported, and the rest of the run goes on
                out["live_error"] = f"{type(exc).__name__}: {exc}"[:500]
                say(f"  live step failed: {out['live_error']}")
        if "recover" in args.steps:
            say(f"kill -9 of a lesson's media node, {args.viewers} viewers on the other ...")
            try:
                await recover_step(started, tmp, cluster, people, args, out)
            except Exception as exc:  # reported, and the rest of the run goes on
                out["recover_error"] = f"{type(exc).__name__}: {exc}"[:500]
                say(f"  recover step failed: {out['recover_error']}")
        if "kill" in args.steps:
            say(f"kill -9 of a worker with {args.storm} guardians on it ...")
            try:
                await kill_step(cluster, pool_c, people, args, out)
            except Exception as exc:  # reported, with what the other steps measured
                out["kill_error"] = f"{type(exc).__name__}: {exc}"[:500]
                say(f"  kill step failed: {out['kill_error']}")
    finally:
        for pool in pools:
            with contextlib.suppress(Exception):
                await pool.stop()
        started.stop_all()
        for name in databases:
            drop_database(name)


def finish(out: dict[str, Any], args: argparse.Namespace, begun: float) -> dict[str, Any]:
    """What is missing and why, the targets, the load: the JSON line."""
    if out.pop("timed_out", False):
        out["missing_note"] = f"the run was cut at its budget ({BUDGET_S} s)"
    out["missing"] = []
    if out.get("recover_s") is None:
        out["recover_s"] = None
        why = (
            out.get("recover_error")
            or out.pop("why_recover_null", None)
            or out.get("missing_note")
            or "the recover step did not run (--steps)"
        )
        out["missing"].append(f"recover_s: {why}")
    for key in ("join_cross_node_s", "placement_2_and_2"):
        if out.get(key) is None:
            out[key] = None
            why = out.get("live_error") or "the live step did not run (--steps)"
            out["missing"].append(f"{key}: {why}")
    for key in ("reconnect_2000_s", "lost_acked"):
        if "kill_error" in out or key not in out:
            why = out.get("kill_error") or out.get("missing_note") or "the kill step did not run"
            out[key] = None
            out["missing"].append(f"{key}: {why}")
    if "why_reconnect_null" in out:
        out["missing"].append(f"reconnect_2000_s: {out.pop('why_reconnect_null')}")
    out["storm_clients"] = args.storm
    out["handshake_concurrency"] = args.handshakes or None  # None: the default (32)
    out["balancer"] = args.balancer
    out["settings"] = SETTINGS or None
    out["targets"] = {k: target_met(k, out.get(k)) for k in TARGETS}
    out["load_average_at_end"] = round(os.getloadavg()[0], 2)
    out["elapsed_s"] = time.monotonic() - begun
    return {k: rounded(v) for k, v in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: small and short")
    parser.add_argument("--reps", type=int, default=3, help="chat repetitions (median)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a throughput run")
    parser.add_argument("--rate", type=float, default=3.0, help="messages/s for latency")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--room", type=int, default=LARGE, help="receivers in the chat room")
    parser.add_argument("--storm", type=int, default=2000, help="clients on the killed worker")
    parser.add_argument("--storm-rate", type=float, default=1.0, help="chat/s from each worker")
    parser.add_argument("--observers", type=int, default=20, help="clients on the other worker")
    parser.add_argument("--storm-timeout", type=float, default=120.0)
    parser.add_argument("--settle-timeout", type=float, default=20.0)
    parser.add_argument(
        "--steps",
        default="chat,store,live,recover,kill",
        help="which steps (chat,store,live,recover,kill)",
    )
    parser.add_argument("--viewers", type=int, default=20, help="viewers of the killed lesson")
    parser.add_argument("--joins", type=int, default=6, help="viewers joining per path")
    parser.add_argument("--sends", type=int, default=200, help="chat.send per store repetition")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument(
        "--balancer",
        choices=("nginx", "turns"),
        default="nginx",
        help="how a storm's clients pick a node to reconnect to: as deploy/nginx's load "
        "balancer would (least_conn, a refusing node left out 10 s), or each address in turn",
    )
    parser.add_argument(
        "--handshakes", type=int, default=0, help="handshake_concurrency of the workers"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the workers (TOML value), e.g. --set listen_backlog=128",
    )
    parser.add_argument(
        "--sample",
        metavar="DIR",
        help="py-spy the server processes through the storm: collapsed stacks in DIR/<pid>.txt",
    )
    args = parser.parse_args()
    if args.sample:
        SAMPLE.append(str(Path(args.sample).resolve()))
    if args.handshakes:
        HANDSHAKES.append(args.handshakes)
    SETTINGS.extend(f"{k.strip()} = {v.strip()}" for k, v in (a.split("=", 1) for a in args.set))
    if args.quick:
        args.reps, args.seconds, args.latency_seconds = 1, 2.0, 3.0
        args.room, args.storm, args.sends, args.joins = 100, 200, 60, 2

    started = Started()
    tmp = Path(tempfile.mkdtemp(prefix="homeroom-cluster-bench-"))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def guarded() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        args.deadline = time.monotonic() + BUDGET_S - 30
        async with asyncio.timeout(BUDGET_S):
            await run(args, started, tmp, out)

    begun = time.monotonic()
    out: dict[str, Any] = {
        "bench": "cluster",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "commit": git_head(),
    }
    try:
        asyncio.run(guarded())
    except TimeoutError:
        out["timed_out"] = True
        say(f"the run was cut at its budget ({BUDGET_S} s); the figures it had follow")
    except BaseException as exc:
        say(f"benchmark failed: {type(exc).__name__}: {exc}")
        for log in sorted(tmp.glob("*.log")):
            say(f"--- {log.name} (last lines)\n{tail(log)}")
        raise
    finally:
        started.stop_all()
        if args.keep:
            say(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result = finish(out, args, begun)
    say(
        f"cluster/single: CPU per delivery {result.get('cluster_cpu_ratio')}x, cross-node p99 "
        f"{result.get('cross_node_p99_ratio')}x; {args.storm} reconnected in "
        f"{result.get('reconnect_2000_s')} s, lost {result.get('lost_acked')}, duplicated "
        f"{result.get('duplicated')}"
    )
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
