"""A client that follows its streams by the protocol's rules and reconnects, for bench/cluster.py.

It does what docs/protocol.md §3.4 asks of a client, no more: a cursor per stream, events at or
below the cursor dropped, a gap answered by a ``sync`` with the cursors (the gapped event comes
back in its ack), ``resync`` answered by a ``sync``, and after its connection is lost a
reconnection (to the next address it was given, as a load balancer would route it away from a
dead node) after a randomized delay like the web app's (0.5 s ± 40 %, doubling up to 4 s), then
a ``sync`` with its cursors. A server busy with other new connections (HTTP 503, Retry-After)
or whose database is busy (``unavailable`` with ``retry_after_s``) is asked again after the
wait it named, times a random factor of 0.5 to 1.5. Every ``chat.message`` it applies is
counted by ``client_id``, so the benchmark can tell lost messages (never applied) from
duplicated ones (applied twice: stored twice under two numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from typing import Any

import aiohttp
from sioclient import Busy, SioConnection

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 4.0
RANDOMIZATION = 0.4
# deploy/nginx/homeroom.conf: a node that refused a connection is left out this long.
FAIL_TIMEOUT_S = 10.0


class Balancer:
    """What the shipped load balancer does with a new connection (deploy/nginx/homeroom.conf,
    one per load process): ``least_conn`` among the nodes not left out; a node that refused a
    connection (nothing listening) is left out for ``FAIL_TIMEOUT_S`` (``max_fails=1
    fail_timeout=10s``) and the request goes on to the next node (``proxy_next_upstream
    error``) without the client seeing the failure. A slow answer is not a failure to nginx
    (``proxy_read_timeout 75s``), so a client's own time-out leaves the node in."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = list(urls)
        self.down_until = dict.fromkeys(self.urls, 0.0)
        self.conns: Counter[str] = Counter()  # connections open or opening, per node
        self.landed: Counter[str] = Counter()  # reconnections that got in, per node

    def pick(self, tried: set[str]) -> str | None:
        now = time.monotonic()
        up = [u for u in self.urls if u not in tried and self.down_until[u] <= now]
        if not up:
            return None  # nginx: 502, no live upstream (a failed attempt to the client)
        least = min(self.conns[u] for u in up)
        return random.choice([u for u in up if self.conns[u] == least])

    def refused(self, url: str) -> None:
        self.down_until[url] = time.monotonic() + FAIL_TIMEOUT_S


