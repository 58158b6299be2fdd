"""Chat and notice fan-out: Homeroom against the Node.js reference Socket.IO server, side by side.

Run from the repository root, once ``make test`` or ``make run`` has set up ``.venv``::

    .venv/bin/python bench/chat_fanout.py            # about 3-5 minutes
    .venv/bin/python bench/chat_fanout.py --big      # also 10,000 guardians and the roll-up

Both servers run on 127.0.0.1 in their own processes, over WebSocket, driven by the same lean
client (bench/sioclient.py) whose receiving connections live in separate worker processes
(bench/loadworker.py), so only the server's own work is counted as server CPU (read from
/proc/<pid>/stat of that process alone). Homeroom is measured as it really runs: ``homeroom
serve`` with its default SQLite store, every chat message and notice persisted before the ack.
The reference (bench/node/server.js, npm ``socket.io`` 4.8) stores nothing.

Workload (see docs/performance.md):
- throughput: one sender, rooms of 50 and 500 receivers, ~100-byte chat bodies, the sender waits
  for each ack; deliveries per second at the receivers and server CPU-seconds per 10,000;
- latency: 50 messages/s into the room of 50; p50 and p99 from send to receipt;
- memory: server RSS with 2,000 idle authenticated (and synced) connections minus RSS with none;
- notices: one notice to 2,000 connected guardians; time until the last one has it.

Human-readable lines as it goes; the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NODE_DIR = BENCH / "node"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from procs import CLK_TCK, cpu_seconds, free_port, say, tail  # noqa: E402
from sioclient import SioConnection, body_with_stamp, new_session  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
BODY_CHARS = 100
TOTAL_BUDGET_S = 570  # stop whatever is running before 9.5 minutes
BIG_BUDGET_S = 1500  # with --big: 10,000 connections take minutes to sync

# Room sizes and head counts of the workload.
SMALL, LARGE, GUARDIANS, BIG_GUARDIANS = 50, 500, 2000, 10_000


# --- processes ----------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def _die_with_parent() -> None:
    """In the child: get SIGTERM if this benchmark dies, even by SIGKILL (Linux prctl)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Started:
    """Every process this run started, stopped by pid in ``stop_all`` whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def popen(self, args: list[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
        fh = open(log, "ab")  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen(
            args,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            **kw,
        )
        fh.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        self.procs.clear()


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{tail(log)}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s:\n{tail(log)}")


class WorkerPool:
    """Processes holding the receiving connections (bench/loadworker.py), driven by JSON lines."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.procs = procs
        self.sizes = [0] * len(procs)

    @classmethod
    async def start(cls, n: int, log: Path) -> WorkerPool:
        procs = []
        for _ in range(n):
            with log.open("ab") as fh:
                procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        str(BENCH / "loadworker.py"),
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=fh,
                        limit=256 * 1024 * 1024,
                        start_new_session=True,
                    )
                )
        return cls(procs)

    async def _ask(self, i: int, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        proc = self.procs[i]
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await proc.stdin.drain()
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"load worker {i} exited")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"load worker {i}: {reply.get('error')}")
        return dict(reply)

    async def all(
        self, cmd: dict[str, Any] | list[dict[str, Any]], timeout: float = 60
    ) -> list[dict[str, Any]]:
        cmds = cmd if isinstance(cmd, list) else [cmd] * len(self.procs)
        return list(await asyncio.gather(*(self._ask(i, c, timeout) for i, c in enumerate(cmds))))

    async def connect(self, url: str, tokens: list[str], compress: bool) -> dict[str, Any]:
        n = len(self.procs)
        parts = [tokens[i::n] for i in range(n)]
        replies = await self.all(
            [
                {
                    "cmd": "connect",
                    "url": url,
                    "tokens": p,
                    "sync": True,
                    "compress": compress,
                    "concurrency": 50,
                }
                for p in parts
            ],
            timeout=900,
        )
        for i, r in enumerate(replies):
            self.sizes[i] += r["connected"]
        failed = sum(r["failed"] for r in replies)
        if failed:
            first = next(r["first_error"] for r in replies if r["first_error"])
            raise RuntimeError(f"{failed} of {len(tokens)} connections failed: {first}")
        retries = sum(r["retries"] for r in replies)
        if retries:
            first = next(r["first_retry"] for r in replies if r["first_retry"])
            say(
                f"  WARNING: {retries} connects or syncs failed and were retried; the first: "
                f"{first}"
            )
        return {
            "retries": retries,
            "connected": sum(r["connected"] for r in replies),
            "deflate": sum(r["deflate"] for r in replies),
            "seconds": max(r["seconds"] for r in replies),
        }

    async def close(self) -> None:
        await self.all({"cmd": "close"}, timeout=400)
        self.sizes = [0] * len(self.procs)

    async def reset(self, latency: bool = False) -> None:
        await self.all({"cmd": "reset", "latency": latency})

    async def wait_each(self, per_conn: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until every connection has had ``per_conn`` events (counted per worker)."""
        return await self.all(
            [{"cmd": "wait", "n": per_conn * s, "timeout": timeout} for s in self.sizes],
            timeout=timeout + 30,
        )

    async def cpu(self) -> float:
        return sum(r["cpu_s"] for r in await self.all({"cmd": "cpu"}))

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None and proc.stdin is not None:
                with contextlib.suppress(Exception):
                    proc.stdin.write(b'{"cmd": "exit"}\n')
                    await proc.stdin.drain()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


# --- the people and their tokens ----------------------------------------------------------------


@dataclass
class People:
    """User ids of the benchmark school, the same for both servers."""

    class_small: int = 1
    class_large: int = 2
    class_big: int = 3
    teacher: int = 1
    sender_small: int = 2
    sender_large: int = 3
    small: list[int] = field(default_factory=list)  # receivers in the room of 50
    large: list[int] = field(default_factory=list)  # receivers in the room of 500
    guardians: list[int] = field(default_factory=list)  # 2,000, of the room-of-500 class
    big_students: list[int] = field(default_factory=list)
    big_guardians: list[int] = field(default_factory=list)  # 10,000 (--big)
    # guardian id -> student id
    links: dict[int, int] = field(default_factory=dict)
    big_links: dict[int, int] = field(default_factory=dict)

    @classmethod
    def make(cls, big: bool) -> People:
        p = cls()
        nxt = 4
        p.small = list(range(nxt, nxt + SMALL))
        nxt += SMALL
        p.large = list(range(nxt, nxt + LARGE))
        nxt += LARGE
        p.guardians = list(range(nxt, nxt + GUARDIANS))
        nxt += GUARDIANS
        per = GUARDIANS // LARGE
        p.links = {g: p.large[i // per] for i, g in enumerate(p.guardians)}
        if big:
            n_students = BIG_GUARDIANS // 2
            p.big_students = list(range(nxt, nxt + n_students))
            nxt += n_students
            p.big_guardians = list(range(nxt, nxt + BIG_GUARDIANS))
            p.big_links = {g: p.big_students[i // 2] for i, g in enumerate(p.big_guardians)}
        return p

    def streams(self, uid: int) -> list[str]:
        """What a person follows (for the reference server's tokens)."""
        a, b, c = self.class_small, self.class_large, self.class_big
        if uid == self.teacher:
            return [
                f"{k}:{cid}:{part}"
                for cid in (a, b, c)
                for k in ("class", "notices")
                for part in ("students", "guardians")
            ]
        if uid == self.sender_small or self.small[0] <= uid <= self.small[-1]:
            return [f"class:{a}:students", f"notices:{a}:students"]
        if uid == self.sender_large or self.large[0] <= uid <= self.large[-1]:
            return [f"class:{b}:students", f"notices:{b}:students"]
        if uid in self.links:
            return [f"class:{b}:guardians", f"notices:{b}:guardians"]
        return [f"class:{c}:guardians", f"notices:{c}:guardians"]


async def seed_homeroom(database_url: str, people: People) -> None:
    """Create the school directly in the store: fast, no passwords (tokens are minted)."""
    from realtime.actions.roster import create_class
    from realtime.domain.roles import Role
    from realtime.store import open_store
    from realtime.store.schema import guardian_links, memberships, schools, users

    store = open_store(database_url)
    now = time.time()
    try:
        await store.migrate()
        async with store.transaction() as conn:
            school = (
                await conn.execute(schools.insert().values(name="Bench School"))
            ).inserted_primary_key[0]
            for cid, name in (
                (people.class_small, "Bench room of 50"),
                (people.class_large, "Bench room of 500"),
                (people.class_big, "Bench notices to 10,000"),
            ):
                assert await create_class(conn, school, name) == cid

            def user(uid: int, kind: str) -> dict[str, Any]:
                return {
                    "id": uid,
                    "school_id": school,
                    "username": f"{kind}{uid}",
                    "display_name": f"{kind.title()} {uid} 同学",
                    "password_hash": None,
                    "phone": None,
                    "school_admin": False,
                    "created_at": now,
                }

            rows = [user(people.teacher, "teacher")]
            rows += [user(u, "student") for u in [people.sender_small, people.sender_large]]
            rows += [user(u, "student") for u in people.small + people.large]
            rows += [user(u, "student") for u in people.big_students]
            rows += [user(u, "guardian") for u in people.guardians + people.big_guardians]
            await conn.execute(users.insert(), rows)

            def member(cid: int, uid: int, role: Role) -> dict[str, Any]:
                return {"class_id": cid, "user_id": uid, "role": role.value}

            a, b, c = people.class_small, people.class_large, people.class_big
            ms = [member(cid, people.teacher, Role.HEAD_TEACHER) for cid in (a, b, c)]
            ms += [member(a, u, Role.STUDENT) for u in [people.sender_small, *people.small]]
            ms += [member(b, u, Role.STUDENT) for u in [people.sender_large, *people.large]]
            ms += [member(c, u, Role.STUDENT) for u in people.big_students]
            ms += [member(b, g, Role.GUARDIAN) for g in people.guardians]
            ms += [member(c, g, Role.GUARDIAN) for g in people.big_guardians]
            await conn.execute(memberships.insert(), ms)
            links = [(b, g, s) for g, s in people.links.items()]
            links += [(c, g, s) for g, s in people.big_links.items()]
            await conn.execute(
                guardian_links.insert(),
                [
                    {
                        "class_id": cid,
                        "guardian_id": g,
                        "student_id": s,
                        "relationship": "mother",
                        "status": "approved",
                        "requested_at": now,
                        "decided_by": people.teacher,
                        "decided_at": now,
                    }
                    for cid, g, s in links
                ],
            )
    finally:
        await store.close()


# --- the two servers ----------------------------------------------------------------------------


@dataclass
class Target:
    name: str  # "homeroom" | "baseline" | "reference"
    url: str
    pid: int
    token: Any  # uid -> token

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)


def start_homeroom(
    started: Started, tmp: Path, people: People, name: str = "homeroom", root: Path = ROOT
) -> tuple[Target, str]:
    """``homeroom serve`` from the source tree ``root`` (another tree: ``--baseline``)."""
    from realtime.auth import TokenIssuer

    port = free_port()
    secret = "bench-" + secrets.token_hex(24)
    db = tmp / f"{name}.db"
    config = tmp / f"{name}.toml"
    config.write_text(
        "\n".join(
            [
                'host = "127.0.0.1"',
                f"port = {port}",
                f'database_url = "sqlite:///{db}"',
                f'secret = "{secret}"',
                # One sender sends as fast as acks come back: no rate limit in the way.
                "rate_burst = 100000000",
                "rate_per_s = 100000000.0",
                'log_level = "WARNING"',
            ]
        )
        + "\n"
    )
    asyncio_run_in_thread(seed_homeroom(f"sqlite:///{db}", people))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEROOM_")}
    log = tmp / f"{name}.log"
    proc = started.popen(
        [sys.executable, "-m", "realtime.cli", "--config", str(config), "serve"],
        log,
        cwd=str(root),
        env=env,
    )
    wait_for_port(port, proc, log, 60)
    issuer = TokenIssuer({"k1": secret}, "k1", 4 * 3600)
    cache: dict[int, str] = {}

    def token(uid: int) -> str:
        if uid not in cache:
            cache[uid] = issuer.issue(uid, 1)
        return cache[uid]

    uvloop = "uvloop" if _has_uvloop() else "asyncio"
    return Target(name, f"http://127.0.0.1:{port}", proc.pid, token), uvloop


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401

        return True
    except ImportError:
        return False


def asyncio_run_in_thread(coro: Any) -> Any:
    """Run a coroutine to completion on a fresh loop (we are inside the main loop)."""
    import threading

    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["v"] = asyncio.run(coro)
        except BaseException as exc:
            out["e"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out.get("v")


def ensure_node() -> str:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node or not npm:
        raise RuntimeError("node and npm are needed for the reference server (Node.js 20)")
    stamp = NODE_DIR / "node_modules" / ".installed"
    lock = NODE_DIR / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        say("installing the reference server (npm ci in bench/node) ...")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=NODE_DIR,
            check=True,
            timeout=300,
        )
        stamp.touch()
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    return version.stdout.strip()


def start_reference(started: Started, tmp: Path, people: People) -> Target:
    port = free_port()
    log = tmp / "reference.log"
    proc = started.popen(["node", str(NODE_DIR / "server.js"), str(port)], log, cwd=str(NODE_DIR))
    wait_for_port(port, proc, log, 30)

    def token(uid: int) -> str:
        return f"{uid}|{','.join(people.streams(uid))}"

    return Target("reference", f"http://127.0.0.1:{port}", proc.pid, token)


# --- measurements -------------------------------------------------------------------------------


def pct(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


async def open_sender(target: Target, uid: int, compress: bool) -> SioConnection:
    session = new_session()
    conn = SioConnection(session, target.url, target.token(uid), compress=compress)
    conn.session_owned = session  # type: ignore[attr-defined]
    await conn.connect()
    ack = await conn.call("sync", {"cursors": {}})
    if not ack.get("ok"):
        raise RuntimeError(f"sender sync refused: {ack}")
    return conn


async def close_sender(conn: SioConnection) -> None:
    await conn.close()
    await conn.session_owned.close()  # type: ignore[attr-defined]


def chat(stream: str) -> dict[str, Any]:
    return {"stream": stream, "client_id": uuid.uuid4().hex, "body": body_with_stamp(BODY_CHARS)}


async def send_ok(conn: SioConnection, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    ack = await conn.call(event, payload, timeout=30)
    if not isinstance(ack, dict) or not ack.get("ok"):
        raise RuntimeError(f"{event} refused: {ack!r:.300}")
    return ack


async def throughput(
    target: Target,
    pool: WorkerPool,
    sender: SioConnection,
    stream: str,
    receivers: int,
    duration: float,
    window: int = 1,
) -> dict[str, Any]:
    """The sender sends for ``duration`` seconds, each after the previous ack (or, with
    ``window`` > 1, keeping that many unacknowledged: concurrent transactions); then drain."""
    await pool.reset()
    client0 = await pool.cpu()
    cpu0 = target.cpu()
    t0 = time.monotonic()
    sent = 0
    inflight: set[asyncio.Future[Any]] = set()

    def check(done: set[asyncio.Future[Any]]) -> None:
        for fut in done:
            ack = fut.result()
            if not isinstance(ack, dict) or not ack.get("ok"):
                raise RuntimeError(f"chat.send refused: {ack!r:.300}")

    while time.monotonic() - t0 < duration and sent < 200_000:
        if window <= 1:
            await send_ok(sender, "chat.send", chat(stream))
        else:
            while len(inflight) >= window:
                done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                check(done)
            inflight.add(sender.emit_nowait("chat.send", chat(stream)))
        sent += 1
    if inflight:
        done, _ = await asyncio.wait(inflight, timeout=30)
        check(done)
    t_sent = time.monotonic()
    stats = await pool.wait_each(sent, timeout=60)
    cpu1 = target.cpu()
    client1 = await pool.cpu()
    delivered = sum(s["count"] for s in stats)
    t_last = max(s["last_t"] for s in stats)
    missing = sent * receivers - delivered
    return {
        "sent": sent,
        "delivered": delivered,
        "missing": missing,
        "acks_per_s": sent / (t_sent - t0),
        "deliveries_per_s": delivered / (t_last - t0) if delivered else 0.0,
        "cpu_s_per_10k": (cpu1 - cpu0) / delivered * 10_000 if delivered else math.nan,
        "server_cpu_util": (cpu1 - cpu0) / (t_last - t0) if delivered else 0.0,
        "client_cpu_util": (client1 - client0) / (t_last - t0) if delivered else 0.0,
    }


async def latency(
    pool: WorkerPool,
    sender: SioConnection,
    stream: str,
    receivers: int,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    """``rate`` messages per second on a fixed schedule (not waiting for acks)."""
    await pool.reset(latency=True)
    n = int(rate * seconds)
    t0 = time.monotonic()
    acks: list[asyncio.Future[Any]] = []
    ack_s: list[float] = []

    def on_ack(at: float) -> Any:
        return lambda _fut: ack_s.append(time.monotonic() - at)

    for i in range(n):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        fut = sender.emit_nowait("chat.send", chat(stream))
        fut.add_done_callback(on_ack(time.monotonic()))
        acks.append(fut)
    for fut in acks:
        ack = await asyncio.wait_for(fut, 30)
        if not ack.get("ok"):
            raise RuntimeError(f"chat.send refused: {ack}")
    await pool.wait_each(n, timeout=30)
    stats = await pool.all({"cmd": "stats"})
    lats = sorted(x for s in stats for x in s["lats"])
    return {
        "messages": n,
        "samples": len(lats),
        "missing": n * receivers - sum(s["count"] for s in stats),
        "p50_ms": pct(lats, 50) * 1000,
        "p99_ms": pct(lats, 99) * 1000,
        "max_ms": (lats[-1] * 1000) if lats else math.nan,
        "ack_p50_ms": pct(sorted(ack_s), 50) * 1000,
        "ack_p99_ms": pct(sorted(ack_s), 99) * 1000,
        "elapsed_s": time.monotonic() - t0,
    }


async def notice_to_all(
    pool: WorkerPool, teacher: SioConnection, class_id: int, expect: int
) -> dict[str, Any]:
    await pool.reset()
    payload = {
        "class_id": class_id,
        "client_id": uuid.uuid4().hex,
        "audience": "guardians",
        "kind": "confirm_required",
        "title": "运动会回执 Sports day: sign and return the consent form",
        "body": body_with_stamp(BODY_CHARS),
        "choices": [],
        "deadline": None,
    }
    t0 = time.monotonic()
    ack = await send_ok(teacher, "notice.publish", payload)
    t_ack = time.monotonic()
    stats = await pool.wait_each(1, timeout=60)
    got = sum(s["count"] for s in stats)
    t_last = max(s["last_t"] for s in stats)
    return {
        "notice_id": ack["notice"]["id"],
        "recipients": ack.get("recipients"),
        "received": got,
        "missing": expect - got,
        "ack_s": t_ack - t0,
        "last_s": t_last - t0 if got else math.nan,
    }


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's main thread (its event loop) and of all its other threads."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "event loop" if task.name == str(pid) else "other threads"
            out[name] = out.get(name, 0.0) + cpu_seconds_of(task / "stat")
        except OSError:
            continue
    return out


def cpu_seconds_of(stat_path: Path) -> float:
    stat = stat_path.read_text()
    rest = stat[stat.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


class Spy:
    """``--profile DIR``: py-spy the Homeroom server over one step, then print where it went.

    ``py-spy --native`` also names C code (SQLite, uvloop, the kernel calls); samples of waiting
    threads are dropped. It pauses the server for each sample, so the figures of a profiled run
    are not the ones to report: profile in a separate run.
    """

    def __init__(self, target: Target, where: str | None, label: str, seconds: float) -> None:
        self.active = bool(where) and target.name == "homeroom"
        self.target = target
        self.path = Path(where or ".") / f"{label}.txt"
        self.label = label
        self.seconds = seconds
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Spy:
        if not self.active:
            return self
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.threads0 = thread_cpu(self.target.pid)
        self.t0 = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            spy,
            "record",
            "--native",
            "-r",
            "200",
            "-d",
            str(max(1, math.ceil(self.seconds))),
            "-f",
            "raw",
            "-p",
            str(self.target.pid),
            "-o",
            str(self.path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(0.5)  # let it attach
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        threads1 = thread_cpu(self.target.pid)
        wall = time.monotonic() - self.t0
        try:
            await asyncio.wait_for(self.proc.wait(), self.seconds + 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        per = {k: v - self.threads0.get(k, 0.0) for k, v in threads1.items()}
        busy = ", ".join(
            f"{k} {v / wall * 100:.0f}%"
            for k, v in sorted(per.items(), key=lambda kv: -kv[1])
            if v > 0
        )
        say(f"  profile {self.label}: CPU per thread over {wall:.1f} s: {busy}")
        report_py_spy(self.path, self.label)


# A sample whose stack holds one of these is a thread waiting, not working.
IDLE_MARKERS = (
    "epoll_wait",
    "epoll_pwait",
    "PyThread_acquire_lock_timed",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "take_gil",
    "clock_nanosleep",
)
# (category, markers), tried on each frame from the innermost outwards: the first frame that
# matches a category gets the sample.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (
        "kernel: socket writes and reads",
        (
            "writev",
            "__send",
            "sendmsg",
            "__libc_write",
            "write (libc",
            "read (libc",
            "__libc_recv",
            "recv (",
            "readv",
            "uv__read",
        ),
    ),
    ("SQLite (C library)", ("libsqlite", "sqlite3_", "sqlite3VdbeExec", "_sqlite3")),
    ("JSON / msgpack encode and decode", ("json", "msgpack", "msgspec")),
    ("fan-out: realtime/transport/fanout.py + sio_internals/", ("fanout.py", "sio_internals/")),
    ("SQLAlchemy: statements, results, pool", ("sqlalchemy",)),
    ("Homeroom actions, policy, store (realtime/)", ("realtime/",)),
    ("Socket.IO, Engine.IO, aiohttp", ("socketio", "engineio", "aiohttp")),
    ("event loop (uvloop), tasks, GC", ("uvloop", "uv_", "asyncio", "gc_collect", "gc (")),
]


def report_py_spy(path: Path, label: str, top: int = 15) -> None:
    """Print where the server's busy samples went: by category, function (self, inclusive)."""
    if not path.exists():
        say(f"  py-spy wrote nothing (is it installed? pip install py-spy): {path}")
        return
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    cats: dict[str, int] = {}
    total = busy = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        if any(m in stack for m in IDLE_MARKERS):
            continue
        busy += count
        raw = stack.split(";")
        frames = [_short(f) for f in raw]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
        category = "other"
        for f in reversed(raw):
            hit = next((c for c, ms in CATEGORIES if any(m in f for m in ms)), None)
            if hit:
                category = hit
                break
        cats[category] = cats.get(category, 0) + count
    if not busy:
        say(f"  py-spy {label}: no busy samples of {total}")
        return
    say(f"  py-spy {label}: {busy} busy samples of {total}, {path}")
    say("    busy%  category")
    for k, v in sorted(cats.items(), key=lambda kv: -kv[1]):
        say(f"    {v * 100 / busy:5.1f}  {k}")
    say("    self%  function")
    for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        say(f"    {v * 100 / busy:5.1f}  {k[:140]}")
    say("    incl%  function")
    skip = ("run_app", "_run", "<module>", "main (", "cmd_serve")
    inner = {k: v for k, v in incl.items() if ".py:" in k and not k.startswith(skip)}
    for k, v in sorted(inner.items(), key=lambda kv: -kv[1])[:top]:
        say(f"    {v * 100 / busy:5.1f}  {k[:140]}")


def _short(frame: str) -> str:
    """``function (path/to/file.py:123)`` -> ``function (file.py:123)``; native: ``[lib]``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    if name.startswith("0x"):
        return f"[{where.rsplit('/', 1)[-1] or 'native'}]"
    return f"{name} ({where.rsplit('/', 1)[-1]})" if where else name


def median(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan


@dataclass
class Side:
    """One server under test, with its own receiving processes and results."""

    target: Target
    pool: WorkerPool
    out: dict[str, Any] = field(default_factory=dict)
    teacher: SioConnection | None = None

    @property
    def name(self) -> str:
        return self.target.name


def alternate(sides: list[Side], i: int) -> list[Side]:
    """Rep i runs the servers in turn, starting with the other one each time (load drifts)."""
    return sides if i % 2 == 0 else sides[::-1]


async def measure(
    sides: list[Side], people: People, args: argparse.Namespace, deadline: float
) -> None:
    """Every step for every server; repetitions interleaved so both see the same machine."""
    compress = not args.no_deflate
    a, b = people.class_small, people.class_large
    steps = set(args.steps.split(","))

    def left() -> float:
        return deadline - time.monotonic()

    # Memory first, on fresh servers: RSS with none, then with 2,000 idle synced guardians.
    for side in sides if "notices" in steps else []:
        target, out, name = side.target, side.out, side.name
        side.teacher = await open_sender(target, people.teacher, compress)
        out["deflate_accepted"] = bool(side.teacher.deflate)
        warm = await open_sender(target, people.sender_large, compress)
        await send_ok(warm, "chat.send", chat(f"class:{b}:students"))
        await close_sender(warm)
        await asyncio.sleep(1.0)
        rss0 = target.rss()
        cpu0 = target.cpu()
        t = time.monotonic()
        async with Spy(target, args.profile, "connect-and-sync", 10):
            info = await side.pool.connect(
                target.url, [target.token(g) for g in people.guardians], compress
            )
        out["sync_retries"] = info["retries"]
        out["connect_2000_s"] = time.monotonic() - t
        out["connect_2000_cpu_s"] = target.cpu() - cpu0
        say(
            f"  [{name}] {info['connected']} guardians connected and synced in "
            f"{out['connect_2000_s']:.1f} s, {out['connect_2000_cpu_s']:.2f} server CPU-s "
            f"(permessage-deflate accepted on {info['deflate']})"
        )
        await asyncio.sleep(2.0)
        rss1 = target.rss()
        out["rss_idle_mb"] = rss0 / 1e6
        out["rss_2000_mb"] = rss1 / 1e6
        out["bytes_per_conn"] = (rss1 - rss0) / GUARDIANS
        say(
            f"  [{name}] memory: RSS {rss0 / 1e6:.1f} MB idle, {rss1 / 1e6:.1f} MB with "
            f"{GUARDIANS} idle connections: {out['bytes_per_conn'] / 1024:.1f} KiB per connection"
        )

    notices: dict[str, list[dict[str, Any]]] = {s.name: [] for s in sides}
    for i in range(args.reps if "notices" in steps else 0):
        for side in alternate(sides, i):
            assert side.teacher is not None
            async with Spy(side.target, args.profile if i == 0 else None, "notice-2000", 2):
                r = await notice_to_all(side.pool, side.teacher, b, GUARDIANS)
            notices[side.name].append(r)
            say(
                f"  [{side.name}] notice {i + 1}: ack {r['ack_s'] * 1000:.0f} ms, last of "
                f"{r['received']} guardians after {r['last_s'] * 1000:.0f} ms"
                + (f" ({r['missing']} MISSING)" if r["missing"] else "")
            )
    for side in sides if "notices" in steps else []:
        rs = notices[side.name]
        side.out["notice_2000_s"] = median([r["last_s"] for r in rs])
        side.out["notice_2000_ack_s"] = median([r["ack_s"] for r in rs])
        side.out["notice_missing"] = sum(r["missing"] for r in rs)
        gone = await disconnect_all(side)
        side.out["disconnect_2000_cpu_s"] = gone["cpu_s"]
        side.out["disconnect_2000_s"] = gone["s"]
        say(
            f"  [{side.name}] {GUARDIANS} guardians left: the server was busy {gone['s']:.1f} s, "
            f"{gone['cpu_s']:.2f} CPU-s"
        )

    # Throughput in rooms of 50 and 500; latency in the room of 50.
    for size, cid, sender_uid, receivers in (
        (SMALL, a, people.sender_small, people.small),
        (LARGE, b, people.sender_large, people.large),
    ):
        stream = f"class:{cid}:students"
        senders: dict[str, SioConnection] = {}
        try:
            for side in sides:
                info = await side.pool.connect(
                    side.target.url, [side.target.token(u) for u in receivers], compress
                )
                side.out["sync_retries"] = side.out.get("sync_retries", 0) + info["retries"]
                senders[side.name] = await open_sender(side.target, sender_uid, compress)
                for _ in range(20):  # warm-up
                    await send_ok(senders[side.name], "chat.send", chat(stream))
                await side.pool.wait_each(20, timeout=30)
            runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in sides}
            for i in range(args.reps if f"room{size}" in steps else 0):
                if left() < 60:
                    say("  out of time budget: fewer repetitions")
                    break
                for side in alternate(sides, i):
                    profile = args.profile if i == 0 else None
                    async with Spy(side.target, profile, f"chat-room-{size}", args.seconds):
                        r = await throughput(
                            side.target,
                            side.pool,
                            senders[side.name],
                            stream,
                            size,
                            args.seconds,
                            args.window,
                        )
                    runs[side.name].append(r)
                    say(
                        f"  [{side.name}] room of {size}, run {i + 1}: {r['sent']} messages, "
                        f"{r['deliveries_per_s']:,.0f} deliveries/s, {r['acks_per_s']:.0f} "
                        f"acks/s, {r['cpu_s_per_10k']:.3f} server CPU-s per 10k deliveries "
                        f"(server {r['server_cpu_util'] * 100:.0f}% of a core, clients "
                        f"{r['client_cpu_util'] * 100:.0f}%)"
                        + (f" ({r['missing']} MISSING)" if r["missing"] else "")
                    )
            for side in sides:
                rs, out = runs[side.name], side.out
                if not rs:
                    continue
                out[f"deliveries_per_s_{size}"] = median([r["deliveries_per_s"] for r in rs])
                out[f"cpu_s_per_10k_{size}"] = median([r["cpu_s_per_10k"] for r in rs])
                out[f"acks_per_s_{size}"] = median([r["acks_per_s"] for r in rs])
                out[f"server_cpu_util_{size}"] = median([r["server_cpu_util"] for r in rs])
                out[f"client_cpu_util_{size}"] = median([r["client_cpu_util"] for r in rs])
                out[f"missing_{size}"] = sum(r["missing"] for r in rs)
            if size == SMALL and "latency" in steps:
                lats: dict[str, list[dict[str, Any]]] = {s.name: [] for s in sides}
                for i in range(args.reps):
                    if left() < 60:
                        say("  out of time budget: fewer latency repetitions")
                        break
                    for side in alternate(sides, i):
                        lat = await latency(
                            side.pool,
                            senders[side.name],
                            stream,
                            size,
                            args.rate,
                            args.latency_seconds,
                        )
                        lats[side.name].append(lat)
                        say(
                            f"  [{side.name}] latency {i + 1}, {args.rate:.0f} msg/s into {size}: "
                            f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max "
                            f"{lat['max_ms']:.1f} ms over {lat['samples']} receipts (acks: p50 "
                            f"{lat['ack_p50_ms']:.1f} ms, p99 {lat['ack_p99_ms']:.1f} ms)"
                            + (f" ({lat['missing']} MISSING)" if lat["missing"] else "")
                        )
                for side in sides:
                    ls = lats[side.name]
                    for key in ("p50_ms", "p99_ms", "ack_p50_ms", "ack_p99_ms"):
                        side.out[key] = median([x[key] for x in ls])
                    side.out["latency_max_ms"] = max(x["max_ms"] for x in ls)
                    side.out["latency_missing"] = sum(x["missing"] for x in ls)
        finally:
            for sender in senders.values():
                await close_sender(sender)
            for side in sides:
                await side.pool.close()

    if args.big:
        for side in sides:
            await measure_big(side, people, args, compress, left)
    for side in sides:
        if side.teacher is not None:
            await close_sender(side.teacher)
            side.teacher = None


async def measure_big(
    side: Side, people: People, args: argparse.Namespace, compress: bool, left: Any
) -> None:
    """--big: a notice to 10,000 connected guardians, and Homeroom's receipts roll-up."""
    target, out, name, c = side.target, side.out, side.name, people.class_big
    if side.teacher is None:
        side.teacher = await open_sender(target, people.teacher, compress)
    if left() < 120:
        say(f"  [{name}] out of time budget: skipping the 10,000 guardians")
        return
    t = time.monotonic()
    cpu0 = target.cpu()
    info = await side.pool.connect(
        target.url, [target.token(g) for g in people.big_guardians], compress
    )
    out["sync_retries"] += info["retries"]
    out["connect_10000_s"] = time.monotonic() - t
    out["connect_10000_cpu_s"] = target.cpu() - cpu0
    say(
        f"  [{name}] {info['connected']} guardians connected and synced in "
        f"{out['connect_10000_s']:.1f} s, {out['connect_10000_cpu_s']:.2f} server CPU-s"
    )
    await asyncio.sleep(1.0)
    big = []
    for i in range(2):
        async with Spy(target, args.profile if i == 0 else None, "notice-10000", 5):
            r = await notice_to_all(side.pool, side.teacher, c, BIG_GUARDIANS)
        big.append(r)
        say(
            f"  [{name}] notice to {BIG_GUARDIANS}: ack {r['ack_s'] * 1000:.0f} ms, "
            f"last after {r['last_s'] * 1000:.0f} ms"
            + (f" ({r['missing']} MISSING)" if r["missing"] else "")
        )
    out["notice_10000_s"] = median([r["last_s"] for r in big])
    out["notice_missing"] += sum(r["missing"] for r in big)
    if name == "homeroom":
        times = []
        for _ in range(3):
            t = time.monotonic()
            ack = await send_ok(
                side.teacher, "notice.receipts", {"notice_id": big[-1]["notice_id"]}
            )
            times.append(time.monotonic() - t)
        if ack["counts"]["recipients"] != BIG_GUARDIANS:
            raise RuntimeError(f"roll-up counts {ack['counts']}")
        out["rollup_ms"] = median(times) * 1000
        say(
            f"  [{name}] receipts roll-up for {BIG_GUARDIANS} guardians: "
            f"{out['rollup_ms']:.0f} ms (median of 3)"
        )
    gone = await disconnect_all(side)
    out["disconnect_10000_cpu_s"] = gone["cpu_s"]
    out["disconnect_10000_s"] = gone["s"]
    say(
        f"  [{name}] {BIG_GUARDIANS} guardians left: the server was busy {gone['s']:.1f} s, "
        f"{gone['cpu_s']:.2f} CPU-s"
    )


async def disconnect_all(side: Side, limit_s: float = 300.0) -> dict[str, float]:
    """Close every receiving connection; how long and how much CPU until the server is idle."""
    target = side.target
    cpu0 = target.cpu()
    t0 = time.monotonic()
    await side.pool.close()
    last_cpu, last_busy, quiet = target.cpu(), time.monotonic(), 0
    while time.monotonic() - t0 < limit_s and quiet < 4:
        await asyncio.sleep(0.25)
        now = target.cpu()
        if now - last_cpu <= 0.02:  # under 8% of a core for a quarter of a second
            quiet += 1
        else:
            quiet, last_busy = 0, time.monotonic()
        last_cpu = now
    return {"cpu_s": last_cpu - cpu0, "s": last_busy - t0}


# --- main ---------------------------------------------------------------------------------------


def disk_sync_ms(directory: Path, n: int = 100) -> dict[str, float]:
    """What one durable SQLite commit costs on this disk now (WAL, synchronous=FULL): every
    acknowledged message waits for one when the sender waits for each ack."""
    import sqlite3

    path = directory / f"sync-probe-{uuid.uuid4().hex[:8]}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (x TEXT)")
        took = []
        for _ in range(n):
            t = time.perf_counter()
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t VALUES (?)", ("x" * 100,))
            conn.execute("COMMIT")
            took.append((time.perf_counter() - t) * 1000)
    finally:
        conn.close()
    took.sort()
    return {"p50": statistics.median(took), "p90": took[int(n * 0.9)], "max": took[-1]}


def ratio(x: float | None, y: float | None) -> float | None:
    if x is None or y is None or not y or math.isnan(x) or math.isnan(y):
        return None
    return x / y


def rounded(v: Any) -> Any:
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return round(v, 4) if abs(v) < 100 else round(v, 1)
    if isinstance(v, dict):
        return {k: rounded(x) for k, x in v.items()}
    return v


async def run(args: argparse.Namespace, started: Started, tmp: Path) -> dict[str, Any]:
    begun = time.monotonic()
    deadline = begun + budget(args)
    node_version = ensure_node()
    people = People.make(args.big)
    load0 = os.getloadavg()
    say(
        f"chat fan-out benchmark: {os.cpu_count()} cores, load average {load0[0]:.2f}, "
        f"python {sys.version.split()[0]}, node {node_version}"
    )
    sync0 = disk_sync_ms(tmp)
    say(
        f"disk: a durable SQLite commit takes {sync0['p50']:.2f} ms (median), "
        f"{sync0['p90']:.2f} ms (p90), {sync0['max']:.1f} ms (max) right now"
    )
    sides: list[Side] = []
    pools: list[WorkerPool] = []
    try:
        order = args.order.split(",")
        if args.baseline and "baseline" not in order:
            order.insert(1, "baseline")
        for which in order:
            pool = await WorkerPool.start(args.workers, tmp / f"workers-{which}.log")
            pools.append(pool)
            if which in ("homeroom", "baseline"):
                t = time.monotonic()
                root = Path(args.baseline) if which == "baseline" else ROOT
                target, loop = start_homeroom(started, tmp, people, which, root)
                say(
                    f"{which}: serving on {target.url} (pid {target.pid}, {loop}, from {root}), "
                    f"seeded and started in {time.monotonic() - t:.1f} s"
                )
            else:
                target = start_reference(started, tmp, people)
                say(f"reference: socket.io 4.8 on {target.url} (pid {target.pid})")
            sides.append(Side(target, pool))
        await measure(sides, people, args, deadline)
    finally:
        for side in sides:
            if side.teacher is not None:
                with contextlib.suppress(Exception):
                    await close_sender(side.teacher)
        for pool in pools:
            await pool.stop()
        started.stop_all()
    results = {side.name: side.out for side in sides}
    h, r = results.get("homeroom", {}), results.get("reference", {})
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "load_average_at_start": round(load0[0], 2),
        "window": args.window,
        "disk_sync_ms_at_start": sync0,
        "disk_sync_ms_at_end": disk_sync_ms(tmp),
        "ratio_deliveries": ratio(h.get("deliveries_per_s_500"), r.get("deliveries_per_s_500")),
        "ratio_cpu": ratio(h.get("cpu_s_per_10k_500"), r.get("cpu_s_per_10k_500")),
        "ratio_deliveries_50": ratio(h.get("deliveries_per_s_50"), r.get("deliveries_per_s_50")),
        "ratio_cpu_50": ratio(h.get("cpu_s_per_10k_50"), r.get("cpu_s_per_10k_50")),
        "p99_ms": h.get("p99_ms"),
        "ref_p99_ms": r.get("p99_ms"),
        "p50_ms": h.get("p50_ms"),
        "ref_p50_ms": r.get("p50_ms"),
        "notice_2000_s": h.get("notice_2000_s"),
        "ref_notice_2000_s": r.get("notice_2000_s"),
        "ratio_memory": ratio(h.get("bytes_per_conn"), r.get("bytes_per_conn")),
    }
    for key in (
        "deliveries_per_s_50",
        "deliveries_per_s_500",
        "cpu_s_per_10k_50",
        "cpu_s_per_10k_500",
        "acks_per_s_50",
        "acks_per_s_500",
        "server_cpu_util_500",
        "client_cpu_util_500",
        "latency_max_ms",
        "ack_p50_ms",
        "ack_p99_ms",
        "bytes_per_conn",
        "rss_idle_mb",
        "rss_2000_mb",
        "notice_2000_ack_s",
        "connect_2000_s",
        "connect_2000_cpu_s",
        "disconnect_2000_s",
        "disconnect_2000_cpu_s",
        "sync_retries",
        "deflate_accepted",
    ):
        out[key] = h.get(key)
        out["ref_" + key] = r.get(key)
    if args.big:
        out["notice_10000_s"] = h.get("notice_10000_s")
        out["ref_notice_10000_s"] = r.get("notice_10000_s")
        out["rollup_ms"] = h.get("rollup_ms")
        for key in (
            "connect_10000_s",
            "connect_10000_cpu_s",
            "disconnect_10000_s",
            "disconnect_10000_cpu_s",
        ):
            out[key] = h.get(key)
            out["ref_" + key] = r.get(key)
    out["missing"] = sum(
        int(v)
        for res in (h, r)
        for k, v in res.items()
        if k.startswith(("missing", "notice_missing", "latency_missing")) and v
    )
    if "baseline" in results:
        # The same code before a change (--baseline), measured in the same run: this code's
        # figures over the baseline's (a ratio under 1 for deliveries: slower than before).
        base = results["baseline"]
        out["baseline"] = {k: base.get(k) for k in BASELINE_KEYS}
        out["vs_baseline"] = {k: ratio(h.get(k), base.get(k)) for k in BASELINE_KEYS}
    out["targets"] = targets(out)
    out["load_average_at_end"] = round(os.getloadavg()[0], 2)
    out["elapsed_s"] = time.monotonic() - begun
    return rounded(out)


BASELINE_KEYS = (
    "deliveries_per_s_50",
    "deliveries_per_s_500",
    "acks_per_s_50",
    "acks_per_s_500",
    "cpu_s_per_10k_50",
    "cpu_s_per_10k_500",
    "p50_ms",
    "p99_ms",
    "ack_p50_ms",
    "ack_p99_ms",
    "notice_2000_s",
    "notice_2000_ack_s",
)


def targets(out: dict[str, Any]) -> dict[str, bool]:
    """Which targets of the core issue and of the fan-out issue this run met."""

    def within(key: str, test: Any) -> bool:
        value = out.get(key)
        return value is not None and bool(test(value))

    ref_p99 = out.get("ref_p99_ms")
    met = {
        "p99_ms_under_20": within("p99_ms", lambda v: v < 20),
        "notice_2000_s_under_1": within("notice_2000_s", lambda v: v < 1),
        "ratio_memory_at_most_1.5": within("ratio_memory", lambda v: v <= 1.5),
        "ratio_deliveries_at_least_1": within("ratio_deliveries", lambda v: v >= 1),
        "ratio_cpu_at_most_1": within("ratio_cpu", lambda v: v <= 1),
        "p99_at_most_1.5x_ref": ref_p99 is not None
        and within("p99_ms", lambda v: v <= 1.5 * ref_p99),
    }
    if "rollup_ms" in out:
        met["notice_10000_s_under_1"] = within("notice_10000_s", lambda v: v < 1)
        met["rollup_ms_under_50"] = within("rollup_ms", lambda v: v < 50)
    return met


def budget(args: argparse.Namespace) -> float:
    return BIG_BUDGET_S if args.big else TOTAL_BUDGET_S


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a throughput run")
    parser.add_argument("--rate", type=float, default=50.0, help="messages/s for latency")
    parser.add_argument(
        "--window",
        type=int,
        default=1,
        help="throughput: messages the sender keeps unacknowledged (1: wait for each ack)",
    )
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--big", action="store_true", help="also notices to 10,000 guardians")
    parser.add_argument(
        "--no-deflate", action="store_true", help="clients do not offer permessage-deflate"
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy the Homeroom server during the first runs"
    )
    parser.add_argument(
        "--steps",
        default="notices,room50,room500,latency",
        help="which steps to run (comma-separated; memory comes with notices)",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run Homeroom from this source tree (e.g. `git archive <commit>` unpacked), "
        "side by side: figures before and after a change from the same run",
    )
    parser.add_argument("--order", default="homeroom,reference", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args()
    if args.baseline:
        args.baseline = str(Path(args.baseline).resolve())
        if not (Path(args.baseline) / "realtime" / "cli.py").is_file():
            parser.error(f"--baseline {args.baseline}: not a Homeroom source tree")

    started = Started()
    tmp = Path(tempfile.mkdtemp(prefix="homeroom-bench-"))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        async with asyncio.timeout(budget(args) + 20):
            return await run(args, started, tmp)

    try:
        result = asyncio.run(guarded())
    except BaseException as exc:
        say(f"benchmark failed: {type(exc).__name__}: {exc}")
        for log in sorted(tmp.glob("*.log")):
            say(f"--- {log.name} (last lines)\n{tail(log)}")
        raise
    finally:
        started.stop_all()
        if args.keep:
            say(f"logs and database kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    say(
        f"homeroom/reference: deliveries {result['ratio_deliveries']}x, CPU per delivery "
        f"{result['ratio_cpu']}x, memory per connection {result['ratio_memory']}x; "
        f"p99 {result['p99_ms']} ms; notice to 2,000 in {result['notice_2000_s']} s"
    )
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
