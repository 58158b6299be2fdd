"""A process that holds many receiving Socket.IO connections for bench/chat_fanout.py.

It takes one JSON command per line on stdin and answers one JSON line on stdout, so the
receivers' CPU is spent outside the server's process (and outside the orchestrator's). Times are
``time.monotonic()``, which is one clock for every process on the machine.

Commands: ``connect`` (tokens, sync or not), ``reset`` (zero the counters, choose whether to
record latencies), ``stats``, ``wait`` (until N events arrived or a timeout), ``close``, ``exit``.
For bench/cluster.py, clients that follow their streams by the protocol's rules and reconnect
(bench/syncing_client.py): ``follow`` (tokens, the addresses in turn or through a load
balancer's rules, one per process: ``balancer``), ``follow_stats``
(``follow_count``: only how many have reconnected and synced),
``follow_check`` (which acknowledged messages each never applied, or applied twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import syncing_client
from sioclient import SioConnection, new_session, stamp_of


class Worker:
    def __init__(self) -> None:
        self.conns: list[SioConnection] = []
        self.session = None
        self.count = 0
        self.first_t = 0.0
        self.last_t = 0.0
        self.latency = False
        self.lats: list[float] = []
        self.changed = asyncio.Event()
        self.followers: list[syncing_client.Follower] = []
        self.balancer: syncing_client.Balancer | None = None
        self.lags: list[float] = []

    async def watch_lag(self, period: float = 0.05) -> None:
        """How late the loop wakes from a sleep of ``period``: this process's own backlog."""
        while True:
            t = time.monotonic()
            await asyncio.sleep(period)
            self.lags.append(max(0.0, time.monotonic() - t - period))

    def on_event(self, _conn: SioConnection, frame: str) -> None:
        now = time.monotonic()
        if not frame.startswith('42["event"'):
            return
        self.count += 1
        if self.count == 1:
            self.first_t = now
        self.last_t = now
        if self.latency:
            sent = stamp_of(frame)
            if sent is not None:
                self.lats.append(now - sent)
        self.changed.set()

    async def connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if self.session is None:
            self.session = new_session()
        url = cmd["url"]
        sync = bool(cmd.get("sync", True))
        compress = bool(cmd.get("compress", True))
        sem = asyncio.Semaphore(int(cmd.get("concurrency", 50)))
        failures: list[str] = []
        retries: list[str] = []
        started = time.monotonic()

        async def attempt(token: str) -> SioConnection:
            conn = SioConnection(
                self.session, url, token, compress=compress, on_event=self.on_event
            )
            try:
                await conn.connect()
                if sync:
                    ack = await conn.call("sync", {"cursors": {}}, timeout=60)
                    if not isinstance(ack, dict) or not ack.get("ok"):
                        raise RuntimeError(f"sync refused: {ack!r:.200}")
                return conn
            except BaseException:
                await conn.close()
                raise

        async def one(token: str) -> SioConnection | None:
            # A failed connect or refused sync is tried again (as a real client would, after a
            # pause); every retry is counted and reported.
            async with sem:
                for n in range(4):
                    try:
                        return await attempt(token)
                    except Exception as exc:
                        error = f"{type(exc).__name__}: {exc}"
                        if n == 3:
                            failures.append(error)
                            return None
                        retries.append(error[:200])
                        await asyncio.sleep(1.0 + n)
                return None

        results = await asyncio.gather(*(one(t) for t in cmd["tokens"]))
        made = [c for c in results if c is not None]
        self.conns.extend(made)
        return {
            "connected": len(made),
            "failed": len(failures),
            "first_error": failures[0][:300] if failures else None,
            "retries": len(retries),
            "first_retry": retries[0] if retries else None,
            "deflate": sum(1 for c in made if c.deflate),
            "seconds": round(time.monotonic() - started, 3),
        }

    def stats(self, with_lats: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.count,
            "first_t": self.first_t,
            "last_t": self.last_t,
            "open": sum(1 for c in self.conns if not c.closed.is_set()),
        }
        if with_lats:
            out["lats"] = self.lats
        return out

    async def wait(self, n: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while self.count < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))
        return self.stats(with_lats=False)

    async def follow(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if self.session is None:
            self.session = new_session()
        session = self.session
        sem = asyncio.Semaphore(int(cmd.get("concurrency", 50)))
        started = time.monotonic()
        failures: list[str] = []

        if cmd.get("balancer") and self.balancer is None:
            self.balancer = syncing_client.Balancer(list(cmd["urls"]))
        balancer = self.balancer if cmd.get("balancer") else None

        async def one(token: str) -> None:
            f = syncing_client.Follower(session, token, list(cmd["urls"]), balancer)
            async with sem:
                try:
                    await f.start()
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}"[:300])
                    return
            self.followers.append(f)

        await asyncio.gather(*(one(t) for t in cmd["tokens"]))
        return {
            "connected": len(cmd["tokens"]) - len(failures),
            "failed": len(failures),
            "first_error": failures[0] if failures else None,
            "retries": sum(f.failed_attempts for f in self.followers),
            "first_retry": next((f.last_error for f in self.followers if f.last_error), None),
            "seconds": round(time.monotonic() - started, 3),
        }

    async def close(self) -> dict[str, Any]:
        fols, self.followers = self.followers, []
        await asyncio.gather(*(f.close() for f in fols))
        conns, self.conns = self.conns, []
        sem = asyncio.Semaphore(200)

        async def one(c: SioConnection) -> None:
            async with sem:
                await c.close()

        await asyncio.gather(*(one(c) for c in conns))
        return {"closed": len(conns)}

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.get("cmd")
        if op == "connect":
            return await self.connect(cmd)
        if op == "reset":
            self.count = 0
            self.first_t = self.last_t = 0.0
            self.lats = []
            self.latency = bool(cmd.get("latency", False))
            return {}
        if op == "stats":
            return self.stats()
        if op == "wait":
            return await self.wait(int(cmd["n"]), float(cmd.get("timeout", 10)))
        if op == "close":
            return await self.close()
        if op == "follow":
            return await self.follow(cmd)
        if op == "follow_count":
            since = float(cmd.get("since", 0.0))
            n = sum(1 for f in self.followers if f.synced_at > since and f.reconnects)
            return {"reconnected_synced": n}
        if op == "follow_stats":
            out = syncing_client.stats(self.followers, float(cmd.get("since", 0.0)))
            if self.balancer is not None:
                out["landed"] = dict(self.balancer.landed)
            return out
        if op == "follow_check":
            return syncing_client.check(self.followers, list(cmd["acked"]))
        if op == "cpu":
            t = os.times()
            return {"cpu_s": t.user + t.system}
        if op == "lag":  # how late this process's event loop ran a timer, since the last ask
            lags, self.lags = self.lags, []
            return {"n": len(lags), "max_s": max(lags, default=0.0), "sum_s": sum(lags)}
        raise ValueError(f"unknown command {op!r}")


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = Worker()
    watch = loop.create_task(worker.watch_lag())
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = json.loads(line)
            if cmd.get("cmd") == "exit":
                break
            try:
                reply = {"ok": True, **(await worker.handle(cmd))}
            except Exception as exc:
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        watch.cancel()
        await worker.close()
        if worker.session is not None:
            await worker.session.close()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
