"""Live video forwarding: Homeroom's SFU against Janus VideoRoom and aiortc's MediaRelay.

Run from the repository root once ``.venv`` is set up (``make setup``)::

    .venv/bin/python bench/sfu_fanout.py            # about 8-9 minutes on 2 cores

What it does (docs/performance.md, "Live video forwarding", has the figures):

- One publisher sends VP8 at 640x360 30 fps about 1 Mbit/s, then (second pass) 1280x720 30 fps
  about 2.5 Mbit/s: a synthetic sequence encoded once with libvpx (bench/sfu/video.py) and
  replayed through aiortc's pre-encoded sender path; it answers keyframe requests like a
  browser does.
- N subscribers (N = 1, 4, 8, 16, 32) count reassembled frames without decoding, many per
  process (bench/sfu/peer.py). They join one after another (each waits for its first
  keyframe: "join to first frame"), then a warm-up, then a fixed window in which the server's
  CPU is read from the kernel (/proc/<pid>/stat: user + system of that process and all its
  threads) and every subscriber's frame rate is counted.
- Servers, each in its own process, all on 127.0.0.1:
  * homeroom — the real app (``python -m realtime.cli serve``, uvloop when installed), a fresh
    SQLite database with one class (a head teacher and 100 students), signalling over Socket.IO
    exactly as clients do (session.start, session.join, rtc.publish, rtc.subscribe, rtc.answer);
  * janus — Janus 1.1 VideoRoom from Debian's package (installed if missing), HTTP API;
  * mediarelay — aiortc's stock MediaRelay (decode once, encode per viewer):
    bench/sfu/relay_server.py.
- The marginal CPU per subscriber is the slope of a least-squares fit of server CPU-seconds per
  second over the N at which every subscriber kept at least 28.5 fps. A server is not taken past
  the first N at which a subscriber fell below that.
- Join storm: after the ramp, all subscribers leave and 50 new ones join at the same instant;
  ``join_storm_50_s`` is the time until the last of them has its first keyframe (360p).
- py-spy samples the Homeroom server at N=16 (360p) after the measuring window.

Publisher, subscribers and py-spy are separate processes, so their CPU is never counted as
server CPU (their CPU is reported beside it, with the machine's busy cores, to show whether the
clients kept up on this machine). Everything it starts is stopped by pid at the end. The last
line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SFU = BENCH / "sfu"
sys.path.insert(0, str(SFU))
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import janus_room  # noqa: E402
from procs import CLK_TCK, cpu_seconds, free_port, say, tail  # noqa: E402

# Time budget (the whole run must stay under 10 minutes, even on a busy machine): a server
# run starts only before RUN_CUTOFF_S, a join, measuring step or storm only before
# STEP_CUTOFF_S, and whatever still runs at HARD_LIMIT_S is cut (its processes stopped, the
# figures it had kept). Stopping everything and printing take a few seconds.
RUN_CUTOFF_S = 470
STEP_CUTOFF_S = 530
HARD_LIMIT_S = 565
NS = [1, 4, 8, 16, 32]
# MediaRelay needs about 0.17 core per viewer: it saturates 2 cores early, so it gets N=2 too
# (two points for a slope even when N=4 is already too many).
NS_MEDIARELAY = [1, 2, 4, 8, 16]
FPS_OK = 28.5
STORM = 50
STUDENTS = 100
WORKERS = 2  # subscriber processes (one per core)
PROFILE_N = 16
# Join-to-first-frame is reported for joins with no other join in the ISOLATION_S before
# them (a viewer joining a running lesson) and for back-to-back joins (each right after the
# previous viewer's first frame, as in a rush at the start of a lesson). The first
# ISOLATED_JOINS of the 360p ramp are spaced to give the first kind enough samples.
ISOLATION_S = 1.0
ISOLATED_JOINS = 8
PROFILE_S = 8
# py-spy --native attributes time inside C extensions (libsrtp, uvloop, OpenSSL) to their C
# functions; it pauses the server per sample, which is why it runs after the window.
NATIVE_PROFILE = True
PROFILE_RATE = 250
CACHE = ROOT / "var" / "bench-sfu"

# profile -> (warm-up s, window s)
WINDOWS = {"360p": (2.0, 6.0), "720p": (2.0, 5.0)}


# --- processes and counters ---------------------------------------------------------------------


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class Started:
    """Every process this run started; each is stopped by its own pid, whatever happens."""

    def __init__(self) -> None:
        self.pids: dict[int, str] = {}
        self.popens: list[subprocess.Popen[bytes]] = []

    def popen(self, args: list[str], log: Path, name: str, **kw: Any) -> subprocess.Popen[bytes]:
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                args, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, **kw
            )
        self.pids[proc.pid] = name
        self.popens.append(proc)
        return proc

    def add(self, pid: int, name: str) -> None:
        self.pids[pid] = name

    def stop(self, pid: int, grace: float = 5.0) -> None:
        if pid not in self.pids:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.popens:
            if proc.pid == pid:
                with contextlib.suppress(Exception):
                    proc.wait(5)
        self.pids.pop(pid, None)

    def stop_all(self) -> None:
        for pid in reversed(list(self.pids)):
            self.stop(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{tail(log)}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url} within {timeout} s:\n{tail(log)}")


class Peer:
    """A client process (bench/sfu/peer.py) driven over stdin/stdout, one JSON object a line."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.pid = proc.pid
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(
        cls, started: Started, role: str, cfg: dict[str, Any], log: Path, name: str
    ) -> Peer:
        fh = open(log, "ab")  # noqa: SIM115, ASYNC230 (the child keeps it)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SFU / "peer.py"),
            role,
            json.dumps(cfg),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=fh,
            start_new_session=True,
            limit=1 << 24,
            cwd=str(ROOT),
        )
        fh.close()
        started.add(proc.pid, name)
        return cls(proc, name)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                for waiting in self._waiting.values():
                    if not waiting.done():
                        waiting.set_exception(RuntimeError(f"{self.name} exited"))
                await self._events.put({"event": "exit"})
                return
            msg = json.loads(line)
            fut: asyncio.Future[dict[str, Any]] | None = (
                self._waiting.pop(msg["id"], None) if "id" in msg else None
            )
            if fut is not None and not fut.done():
                fut.set_result(msg)
            elif "event" in msg:
                await self._events.put(msg)

    async def event(self, timeout: float) -> dict[str, Any]:
        return await asyncio.wait_for(self._events.get(), timeout)

    async def ask(self, cmd: str, timeout: float = 30.0, **kw: Any) -> dict[str, Any]:
        self._next += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = fut
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"id": self._next, "cmd": cmd, **kw}) + "\n").encode())
        await self.proc.stdin.drain()
        msg = await asyncio.wait_for(fut, timeout)
        if not msg.get("ok"):
            raise RuntimeError(f"{self.name} {cmd}: {msg.get('error')}")
        return msg

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    async def stop(self, started: Started) -> None:
        with contextlib.suppress(Exception):
            await self.ask("stop", timeout=20)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5)
        started.stop(self.pid)
        self._reader.cancel()