class Follower:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        token: str,
        urls: list[str],
        balancer: Balancer | None = None,
    ) -> None:
        self.session = session
        self.token = token
        # The first is where it starts; then the others in turn, or as ``balancer`` picks.
        self.urls = urls
        self.balancer = balancer
        self.url_index = 0
        self.cursors: dict[str, int] = {}
        self.ahead: dict[str, int] = {}  # the highest seq seen past a gap, per stream
        self.applied: Counter[str] = Counter()  # chat.message client_id -> times applied
        self.conn: SioConnection | None = None
        self.reconnects = 0
        self.timing = (0.0, 0.0)  # the last connection: seconds to connect, then to sync
        self.failed_attempts = 0
        self.busy_refusals = 0  # connects refused with 503 (admission control), then retried
        self.busy_syncs = 0  # syncs answered unavailable (busy), then retried
        self.last_error = ""
        # Failed reconnection attempts after a loss, by kind and address (0: the first).
        self.failures: Counter[str] = Counter()
        self.synced_at = 0.0  # monotonic time of the last catch-up sync completed
        self.back_at = 0.0  # ... of the catch-up that ended the last reconnection
        self.lost_at = 0.0
        # Where the last reconnection's time went (seconds, from the loss until back): asleep
        # (the back-off and Retry-After waits), in attempts that failed, then the attempt that
        # succeeded: its HTTP upgrade (with any wait in the server's admission queue), the
        # Engine.IO open packet, the Socket.IO connect, the catch-up ``sync``.
        self.spent: dict[str, float] = {}
        self.closing = False
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_again = False
        self._runner: asyncio.Task[None] | None = None

    # --- connecting -------------------------------------------------------------------------

    async def start(self, attempts: int = 4) -> None:
        """Connect to the first address and sync (tried again after a pause when refused, as
        a client does); then keep the connection up."""
        n = 0
        while True:
            try:
                await self._connect(self.urls[0])
                break
            except Busy as exc:  # not a failed attempt: asked to come back later
                self.busy_refusals += 1
                await asyncio.sleep(exc.retry_after_s * random.uniform(0.5, 1.5))
                continue
            except Exception as exc:
                self.failed_attempts += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                if n == attempts - 1:
                    raise
                await asyncio.sleep(1.0 + n)
                n += 1
        self._runner = asyncio.get_running_loop().create_task(self._keep_up())

    async def _through_balancer(self) -> None:
        """One attempt through the balancer: the nodes it picks in turn until one answers (a
        refusal there is the balancer's, not the client's, to deal with)."""
        b = self.balancer
        assert b is not None
        tried: set[str] = set()
        while True:
            url = b.pick(tried)
            if url is None:
                raise aiohttp.ClientConnectionError("no live upstream (every node left out)")
            tried.add(url)
            self.url_index = self.urls.index(url)
            b.conns[url] += 1
            try:
                await self._connect(url)
            except aiohttp.ClientConnectorError:
                b.conns[url] -= 1
                b.refused(url)
                self.failures[f"next_upstream@{self.url_index}"] += 1
                continue
            except BaseException:
                b.conns[url] -= 1
                raise
            b.landed[url] += 1
            conn = self.conn
            assert conn is not None
            asyncio.get_running_loop().create_task(_uncount(b, url, conn))
            return

    async def _connect(self, url: str) -> None:
        conn = SioConnection(self.session, url, self.token, compress=False, on_event=self._on)
        try:
            t0 = time.monotonic()
            await conn.connect()
            t1 = time.monotonic()
            self.conn = conn
            await self._sync()
            t2 = time.monotonic()
            self.timing = (t1 - t0, t2 - t1)
            ph = conn.phases
            self.spent.update(
                upgrade=ph["upgraded"] - ph["started"],
                open=ph["opened"] - ph["upgraded"],
                connect=ph["connected"] - ph["opened"],
                sync=t2 - t1,
            )
        except BaseException:
            self.conn = None
            await conn.close()
            raise

    async def _keep_up(self) -> None:
        while not self.closing:
            assert self.conn is not None
            await self.conn.closed.wait()
            if self.closing:
                return
            self.lost_at = time.monotonic()
            self.spent = {"asleep": 0.0, "failed": 0.0, "busy": 0.0}
            delay = FIRST_DELAY_S
            wait = delay * random.uniform(1 - RANDOMIZATION, 1 + RANDOMIZATION)
            same = False
            while not self.closing:
                t = time.monotonic()
                await asyncio.sleep(wait)
                t0 = time.monotonic()
                self.spent["asleep"] += t0 - t
                if not same and self.balancer is None:
                    self.url_index = (self.url_index + 1) % len(self.urls)
                try:
                    if self.balancer is not None:
                        await self._through_balancer()
                    else:
                        await self._connect(self.urls[self.url_index])
                except Busy as exc:
                    # The same address again, after the wait it asked for, with jitter.
                    self.busy_refusals += 1
                    self.spent["busy"] += time.monotonic() - t0
                    self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                    wait, same = exc.retry_after_s * random.uniform(0.5, 1.5), True
                    continue
                except Exception as exc:
                    self.spent["failed"] += time.monotonic() - t0
                    self.failed_attempts += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                    self.failures[f"{_kind(exc)}@{self.url_index}"] += 1
                    delay = min(delay * 2, MAX_DELAY_S)
                    wait = delay * random.uniform(1 - RANDOMIZATION, 1 + RANDOMIZATION)
                    same = False
                    continue
                self.reconnects += 1
                self.back_at = self.synced_at
                break

    async def close(self) -> None:
        self.closing = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        if self.conn is not None:
            await self.conn.close()

    # --- events -----------------------------------------------------------------------------

    def _on(self, _conn: SioConnection, frame: str) -> None:
        name, data = json.loads(frame[2:])[:2]
        if name == "event":
            if self._apply(data):
                self._want_sync()
        elif name == "resync":
            self._want_sync()

    def _apply(self, ev: dict[str, Any]) -> bool:
        """Apply one event by the rules; True if it shows a gap (a sync is needed)."""
        stream, seq = ev["stream"], ev["seq"]
        cursor = self.cursors.get(stream)
        if cursor is None or seq <= cursor:
            return False  # not followed yet (the next sync sets it), or already applied
        if seq > cursor + 1:
            self.ahead[stream] = max(seq, self.ahead.get(stream, 0))
            return True
        self.cursors[stream] = seq
        if ev.get("type") == "chat.message":
            self.applied[ev["data"]["client_id"]] += 1
        return False

    def _want_sync(self) -> None:
        if self._sync_task is not None and not self._sync_task.done():
            self._sync_again = True
            return
        self._sync_task = asyncio.get_running_loop().create_task(self._sync_quietly())

    async def _sync_quietly(self) -> None:
        with contextlib.suppress(Exception):  # the connection went: the reconnection syncs
            await self._sync()

    async def _sync(self) -> None:
        """``sync`` with the cursors until no page is left and no gap is open."""
        while True:
            self._sync_again = False
            assert self.conn is not None
            ack = await self.conn.call("sync", {"cursors": self.cursors}, timeout=60)
            if not isinstance(ack, dict) or not ack.get("ok"):
                wait = _retry_after(ack)
                if wait is None or self.busy_syncs > 20:
                    raise RuntimeError(f"sync refused: {ack!r:.200}")
                self.busy_syncs += 1
                await asyncio.sleep(wait * random.uniform(0.5, 1.5))
                continue
            for ev in ack["events"]:
                self._apply(ev)
            for st in ack["streams"]:
                self.cursors.setdefault(st["stream"], st["last_seq"])
            gaps = any(seq > self.cursors.get(s, 0) for s, seq in self.ahead.items())
            if not (ack["more"] or gaps or self._sync_again):
                break
        self.ahead.clear()
        self.synced_at = time.monotonic()


