"""A notice's receipts roll-up for a class of 5,000 students and 10,000 guardians.

Run from the repository root::

    .venv/bin/python bench/notice_rollup.py             # about a minute

Seeds the school of bench/chat_fanout.py (its class of 5,000 students, two guardians each) with
the same direct inserts, starts ``homeroom serve`` on SQLite, and publishes one
confirm-required notice to the 10,000 guardians from a real Socket.IO client. The guardians'
receipts are then moved by Homeroom's own receipt actions, run in this process against the
same database file (the server is idle meanwhile): about 60% delivered, 15% read and 15%
confirmed, 10% nothing. Finally the teacher asks ``notice.receipts`` over 127.0.0.1 several
times; the median from emit to ack is ``rollup_ms``. Also timed: the next page of
``not_covered`` (``page_ms``), ``notice.list`` (``list_ms``) and the CSV export (``csv_ms``).

Human-readable lines as it goes; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from chat_fanout import (  # noqa: E402
    ROOT,
    People,
    Started,
    asyncio_run_in_thread,
    close_sender,
    median,
    open_sender,
    say,
    send_ok,
    start_homeroom,
)

REPEAT = 7


async def mark_receipts(database_url: str, notice_id: int, guardians: list[int]) -> dict[str, int]:
    """Move receipts the way guardians' apps do, with Homeroom's actions (not raw updates)."""
    from realtime.actions import notices
    from realtime.auth import TokenIssuer
    from realtime.bus import make_bus
    from realtime.config import Settings
    from realtime.hub import Hub
    from realtime.schemas import NoticeRef, NoticesDelivered
    from realtime.store import open_store

    secret = "bench-" + uuid.uuid4().hex * 2
    settings = Settings(database_url=database_url, secret=secret)
    tokens = TokenIssuer({"k1": secret}, "k1", 3600)  # unused: the actions are called directly
    hub = Hub(settings, open_store(database_url), make_bus("", "bench"), tokens)
    rnd = random.Random(2024)
    mix = {"delivered": 0, "read": 0, "confirmed": 0, "none": 0}
    ref = NoticeRef(notice_id=notice_id)
    try:
        for g in guardians:
            x = rnd.random()
            if x < 0.60:
                await notices.delivered(hub, g, NoticesDelivered(notice_ids=[notice_id]))
                mix["delivered"] += 1
            elif x < 0.75:
                await notices.read(hub, g, ref)
                mix["read"] += 1
            elif x < 0.90:
                await notices.confirm(hub, g, ref)
                mix["confirmed"] += 1
            else:
                mix["none"] += 1
    finally:
        await hub.store.close()
    return mix


async def timed(conn: Any, event: str, payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    ack = await send_ok(conn, event, payload)
    return (time.perf_counter() - t) * 1000, ack


async def csv_ms(url: str, token: str, notice_id: int) -> tuple[float, int]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        t = time.perf_counter()
        async with session.get(
            f"{url}/api/v1/notices/{notice_id}/receipts.csv",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            resp.raise_for_status()
            text = await resp.text()
        return (time.perf_counter() - t) * 1000, text.count("\n") - 1


async def run(tmp: Path, started: Started) -> dict[str, Any]:
    people = People.make(big=True)
    say(f"seeding {len(people.big_students)} students and {len(people.big_guardians)} guardians")
    target, _ = start_homeroom(started, tmp, people)
    database_url = f"sqlite:///{tmp / 'homeroom.db'}"
    teacher = await open_sender(target, people.teacher, False)
    try:
        t, ack = await timed(
            teacher,
            "notice.publish",
            {
                "class_id": people.class_big,
                "client_id": uuid.uuid4().hex,
                "audience": "guardians",
                "kind": "confirm_required",
                "title": "运动会回执 Sports day: sign and return the consent form",
            },
        )
        notice_id = ack["notice"]["id"]
        say(f"notice {notice_id} to {ack['recipients']} guardians published in {t:.0f} ms")
        t0 = time.monotonic()
        mix = await asyncio.to_thread(
            asyncio_run_in_thread, mark_receipts(database_url, notice_id, people.big_guardians)
        )
        say(f"receipts moved by the actions in {time.monotonic() - t0:.1f} s: {mix}")

        times = []
        for _ in range(REPEAT):
            ms, report = await timed(teacher, "notice.receipts", {"notice_id": notice_id})
            times.append(ms)
        counts = report["counts"]
        if counts["recipients"] != len(people.big_guardians):
            raise RuntimeError(f"roll-up counts {counts}")
        say(f"notice.receipts: median {median(times):.1f} ms of {REPEAT} ({counts})")

        page_times: list[float] = []
        nxt = (report.get("next") or {}).get("not_covered")
        if nxt is not None:  # a server that pages
            for _ in range(REPEAT):
                ms, _ = await timed(
                    teacher,
                    "notice.receipts",
                    {"notice_id": notice_id, "list": "not_covered", "after": nxt},
                )
                page_times.append(ms)
            say(f"next page of not_covered: median {median(page_times):.1f} ms")
        list_times = [
            (await timed(teacher, "notice.list", {"class_id": people.class_big}))[0]
            for _ in range(REPEAT)
        ]
        say(f"notice.list: median {median(list_times):.1f} ms")
        export_ms, rows = await csv_ms(target.url, target.token(people.teacher), notice_id)
        say(f"receipts.csv: {rows} rows in {export_ms:.0f} ms")
    finally:
        await close_sender(teacher)
    return {
        "students": len(people.big_students),
        "guardians": len(people.big_guardians),
        "mix": mix,
        "counts": counts,
        "rollup_ms": round(median(times), 2),
        "rollup_all_ms": [round(x, 2) for x in times],
        "page_ms": round(median(page_times), 2) if page_times else None,
        "list_ms": round(median(list_times), 2),
        "csv_ms": round(export_ms, 1),
        "csv_rows": rows,
        "target_ms": 50,
    }


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    started = Started()
    with tempfile.TemporaryDirectory(prefix="homeroom-rollup-") as d:
        try:
            out = asyncio.run(run(Path(d), started))
        finally:
            started.stop_all()
    out["root"] = str(ROOT)
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