# --- the servers --------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    pid: int
    url: str
    publisher_cfg: dict[str, Any]
    tokens: dict[str, str] = field(default_factory=dict)  # subscriber id -> token

    def cpu(self) -> float:
        return cpu_seconds(self.pid)


async def seed_homeroom(database_url: str) -> dict[str, Any]:
    """One school, one class: a head teacher and STUDENTS students (no passwords: tokens)."""
    from realtime.actions.roster import create_class
    from realtime.domain.roles import Role
    from realtime.store import open_store
    from realtime.store.schema import memberships, schools, users

    store = open_store(database_url)
    now = time.time()
    try:
        await store.migrate()
        async with store.transaction() as conn:
            res = await conn.execute(schools.insert().values(name="SFU bench school"))
            assert res.inserted_primary_key is not None
            school = res.inserted_primary_key[0]
            class_id = await create_class(conn, school, "SFU bench class")
            rows = [
                {
                    "id": uid,
                    "school_id": school,
                    "username": f"u{uid}",
                    "display_name": f"Bench {uid}",
                    "password_hash": None,
                    "phone": None,
                    "school_admin": False,
                    "created_at": now,
                }
                for uid in range(1, STUDENTS + 2)
            ]
            await conn.execute(users.insert(), rows)
            ms = [{"class_id": class_id, "user_id": 1, "role": Role.HEAD_TEACHER.value}]
            ms += [
                {"class_id": class_id, "user_id": uid, "role": Role.STUDENT.value}
                for uid in range(2, STUDENTS + 2)
            ]
            await conn.execute(memberships.insert(), ms)
    finally:
        await store.close()
    return {
        "school_id": school,
        "class_id": class_id,
        "teacher": 1,
        "students": list(range(2, STUDENTS + 2)),
    }