async def _uncount(b: Balancer, url: str, conn: SioConnection) -> None:
    await conn.closed.wait()
    b.conns[url] -= 1


def _kind(exc: BaseException) -> str:
    """A short name for why an attempt failed: refused (nothing listening), timeout, ..."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "refused"
    return type(exc).__name__


def _retry_after(ack: Any) -> float | None:
    """The wait an ``unavailable`` answer asks for (``retry_after_s``), else None."""
    if not isinstance(ack, dict):
        return None
    error = ack.get("error") or {}
    if error.get("code") != "unavailable":
        return None
    return float((error.get("details") or {}).get("retry_after_s", 2))


def check(followers: list[Follower], acked: list[str]) -> dict[str, Any]:
    """How many of the acknowledged messages each follower that is connected again never
    applied, or applied twice. One not yet connected and caught up again is counted apart
    (``not_back``): what it lacks it gets with its catch-up ``sync``, and is not lost."""
    missing = dups = short = 0
    missing_ids: set[str] = set()
    back = [
        f
        for f in followers
        if f.conn is not None and not f.conn.closed.is_set() and f.synced_at >= f.lost_at
    ]
    for f in back:
        gone = [c for c in acked if c not in f.applied]
        if gone:
            short += 1
            missing += len(gone)
            missing_ids.update(gone)
        dups += sum(n - 1 for n in f.applied.values() if n > 1)
    return {
        "followers": len(followers),
        "not_back": len(followers) - len(back),
        "followers_missing": short,
        "missing": missing,
        "missing_ids": sorted(missing_ids),
        "duplicates": dups,
    }


def stats(followers: list[Follower], since: float) -> dict[str, Any]:
    """Who is connected, and who has reconnected and synced since ``since``."""
    up = [f for f in followers if f.conn is not None and not f.conn.closed.is_set()]
    synced = [f.synced_at for f in followers if f.synced_at > since and f.reconnects]
    back = [f.back_at for f in followers if f.back_at > since]
    lost = sorted(f.lost_at - since for f in followers if f.lost_at > since)
    errors = [f.last_error for f in followers if f.last_error]
    # Client-seconds of the reconnections since ``since``, by phase (sums over the clients).
    spent: Counter[str] = Counter()
    for f in followers:
        if f.back_at > since:
            spent.update(f.spent)
    return {
        "spent": dict(spent),
        "lost_s": [lost[0], lost[len(lost) // 2], lost[-1]] if lost else None,
        "synced_s": sorted(t - since for t in synced)[:: max(1, len(synced) // 10)],
        # When each was back (its reconnection's catch-up; a later sync, after a gap or a
        # ``resync``, does not move it), every tenth.
        "back_s": sorted(t - since for t in back)[:: max(1, len(back) // 10)],
        "connect_s": sorted(f.timing[0] for f in followers)[:: max(1, len(followers) // 5)],
        "sync_s": sorted(f.timing[1] for f in followers)[:: max(1, len(followers) // 5)],
        "failed_attempts": sum(f.failed_attempts for f in followers),
        "failures": dict(sum((f.failures for f in followers), Counter())),
        "busy_refusals": sum(f.busy_refusals for f in followers),
        "busy_syncs": sum(f.busy_syncs for f in followers),
        "last_error": errors[-1] if errors else None,
        "followers": len(followers),
        "connected": len(up),
        "reconnected_synced": len(synced),
        "last_synced_t": max(synced) if synced else 0.0,
        "reconnects": sum(f.reconnects for f in followers),
    }
