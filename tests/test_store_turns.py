"""SQLite's statements run on the event loop's thread: requests that start together must not
run their transactions back to back in one loop iteration while nothing else on the node runs
(store/groupcommit.py, "Turns"). They still share one sync."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import text

from realtime.store import open_store
from realtime.store.groupcommit import TURN_S

N = 60
WORK_S = 0.001  # what a request's statements take here, in the loop's thread


def _statements() -> None:
    """Stands for the rest of a request's statements: WORK_S of the loop thread's time."""
    end = time.perf_counter() + WORK_S
    while time.perf_counter() < end:
        pass


async def test_a_burst_of_transactions_takes_turns_with_the_rest_of_the_loop(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path}/turns.db")
    await store.migrate()
    group = store.group
    assert group is not None
    done = asyncio.Event()
    ran = [0]  # transactions and reads done so far
    between: list[int] = []  # how many of them ran between two turns of another connection

    async def ticker() -> None:
        # Another connection's work: it should get the loop every few transactions. (Counted,
        # not timed: on a busy machine the process itself waits for a CPU.)
        last = ran[0]
        while not done.is_set():
            await asyncio.sleep(0)
            between.append(ran[0] - last)
            last = ran[0]

    async def request(i: int) -> int:
        async with store.transaction() as conn:
            value = (await conn.execute(text(f"SELECT {i}"))).scalar_one()
            _statements()
            ran[0] += 1
        return int(value)

    async def read(i: int) -> int:
        async with store.read() as conn:
            value = (await conn.execute(text(f"SELECT {i}"))).scalar_one()
            _statements()
            ran[0] += 1
        return int(value)

    try:
        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        commits0, txs0 = group.commits, group.transactions
        # All start in the same loop iteration, with the lock free.
        got = await asyncio.gather(*(request(i) for i in range(N)), *(read(i) for i in range(N)))
        done.set()
        await tick
        assert got == list(range(N)) * 2
        assert group.transactions - txs0 == N and group.commits - commits0 < N / 4  # batched
        assert group.turns > 0
        # Without turns all 2 * N run in one iteration (120 ms of the loop); with them, about
        # TURN_S of work at a time.
        assert max(between) <= TURN_S / WORK_S + 3, max(between)
    finally:
        await store.close()