async def start_homeroom(
    started: Started,
    tmp: Path,
    seq: Path,
    udp_port: int = 0,
    launcher: list[str] | None = None,
) -> Server:
    """The server process; ``launcher``: a script run with the config's path instead of
    ``realtime.cli serve`` (bench/sfu/homeroom_page_server.py adds the test page)."""
    from realtime.auth import TokenIssuer

    port = free_port()
    secret = "bench-" + secrets.token_hex(24)
    db = tmp / "homeroom.db"
    seeded = await seed_homeroom(f"sqlite:///{db}")
    config = tmp / "homeroom.toml"
    config.write_text(
        "\n".join(
            [
                'host = "127.0.0.1"',
                f"port = {port}",
                f'database_url = "sqlite:///{db}"',
                f'secret = "{secret}"',
                'ice_host_addresses = "127.0.0.1"',
                'log_level = "WARNING"',
                "session_grace_s = 1",
                f"media_udp_port = {udp_port}",
            ]
        )
        + "\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEROOM_")}
    log = tmp / "homeroom.log"
    command = (
        [sys.executable, *launcher, str(config)]
        if launcher
        else [sys.executable, "-m", "realtime.cli", "--config", str(config), "serve"]
    )
    proc = started.popen(
        command,
        log,
        "homeroom",
        cwd=str(ROOT),
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    await asyncio.to_thread(wait_http, url + "/healthz", proc, log, 60)
    issuer = TokenIssuer({"k1": secret}, "k1", 4 * 3600)
    school = seeded["school_id"]
    tokens = {f"s{i}": issuer.issue(uid, school) for i, uid in enumerate(seeded["students"])}
    return Server(
        "homeroom",
        proc.pid,
        url,
        {
            "server": "homeroom",
            "url": url,
            "sequence": str(seq),
            "token": issuer.issue(seeded["teacher"], school),
            "class_id": seeded["class_id"],
        },
        tokens,
    )


def prepare_janus(tmp: Path, log: Path) -> tuple[str, Path]:
    binary = janus_room.ensure_installed(log)
    return binary, janus_room.build_shim(tmp)


async def start_janus(started: Started, tmp: Path, seq: Path, binary: str, shim: Path) -> Server:
    port = free_port()
    conf = janus_room.write_config(tmp, port)
    log = tmp / "janus.log"
    env = {**os.environ, "LD_PRELOAD": str(shim)}
    proc = started.popen(
        janus_room.janus_command(binary, conf, log),
        tmp / "janus.out",
        "janus",
        env=env,
        cwd=str(tmp),
    )
    url = f"http://127.0.0.1:{port}/janus"
    await asyncio.to_thread(wait_http, url + "/info", proc, tmp / "janus.out", 30)
    return Server("janus", proc.pid, url, {"server": "janus", "url": url, "sequence": str(seq)})


async def start_relay(started: Started, tmp: Path, seq: Path) -> Server:
    port = free_port()
    log = tmp / "relay.log"
    proc = started.popen(
        [sys.executable, str(SFU / "relay_server.py"), "--port", str(port)],
        log,
        "mediarelay",
        cwd=str(ROOT),
    )
    url = f"http://127.0.0.1:{port}"
    await asyncio.to_thread(wait_http, url + "/", proc, log, 30)
    return Server(
        "mediarelay", proc.pid, url, {"server": "mediarelay", "url": url, "sequence": str(seq)}
    )


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Plan:
    profile: str
    ns: list[int]
    storm: bool
    profile_at: int | None
    profile_storm: bool
    isolated_joins: int
    deadline: float  # time.monotonic() after which nothing new starts


def fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares y = a + b x; None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    b = sxy / sxx
    return my - b * mx, b


def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    k = min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))
    return values[k]


async def snapshot(workers: list[Peer]) -> dict[str, tuple[float, int, int, int]]:
    """Subscriber id -> (time, frames, keyframes, bytes), from every worker at once."""
    replies = await asyncio.gather(*(w.ask("snapshot") for w in workers))
    out = {}
    for r in replies:
        for sub_id, (frames, keys, nbytes) in r["subs"].items():
            out[sub_id] = (r["now"], frames, keys, nbytes)
    return out


def read_cpu(server: Server, pub: Peer, workers: list[Peer]) -> dict[str, float]:
    busy, total = machine_busy()
    return {
        "t": time.monotonic(),
        "server": server.cpu(),
        "publisher": pub.cpu(),
        "clients": sum(w.cpu() for w in workers),
        "busy": busy,
        "total": total,
    }


async def measure_point(
    n: int, server: Server, pub: Peer, workers: list[Peer], window: float
) -> dict[str, Any]:
    c0, s0 = read_cpu(server, pub, workers), await snapshot(workers)
    p0 = await pub.ask("stats")
    await asyncio.sleep(window)
    c1, s1 = read_cpu(server, pub, workers), await snapshot(workers)
    p1 = await pub.ask("stats")
    dt = c1["t"] - c0["t"]
    fps, kbps, slow = [], [], []
    for sub_id, (t1, f1, _k1, b1) in s1.items():
        if sub_id not in s0:
            continue
        t0, f0, _k0, b0 = s0[sub_id]
        fps.append((f1 - f0) / (t1 - t0))
        kbps.append((b1 - b0) * 8 / (t1 - t0) / 1000)
        if fps[-1] < FPS_OK:
            slow.append(sub_id)
    out: dict[str, Any] = {
        "n": n,
        "server_cpu_s_per_s": round((c1["server"] - c0["server"]) / dt, 4),
        "min_fps": round(min(fps), 2) if fps else 0.0,
        "median_fps": round(statistics.median(fps), 2) if fps else 0.0,
        "subscribers_counted": len(fps),
        "subscribers_below": len(slow),
        "median_kbit_s": round(statistics.median(kbps)) if kbps else 0,
        "publisher_fps": round((p1["frames_sent"] - p0["frames_sent"]) / dt, 2),
        "publisher_keyframes": p1["keyframes_sent"] - p0["keyframes_sent"],
        "publisher_keyframe_requests": p1["keyframe_requests"] - p0["keyframe_requests"],
        "publisher_cpu_s_per_s": round((c1["publisher"] - c0["publisher"]) / dt, 3),
        "clients_cpu_s_per_s": round((c1["clients"] - c0["clients"]) / dt, 3),
    }
    if slow:
        # What the slowest viewers' connections say (state, packets received and lost).
        replies = await asyncio.gather(*(w.ask("diag", ids=slow[:4]) for w in workers))
        out["slow_subscribers"] = {k: v for r in replies for k, v in r["subs"].items()}
    busy = (c1["busy"] - c0["busy"]) / (c1["total"] - c0["total"]) * (os.cpu_count() or 1)
    out["machine_busy_cores"] = round(busy, 2)
    # CPU this benchmark did not use: other people's work on a shared machine.
    out["other_load_cores"] = round(
        busy
        - out["server_cpu_s_per_s"]
        - out["publisher_cpu_s_per_s"]
        - out["clients_cpu_s_per_s"],
        2,
    )
    return out


