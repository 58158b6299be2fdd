"""What the stream follower costs a node (realtime/cluster/follower.py).

Run from the repository root::

    .venv/bin/python bench/follower.py              # about 20 s
    .venv/bin/python bench/follower.py --streams 20000

A fresh PostgreSQL database (the machine's, on 127.0.0.1:5432) gets ``--streams`` streams with
a few events each; one node's follower follows all of them (as a node whose connections follow
that many streams: every connected person follows their own ``user:`` stream plus their
classes'). It measures one poll when nothing is lost (the steady state: the bus brought
everything) and a poll that recovers events a dead node never published in ``--lost`` streams:
wall time and this process's CPU per poll, store queries per poll. At the default period of 1 s
the per-poll figures are per second. Human-readable lines, then one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from realtime.cluster.follower import Follower
from realtime.cluster.positions import StreamPositions
from realtime.store import open_store
from realtime.store.schema import events, streams

PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q", "-c"]


async def measure(url: str, n_streams: int, lost: int, rounds: int) -> dict[str, Any]:
    store = open_store(url)
    await store.migrate()
    keys = [f"user:{i}" for i in range(1, n_streams + 1)]
    async with store.transaction() as conn:
        for i in range(0, n_streams, 5000):
            chunk = keys[i : i + 5000]
            await conn.execute(insert(streams), [{"key": k, "last_seq": 3} for k in chunk])
            await conn.execute(
                insert(events),
                [
                    {"stream": k, "seq": s, "type": "t", "at": 0.0, "data": {}, "staff_data": None}
                    for k in chunk
                    for s in (1, 2, 3)
                ],
            )
    positions = StreamPositions()
    delivered: list[int] = []

    async def deliver(evs: list[dict[str, Any]], recovered: bool) -> None:
        for e in evs:
            positions.first_delivery(e["stream"], e["seq"], recovered=recovered)
        delivered.append(len(evs))

    follower = Follower(store, positions, deliver, interval_s=1.0, page=500)
    for k in keys:
        positions.follow(k)
    for _ in range(2):  # not known on the first look; the second starts each at its end
        await follower.poll()

    async def timed(n: int) -> tuple[float, float, float]:
        q0 = follower.queries
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            await follower.poll()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        return wall / n * 1000, cpu / n * 1000, (follower.queries - q0) / n

    steady_ms, steady_cpu_ms, steady_q = await timed(rounds)
    # A dead node committed one event in each of `lost` streams and published none.
    async with store.transaction() as conn:
        for k in keys[:lost]:
            await store.append(conn, k, "t", {})
    store.publish_to(None)
    await follower.poll()  # seen behind once
    q0 = follower.queries
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await follower.poll()  # still behind: read and delivered
    recover_ms = (time.perf_counter() - wall0) * 1000
    recover_cpu_ms = (time.process_time() - cpu0) * 1000
    recover_q = follower.queries - q0
    assert positions.recovered == lost, positions.recovered
    await store.close()
    return {
        "streams": n_streams,
        "steady_poll_ms": round(steady_ms, 2),
        "steady_poll_cpu_ms": round(steady_cpu_ms, 2),
        "steady_queries_per_poll": steady_q,
        "lost_streams": lost,
        "recover_poll_ms": round(recover_ms, 2),
        "recover_poll_cpu_ms": round(recover_cpu_ms, 2),
        "recover_queries": recover_q,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--lost", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    name = "homeroom_bench_" + uuid.uuid4().hex[:10]
    subprocess.run([*PSQL, f"CREATE DATABASE {name}"], check=True, capture_output=True)
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        out = asyncio.run(measure(url, args.streams, args.lost, args.rounds))
    finally:
        subprocess.run([*PSQL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)
    out["load"] = os.getloadavg()[0]
    print(
        f"{out['streams']} followed streams: a poll with nothing lost takes "
        f"{out['steady_poll_ms']} ms ({out['steady_poll_cpu_ms']} ms of this process's CPU, "
        f"{out['steady_queries_per_poll']} queries); recovering {out['lost_streams']} lost "
        f"events: {out['recover_poll_ms']} ms, {out['recover_queries']} queries "
        f"(load average {out['load']:.1f})"
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