def subscriber_target(server: Server, ready: dict[str, Any]) -> dict[str, Any]:
    cfg = {"server": server.name, "url": server.url}
    if server.name == "homeroom":
        cfg["session_id"] = ready["session_id"]
    elif server.name == "janus":
        cfg["feed"] = ready["feed"]
    return cfg


def show_point(server: Server, plan: Plan, point: dict[str, Any]) -> None:
    say(
        f"  {server.name:10s} {plan.profile} N={point['n']:2d}  server "
        f"{point['server_cpu_s_per_s']:.3f} CPU-s/s  min {point['min_fps']:5.2f} fps  median "
        f"{point['median_fps']:5.2f}  {point['median_kbit_s']} kbit/s  clients "
        f"{point['clients_cpu_s_per_s']:.2f}  machine {point['machine_busy_cores']:.2f}/"
        f"{os.cpu_count()} cores (others {point['other_load_cores']:.2f})"
    )


async def run_server(
    started: Started, server: Server, plan: Plan, tmp: Path, out: dict[str, Any]
) -> None:
    """Ramp, measure, profile, storm; ``out`` collects the figures as they come."""
    warmup, window = WINDOWS[plan.profile]
    out.update({"points": [], "joins": [], "notes": []})
    pub = await Peer.start(
        started,
        "publisher",
        server.publisher_cfg,
        tmp / "publisher.log",
        f"{server.name}-publisher",
    )
    workers: list[Peer] = []
    try:
        ready = await pub.event(60)
        if not ready.get("ok"):
            raise RuntimeError(f"publisher: {ready.get('error')}\n{tail(tmp / 'publisher.log')}")
        target = subscriber_target(server, ready)
        workers = list(
            await asyncio.gather(
                *(
                    Peer.start(
                        started,
                        "subscribers",
                        target,
                        tmp / f"subscribers{i}.log",
                        f"{server.name}-subscribers{i}",
                    )
                    for i in range(WORKERS)
                )
            )
        )
        next_sub = 0

        def new_sub() -> dict[str, Any]:
            nonlocal next_sub
            sub_id = f"s{next_sub}"
            next_sub += 1
            return {"id": sub_id, "token": server.tokens.get(sub_id)}

        joined = 0
        retries = 1
        for n in plan.ns:
            if time.monotonic() > plan.deadline:
                out["notes"].append(f"stopped before N={n}: time budget")
                break
            while joined < n and time.monotonic() < plan.deadline:
                if joined < plan.isolated_joins:
                    # Joins nobody else made just before: no keyframe request is pending.
                    await asyncio.sleep(ISOLATION_S)
                sub = new_sub()
                reply = await workers[joined % WORKERS].ask("join", timeout=40, subs=[sub])
                result = reply["results"][0]
                out["joins"].append(result)
                if "error" in result:
                    out["notes"].append(f"join {sub['id']} failed: {result['error']}")
                joined += 1
            if joined < n:
                out["notes"].append(f"stopped while joining for N={n}: time budget")
                break
            await asyncio.sleep(warmup)
            point = await measure_point(n, server, pub, workers, window)
            show_point(server, plan, point)
            if point["min_fps"] < FPS_OK and retries and time.monotonic() < plan.deadline:
                # Once per server run: a burst of someone else's work on a shared machine
                # should not end the ramp. The second window is the one kept.
                retries -= 1
                out["notes"].append(f"N={n}: measured again after min {point['min_fps']} fps")
                await asyncio.sleep(warmup)
                first = point
                point = await measure_point(n, server, pub, workers, window)
                point["first_try"] = first
                show_point(server, plan, point)
            out["points"].append(point)
            if plan.profile_at == n:
                out["profile"] = await profile_server(server, tmp)
            if point["min_fps"] < FPS_OK:
                out["notes"].append(
                    f"N={n}: a subscriber got {point['min_fps']} fps (< {FPS_OK}); not going higher"
                )
                break
        await asyncio.gather(*(w.ask("leave", timeout=60) for w in workers))

        if plan.storm and time.monotonic() < plan.deadline - 20:
            await asyncio.sleep(1.5)
            out["storm"] = await storm(
                workers, new_sub, server, tmp if plan.profile_storm else None
            )
            st = out["storm"]
            say(
                f"  {server.name:10s} join storm of {STORM}: all have frames after "
                f"{st['join_storm_50_s']} s (median {st['median_s']} s; connected: median "
                f"{st['median_connected_s']} s, last {st['max_connected_s']} s; server "
                f"{st['server_cpu_s']} CPU-s = {st['server_cpu_busy']} cores; clients "
                f"{st['clients_cpu_s']} CPU-s; {st['failed']} failed)"
            )
            await asyncio.gather(*(w.ask("leave", timeout=60) for w in workers))
    finally:
        for w in workers:
            await w.stop(started)
        await pub.stop(started)


async def storm(
    workers: list[Peer], new_sub: Any, server: Server, profile_to: Path | None = None
) -> dict[str, Any]:
    subs = [new_sub() for _ in range(STORM)]
    shares = [subs[i::WORKERS] for i in range(WORKERS)]
    await asyncio.gather(
        *(w.ask("prepare", timeout=90, subs=s) for w, s in zip(workers, shares, strict=True))
    )
    at = time.monotonic() + 0.5
    spy = None
    if profile_to is not None:
        spy = asyncio.ensure_future(profile_server(server, profile_to, "storm", 15))
    cpu0 = server.cpu()
    clients0 = sum(w.cpu() for w in workers)
    replies = await asyncio.gather(
        *(
            w.ask("start", timeout=90, ids=[x["id"] for x in s], at=at)
            for w, s in zip(workers, shares, strict=True)
        )
    )
    elapsed = time.monotonic() - at
    cpu = server.cpu() - cpu0
    clients = sum(w.cpu() for w in workers) - clients0
    results = [r for reply in replies for r in reply["results"]]
    firsts = [r["t_first_key"] for r in results if r.get("t_first_key") is not None]
    connected = [r["connected_s"] for r in results if r.get("connected_s") is not None]
    failed = sum(1 for r in results if r.get("t_first_key") is None)
    out = {
        "join_storm_50_s": round(max(firsts) - at, 3) if firsts and not failed else None,
        "median_s": round(statistics.median(firsts) - at, 3) if firsts else None,
        "median_connected_s": round(statistics.median(connected), 3) if connected else None,
        "max_connected_s": round(max(connected), 3) if connected else None,
        "server_cpu_s": round(cpu, 2),
        "server_cpu_busy": round(cpu / elapsed, 2),
        "clients_cpu_s": round(clients, 2),
        "failed": failed,
        "errors": sorted({r["error"] for r in results if "error" in r})[:3],
    }
    steps: dict[str, list[float]] = {}
    for r in results:
        for step, t in (r.get("steps_s") or {}).items():
            if t is not None:
                steps.setdefault(step, []).append(t)
    if steps:
        # When each signalling reply came, after the join (Homeroom: client-side timestamps).
        out["signalling_replies_s"] = {
            k: {"median": round(statistics.median(v), 3), "max": round(max(v), 3)}
            for k, v in steps.items()
        }
    if spy is not None:
        out["profile"] = await spy
    return out


async def profile_server(
    server: Server, tmp: Path, label: str = f"n{PROFILE_N}", seconds: float = PROFILE_S
) -> dict[str, Any]:
    """py-spy on the server process: where its CPU goes, by category and by function."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    raw = tmp / f"py-spy-{server.name}-{label}.txt"
    proc = await asyncio.create_subprocess_exec(
        spy,
        "record",
        *(["--native"] if NATIVE_PROFILE else ["--nonblocking"]),
        "-r",
        str(PROFILE_RATE),
        "-d",
        str(int(seconds)),
        "-f",
        "raw",
        "-p",
        str(server.pid),
        "-o",
        str(raw),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.wait_for(proc.wait(), seconds + 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    if not raw.exists():
        return {"error": "py-spy wrote nothing"}
    summary = analyse_profile(raw.read_text())
    if "error" in summary:
        return summary
    keep = CACHE / raw.name
    with contextlib.suppress(OSError):
        shutil.copy(raw, keep)
    summary["raw_stacks"] = str(keep.relative_to(ROOT))
    say(
        f"  py-spy, {server.name} server, {label}: {summary['busy_samples']} busy samples "
        f"of {summary['samples']} (raw stacks: {keep})"
    )
    say("    busy%  category")
    for k, v in summary["categories_pct"].items():
        say(f"    {v:5.1f}  {k}")
    say("    busy%  function (self)")
    for k, v in summary["self_pct"].items():
        say(f"    {v:5.1f}  {k}")
    say("    busy%  function (inclusive)")
    for k, v in summary["inclusive_pct"].items():
        say(f"    {v:5.1f}  {k}")
    return summary


# A sample whose stack holds one of these is a thread waiting, not working (native stacks
# include waiting threads: the event loop in epoll, receivers' idle decoder threads, the pool).
IDLE_MARKERS = (
    "epoll_pwait",
    "epoll_wait",
    "PyThread_acquire_lock_timed",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "take_gil",
    "clock_nanosleep",
    "select (",
    "poll (",
)
# (category, markers): the first category with a marker in the stack gets the sample.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("kernel: UDP send (sendmsg/sendto syscalls)", ("sendmsg", "sendto (libc", "sendmmsg")),
    ("kernel: UDP receive (recvmsg)", ("recvmsg", "recvfrom")),
    ("SRTP/SRTCP (libsrtp)", ("srtp", "Session.protect", "Session.unprotect", "Session.__proc")),
    ("forwarding loop, per packet (Python)", ("SharedPayloadSender._forward", "_run_rtp")),
    ("fan-out, per frame (ForwardedTrack / SubscriberTrack)", ("forwarder.py",)),
    ("ingest: RTP receive, jitter buffer, REMB", ("RTCRtpReceiver._handle_rtp", "IngestQueue")),
    ("RTCP (receiver reports, SR, NACK, PLI)", ("rtcp", "Rtcp")),
    ("ICE / STUN (aioice)", ("aioice",)),
    ("DTLS transport demux", ("rtcdtlstransport",)),
    ("signalling, Socket.IO, HTTP, store", ("socketio", "engineio", "aiohttp/", "sqlalchemy")),
    ("event loop (uvloop), task switching, GC", ("loop.c", "uv_run", "task_step", "gc")),
]


def analyse_profile(text: str) -> dict[str, Any]:
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    cats: dict[str, int] = {}
    total = busy = 0
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        if any(m in stack for m in IDLE_MARKERS):
            continue
        busy += count
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
        category = next((c for c, ms in CATEGORIES if any(m in stack for m in ms)), "other")
        cats[category] = cats.get(category, 0) + count
    if not busy:
        return {"error": "py-spy took no busy samples", "samples": total}

    def pcts(d: dict[str, int], n: int) -> dict[str, float]:
        return {
            k: round(v * 100 / busy, 1) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]
        }

    interesting = {
        k: v
        for k, v in incl.items()
        if "/" in k and not k.startswith(("run_app", "_run", "<module>", "main (", "cmd_serve"))
    }
    return {
        "samples": total,
        "busy_samples": busy,
        "categories_pct": pcts(cats, len(cats)),
        "self_pct": pcts(own, 15),
        "inclusive_pct": pcts(interesting, 20),
    }


def _short(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)" or "0x7f.. (libc.so.6)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    path = path or where
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    if name.startswith("0x"):
        return f"[{path or 'native'}]"
    return f"{name} ({path})" if path else name


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    points = result.get("points", [])
    ok = [(p["n"], p["server_cpu_s_per_s"]) for p in points if p["min_fps"] >= FPS_OK]
    fitted = fit(ok)
    ok_joins = [j for j in result.get("joins", []) if j.get("first_key_s") is not None]
    joins = [j["first_key_s"] for j in ok_joins]
    connected = [j["connected_s"] for j in ok_joins if j.get("connected_s") is not None]
    isolated: list[float] = []
    back_to_back: list[float] = []
    # The part of a join after the viewer's connection is up (ICE + DTLS): what the keyframe
    # handling costs, apart from signalling and connection set-up (which load moves most).
    after_connected: dict[str, list[float]] = {"isolated": [], "back_to_back": []}
    previous_end = -math.inf
    for j in sorted(result.get("joins", []), key=lambda j: j["t_join"] or 0):
        if j.get("first_key_s") is not None:
            gap = j["t_join"] - previous_end
            kind = "isolated" if gap >= ISOLATION_S else "back_to_back"
            (isolated if kind == "isolated" else back_to_back).append(j["first_key_s"])
            if j.get("connected_s") is not None:
                after_connected[kind].append(j["first_key_s"] - j["connected_s"])
        if j.get("t_first_key") is not None:
            previous_end = j["t_first_key"]
    s: dict[str, Any] = {
        "cpu_s_per_s": {str(p["n"]): p["server_cpu_s_per_s"] for p in points},
        "min_fps": {str(p["n"]): p["min_fps"] for p in points},
        "fit_ns": [n for n, _ in ok],
        "marginal_cpu_per_subscriber": round(fitted[1], 5) if fitted else None,
        "fit_intercept": round(fitted[0], 4) if fitted else None,
        "lowest_fps_any_subscriber": min((p["min_fps"] for p in points), default=None),
        "join_to_first_frame_s": {
            "isolated": _stats(isolated),
            "back_to_back": _stats(back_to_back),
            "all": _stats(joins),
            "median_connected_s": round(statistics.median(connected), 3) if connected else None,
            "after_connected": {k: _stats(v) for k, v in after_connected.items()},
        },
        "points": points,
    }
    if "storm" in result:
        s["join_storm_50_s"] = result["storm"]["join_storm_50_s"]
        s["storm"] = result["storm"]
    if result.get("notes"):
        s["notes"] = result["notes"]
    if os.environ.get("SFU_BENCH_JOINS"):
        s["joins"] = result.get("joins", [])
    if result.get("error"):
        s["error"] = result["error"]
    return s


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"joins": 0}
    return {
        "median": round(statistics.median(values), 3),
        "p90": round(pct(values, 90), 3),
        "max": round(max(values), 3),
        "joins": len(values),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 3)


# --- main ---------------------------------------------------------------------------------------


def ensure_py_spy() -> None:
    """py-spy comes with the project's dev dependencies (``make setup``; requirements.lock)."""
    if shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists():
        return
    raise RuntimeError("py-spy is missing: run `make setup` (it is in the dev dependencies)")


async def main_async(args: argparse.Namespace, started: Started, tmp: Path) -> dict[str, Any]:
    t_start = time.monotonic()
    deadline = t_start + STEP_CUTOFF_S
    say(f"SFU fan-out benchmark on {os.cpu_count()} cores; work dir {tmp}")
    CACHE.mkdir(parents=True, exist_ok=True)
    profiles = args.profiles
    encode = started.popen(
        [sys.executable, str(SFU / "video.py"), str(CACHE), *profiles],
        tmp / "encode.log",
        "encode",
        cwd=str(ROOT),
    )
    janus_ready = (
        asyncio.ensure_future(asyncio.to_thread(prepare_janus, tmp, tmp / "apt.log"))
        if "janus" in args.servers
        else None
    )
    await asyncio.to_thread(ensure_py_spy)
    rc = await asyncio.to_thread(encode.wait)
    started.pids.pop(encode.pid, None)
    if rc != 0:
        raise RuntimeError(f"encoding the VP8 sequences failed:\n{tail(tmp / 'encode.log')}")
    seqs = {}
    for line in (tmp / "encode.log").read_text().splitlines():
        if line.startswith("{"):
            info = json.loads(line)
            seqs[info["profile"]] = Path(info["path"])
            say(
                f"publisher sequence {info['profile']}: {info['kbit_s']} kbit/s, keyframe "
                f"{info['keyframe_bytes']} B, delta {info['delta_bytes_avg']} B on average"
            )
    janus_bin: tuple[str, Path] | None = None
    janus_error = "janus was not prepared"
    if janus_ready is not None:
        try:
            janus_bin = await janus_ready
            say(f"janus: {janus_bin[0]} (getifaddrs shim built)")
        except Exception as exc:  # no Janus: the other servers are still measured
            janus_error = f"Janus could not be installed or prepared: {exc}"
            say(janus_error)

    results: dict[str, dict[str, Any]] = {}
    for profile in profiles:
        results[profile] = {}
        order = list(args.servers)
        if profile != profiles[0] and "mediarelay" in order:
            # Short (it saturates at N=2 or so): first, so a busy machine's late cut-off
            # does not leave the second pass without its MediaRelay figure.
            order.remove("mediarelay")
            order.insert(0, "mediarelay")
        for name in order:
            if time.monotonic() > t_start + RUN_CUTOFF_S:
                results[profile][name] = {"error": "skipped: time budget"}
                continue
            work = tmp / f"{profile}-{name}"
            work.mkdir()
            ns = args.ns
            if name == "mediarelay":
                ns = NS_MEDIARELAY if args.ns == NS else [n for n in args.ns if n <= 16]
            plan = Plan(
                profile,
                ns,
                storm=profile == "360p" and not args.no_storm,
                profile_at=PROFILE_N if (name == "homeroom" and profile == "360p") else None,
                profile_storm=args.profile_storm and name == "homeroom",
                isolated_joins=ISOLATED_JOINS if profile == "360p" else 0,
                deadline=deadline,
            )
            say(f"{name} {profile} (at {time.monotonic() - t_start:.0f} s)")
            t_run = time.monotonic()
            server = None
            raw: dict[str, Any] = {}
            try:
                if name == "homeroom":
                    server = await start_homeroom(
                        started, work, seqs[profile], free_udp_port() if args.udp_mux else 0
                    )
                elif name == "janus":
                    if janus_bin is None:
                        raise RuntimeError(janus_error)
                    server = await start_janus(started, work, seqs[profile], *janus_bin)
                else:
                    server = await start_relay(started, work, seqs[profile])
                await asyncio.wait_for(
                    run_server(started, server, plan, work, raw),
                    max(1.0, t_start + HARD_LIMIT_S - time.monotonic()),
                )
            except TimeoutError:
                say(f"  {name} {profile}: cut at the time limit")
                raw.setdefault("notes", []).append("cut at the time limit")
            except Exception as exc:
                say(f"  {name} {profile} failed: {type(exc).__name__}: {exc}")
                raw["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                if server is not None:
                    started.stop(server.pid)
            results[profile][name] = summarize(raw)
            results[profile][name]["run_s"] = round(time.monotonic() - t_run, 1)
            if "profile" in raw:
                results[profile][name]["profile"] = raw["profile"]

    def marginal(profile: str, name: str) -> float | None:
        return results.get(profile, {}).get(name, {}).get("marginal_cpu_per_subscriber")

    home = results.get("360p", {}).get("homeroom", {})
    janus = results.get("360p", {}).get("janus", {})
    figures: dict[str, Any] = {
        "bench": "sfu_fanout",
        "ratio_vs_janus": ratio(marginal("360p", "homeroom"), marginal("360p", "janus")),
        "ratio_vs_mediarelay": ratio(marginal("360p", "mediarelay"), marginal("360p", "homeroom")),
        "min_fps_n16": home.get("min_fps", {}).get(str(PROFILE_N)),
        "join_to_first_frame_s": home.get("join_to_first_frame_s", {})
        .get("isolated", {})
        .get("median"),
        "join_to_first_frame_back_to_back_s": home.get("join_to_first_frame_s", {})
        .get("back_to_back", {})
        .get("median"),
        "janus_join_to_first_frame_back_to_back_s": janus.get("join_to_first_frame_s", {})
        .get("back_to_back", {})
        .get("median"),
        "join_storm_50_s": home.get("join_storm_50_s"),
        "ratio_vs_janus_720p": ratio(marginal("720p", "homeroom"), marginal("720p", "janus")),
        "ratio_vs_mediarelay_720p": ratio(
            marginal("720p", "mediarelay"), marginal("720p", "homeroom")
        ),
        "marginal_cpu_per_subscriber": {
            p: {n: marginal(p, n) for n in args.servers} for p in profiles
        },
    }
    m720 = marginal("720p", "homeroom")
    figures["forwarded_720p_streams_per_core"] = round(1 / m720) if m720 and m720 > 0 else None
    figures["targets"] = {
        "ratio_vs_janus <= 1.0": _cmp(figures["ratio_vs_janus"], lambda v: v <= 1.0),
        "ratio_vs_mediarelay >= 15": _cmp(figures["ratio_vs_mediarelay"], lambda v: v >= 15),
        "min_fps_n16 >= 29": _cmp(figures["min_fps_n16"], lambda v: v >= 29),
        "join_to_first_frame_s < 0.5": _cmp(figures["join_to_first_frame_s"], lambda v: v < 0.5),
        "join_to_first_frame_back_to_back_s < 0.35": _cmp(
            figures["join_to_first_frame_back_to_back_s"], lambda v: v < 0.35
        ),
        "back_to_back <= janus's": _cmp(
            figures["join_to_first_frame_back_to_back_s"],
            lambda v: (
                figures["janus_join_to_first_frame_back_to_back_s"] is not None
                and v <= figures["janus_join_to_first_frame_back_to_back_s"]
            ),
        ),
    }
    figures["homeroom_media_udp_port"] = bool(args.udp_mux)
    figures["machine"] = {
        "cores": os.cpu_count(),
        "clk_tck": CLK_TCK,
        "loadavg_at_end": os.getloadavg(),
    }
    figures["code"] = code_state()
    figures["servers"] = results
    figures["elapsed_s"] = round(time.monotonic() - t_start, 1)
    return figures


def code_state() -> dict[str, Any]:
    """The commit measured, and whether the server's code differed from it (shared checkout)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", "media", "signaling", "realtime", "clients")
    changed = [line[3:] for line in dirty.splitlines() if line[3:].endswith(".py")]
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": dirty.splitlines(),
        # Blob ids of the uncommitted Python files measured (git hash-object).
        "uncommitted_blobs": {
            path: git("hash-object", path)[:12]
            for path in changed
            if path.startswith(("media/", "signaling/"))
        },
    }


def _cmp(value: float | None, test: Any) -> bool | None:
    return None if value is None else bool(test(value))


def print_table(figures: dict[str, Any]) -> None:
    say("")
    say("server      profile  marginal CPU/sub  lowest fps  join->first frame (median)  storm 50")
    for profile, by_server in figures["servers"].items():
        for name, s in by_server.items():
            j = s.get("join_to_first_frame_s", {}).get("isolated", {})
            say(
                f"{name:11s} {profile:7s}  {s.get('marginal_cpu_per_subscriber')!s:16s}  "
                f"{s.get('lowest_fps_any_subscriber')!s:10s}  {j.get('median')!s:26s}  "
                f"{s.get('join_storm_50_s', '-')!s}"
            )
    say(
        f"ratio_vs_janus {figures['ratio_vs_janus']}  ratio_vs_mediarelay "
        f"{figures['ratio_vs_mediarelay']}  min_fps_n16 {figures['min_fps_n16']}  "
        f"join_to_first_frame_s {figures['join_to_first_frame_s']}"
    )
    say(f"targets: {figures['targets']}")


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["homeroom", "janus", "mediarelay"],
        choices=["homeroom", "janus", "mediarelay"],
    )
    parser.add_argument("--profiles", nargs="+", default=["360p", "720p"], choices=["360p", "720p"])
    parser.add_argument("--ns", nargs="+", type=int, default=NS, help="subscriber counts")
    parser.add_argument("--no-storm", action="store_true", help="skip the join storm")
    parser.add_argument(
        "--profile-storm", action="store_true", help="py-spy the Homeroom server in the storm"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument(
        "--udp-mux",
        action="store_true",
        help="Homeroom with media_udp_port set (all media on one UDP port)",
    )
    args = parser.parse_args()
    started = Started()
    tmp = Path(tempfile.mkdtemp(prefix="sfu-bench-"))

    def on_term(_sig: int, _frame: Any) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        figures = asyncio.run(main_async(args, started, tmp))
    finally:
        started.stop_all()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(figures)
    print(json.dumps(figures, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
