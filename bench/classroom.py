"""Polls, class reports and student records at the sizes of issue #14.

Run from the repository root::

    .venv/bin/python bench/classroom.py            # about a minute

1. ``homeroom serve`` on SQLite with the benchmark school of bench/chat_fanout.py. 500 students
   of its room of 500 connect (lean Socket.IO clients, 127.0.0.1) and follow their streams; the
   teacher opens a quiz and every student answers once. Students answer within ``--spread``
   seconds (5 s: uniformly, as a class does after reading the question); a second round sends
   all 500 at the same instant (``burst``). For each answer: the ack time, and the
   answer-to-host time: from sending it to the first ``poll.counts`` push the teacher receives
   whose ``answered`` count includes it (answers counted in ack order, so this is an upper
   bound). ``poll_500_p99_ms`` is the p99 of the answer-to-host time of the spread round;
   ``poll_500_acked`` how many answers were acknowledged ok. Also: pushes per second at most,
   and whether the last push's counts equal what was sent.
2. A term of the room of 50: 90 lessons of 45 minutes (attendance with one or two joins,
   hands, stage time, a quiz answered, questions), 30 homework assignments with submissions and
   reviews, written directly into the store. The teacher asks ``record.class`` for the term
   (``class_report_ms``, median of 7) and ``record.student`` for one student's term
   (``student_record_ms``), over 127.0.0.1.

Human-readable lines as it goes; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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
    Target,
    asyncio_run_in_thread,
    close_sender,
    median,
    open_sender,
    pct,
    say,
    send_ok,
    start_homeroom,
)
from sioclient import SioConnection, new_session  # noqa: E402

STUDENTS = 500
LESSONS = 90
HOMEWORK = 30
REPEAT = 7
OPTIONS = ["A", "B", "C", "D"]


async def seed_term(database_url: str, people: People) -> dict[str, int]:
    """A term of the room of 50, written directly (the server is idle meanwhile)."""
    from realtime.store import open_store
    from realtime.store.schema import (
        attendance,
        homework,
        homework_submissions,
        live_sessions,
        poll_answers,
        polls,
        questions,
    )

    rnd = random.Random(14)
    students = [people.sender_small, *people.small]
    cid = people.class_small
    now = time.time()
    day = 86_400.0
    store = open_store(database_url)
    counts = {"attendance": 0, "poll_answers": 0, "questions": 0, "submissions": 0}
    try:
        async with store.transaction() as conn:
            for n in range(LESSONS):
                start = now - 120 * day + n * (120 * day / LESSONS)
                end = start + 45 * 60
                sid = (
                    await conn.execute(
                        live_sessions.insert().values(
                            class_id=cid,
                            kind="lesson",
                            title=f"Lesson {n + 1}",
                            host_id=people.teacher,
                            linked=[],
                            started_at=start,
                            ended_at=end,
                            node=None,
                        )
                    )
                ).inserted_primary_key[0]
                pid = (
                    await conn.execute(
                        polls.insert().values(
                            class_id=cid,
                            session_id=sid,
                            classrooms=[cid],
                            author_id=people.teacher,
                            client_id=uuid.uuid4().hex,
                            kind="single",
                            question=f"Quiz {n + 1}",
                            options=OPTIONS,
                            correct=["B"],
                            anonymous=False,
                            audience="students",
                            answer_by="person",
                            closes_at=None,
                            status="published",
                            created_at=start + 600,
                            closed_at=start + 900,
                        )
                    )
                ).inserted_primary_key[0]
                rows, answers, asked = [], [], []
                for s in students:
                    if rnd.random() < 0.06:
                        continue  # absent
                    join = start + rnd.uniform(-60, 600)
                    ivs = [[join, end]]
                    if rnd.random() < 0.2:
                        gap = rnd.uniform(join + 60, end - 120)
                        ivs = [[join, gap], [gap + 60, end]]
                    rows.append(
                        {
                            "session_id": sid,
                            "user_id": s,
                            "class_id": cid,
                            "role": "student",
                            "intervals": ivs,
                            "first_join": join,
                            "seconds": sum(e - b for b, e in ivs),
                            "open_since": None,
                            "hands": rnd.randint(0, 3),
                            "stage_s": rnd.choice([0.0, 0.0, 0.0, 120.0]),
                            "correction": None,
                            "note": None,
                        }
                    )
                    pick = rnd.choice(OPTIONS)
                    answers.append(
                        {
                            "poll_id": pid,
                            "user_id": s,
                            "class_id": cid,
                            "answer": [pick],
                            "correct": pick == "B",
                            "answered_at": start + 700,
                        }
                    )
                    if rnd.random() < 0.05:
                        asked.append(
                            {
                                "class_id": cid,
                                "session_id": sid,
                                "asker_id": s,
                                "client_id": uuid.uuid4().hex,
                                "anonymous": False,
                                "body": "为什么？",
                                "status": "answered",
                                "votes": 0,
                                "created_at": start + 1200,
                                "updated_at": start + 1300,
                            }
                        )
                await conn.execute(attendance.insert(), rows)
                await conn.execute(poll_answers.insert(), answers)
                if asked:
                    await conn.execute(questions.insert(), asked)
                counts["attendance"] += len(rows)
                counts["poll_answers"] += len(answers)
                counts["questions"] += len(asked)
            for n in range(HOMEWORK):
                due = now - 118 * day + n * (118 * day / HOMEWORK)
                hid = (
                    await conn.execute(
                        homework.insert().values(
                            class_id=cid,
                            author_id=people.teacher,
                            client_id=uuid.uuid4().hex,
                            title=f"Homework {n + 1}",
                            instructions="",
                            due_at=due,
                            attachments=[],
                            created_at=due - 2 * day,
                        )
                    )
                ).inserted_primary_key[0]
                subs = [
                    {
                        "homework_id": hid,
                        "student_id": s,
                        "body": "done",
                        "attachments": [],
                        "status": rnd.choice(["submitted", "reviewed", "reviewed", "returned"]),
                        "late": rnd.random() < 0.1,
                        "submitted_at": due - 3600,
                        "times": 1,
                    }
                    for s in students
                    if rnd.random() < 0.9
                ]
                await conn.execute(homework_submissions.insert(), subs)
                counts["submissions"] += len(subs)
    finally:
        await store.close()
    return counts


class HostWatch:
    """The teacher's connection: every poll.counts push, with when it arrived."""

    def __init__(self) -> None:
        self.pushes: list[tuple[float, int, dict[str, int]]] = []
        self.arrived = asyncio.Event()

    def on_event(self, _conn: SioConnection, frame: str) -> None:
        if '"poll.counts"' not in frame:
            return
        name, data = json.loads(frame[2:])[:2]
        if name == "poll.counts":
            self.pushes.append((time.perf_counter(), data["answered"], data["counts"]))
            self.arrived.set()


async def poll_round(
    target: Target,
    teacher: SioConnection,
    watch: HostWatch,
    students: list[SioConnection],
    class_id: int,
    spread_s: float,
    rnd: random.Random,
) -> dict[str, Any]:
    ack = await send_ok(
        teacher,
        "poll.create",
        {
            "class_id": class_id,
            "client_id": uuid.uuid4().hex,
            "kind": "single",
            "question": "1/2 + 1/4 = ?",
            "options": OPTIONS,
            "correct": ["C"],
        },
    )
    poll_id = ack["poll"]["id"]
    watch.pushes.clear()
    picks = [rnd.choice(OPTIONS) for _ in students]
    sent: list[float] = [0.0] * len(students)
    acked: list[float] = [0.0] * len(students)
    ok = [False] * len(students)
    offsets = (
        sorted(rnd.uniform(0, spread_s) for _ in students) if spread_s else [0.0] * len(students)
    )
    cpu0 = target.cpu()
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        delay = t0 + offsets[i] - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[i] = time.perf_counter()
        try:
            res = await students[i].call("poll.answer", {"poll_id": poll_id, "answer": [picks[i]]})
        except Exception:
            return
        acked[i] = time.perf_counter()
        ok[i] = isinstance(res, dict) and bool(res.get("ok"))

    await asyncio.gather(*(one(i) for i in range(len(students))))
    cpu_ms = (target.cpu() - cpu0) * 1000
    n_ok = sum(ok)
    deadline = time.perf_counter() + 5
    while (not watch.pushes or watch.pushes[-1][1] < n_ok) and time.perf_counter() < deadline:
        watch.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch.arrived.wait(), 0.2)
    await asyncio.sleep(0.5)  # any later push arrives
    pushes = list(watch.pushes)
    # Answer-to-host: the k-th acknowledged answer is in the first push counting >= k answers.
    order = sorted((acked[i], i) for i in range(len(students)) if ok[i])
    to_host: list[float] = []
    j = 0
    for k, (_, i) in enumerate(order, start=1):
        while j < len(pushes) and (pushes[j][1] < k or pushes[j][0] < acked[i]):
            j += 1
        if j == len(pushes):
            break
        to_host.append((pushes[j][0] - sent[i]) * 1000)
    ack_ms = sorted((acked[i] - sent[i]) * 1000 for i in range(len(students)) if ok[i])
    to_host.sort()
    per_s = 0
    times = [p[0] for p in pushes]
    for a in range(len(times)):
        b = a
        while b < len(times) and times[b] - times[a] < 1.0:
            b += 1
        per_s = max(per_s, b - a)
    expected = {o: picks.count(o) for o in OPTIONS}
    final = pushes[-1][2] if pushes else {}
    return {
        "acked": n_ok,
        "ack_p50_ms": round(pct(ack_ms, 50), 1),
        "ack_p99_ms": round(pct(ack_ms, 99), 1),
        "to_host_p50_ms": round(pct(to_host, 50), 1),
        "to_host_p99_ms": round(pct(to_host, 99), 1),
        "to_host_measured": len(to_host),
        "pushes": len(pushes),
        "max_pushes_per_s": per_s,
        "final_counts_right": final == expected,
        # Server CPU per answer (its transaction, ack and share of the pushes): what a quiet
        # machine would spend, whatever else the shared machine was doing.
        "server_cpu_ms_per_answer": round(cpu_ms / max(1, n_ok), 2),
    }


async def timed(conn: SioConnection, event: str, payload: dict[str, Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    ack = await send_ok(conn, event, payload)
    return (time.perf_counter() - t) * 1000, ack


async def run(tmp: Path, started: Started, spread: float) -> dict[str, Any]:
    people = People.make(big=False)
    target, _ = start_homeroom(started, tmp, people)
    database_url = f"sqlite:///{tmp / 'homeroom.db'}"
    seeded = await asyncio.to_thread(asyncio_run_in_thread, seed_term(database_url, people))
    say(f"a term of the room of 50 seeded: {seeded}")

    watch = HostWatch()
    session = new_session()
    teacher = SioConnection(
        session, target.url, target.token(people.teacher), on_event=watch.on_event
    )
    await teacher.connect()
    await send_ok(teacher, "sync", {"cursors": {}})
    students: list[SioConnection] = []
    try:
        for uid in people.large[:STUDENTS]:
            c = SioConnection(session, target.url, target.token(uid))
            students.append(c)
        for i in range(0, len(students), 50):
            await asyncio.gather(*(c.connect() for c in students[i : i + 50]))
        for i in range(0, len(students), 50):
            await asyncio.gather(
                *(send_ok(c, "sync", {"cursors": {}}) for c in students[i : i + 50])
            )
        say(f"{len(students)} students connected")
        rnd = random.Random(500)
        spread_round = await poll_round(
            target, teacher, watch, students, people.class_large, spread, rnd
        )
        say(f"poll, answers over {spread:g} s: {spread_round}")
        burst_round = await poll_round(
            target, teacher, watch, students, people.class_large, 0.0, rnd
        )
        say(f"poll, all answers at once: {burst_round}")
    finally:
        for c in students:
            await c.close()
        await teacher.close()
        await session.close()

    host = await open_sender(target, people.teacher, False)
    try:
        class_times = []
        cpu0 = target.cpu()
        for _ in range(REPEAT):
            ms, report = await timed(
                host, "record.class", {"class_id": people.class_small, "period": "term"}
            )
            class_times.append(ms)
        class_cpu_ms = (target.cpu() - cpu0) * 1000 / REPEAT
        summary = report["summary"]
        lessons = report["students"][0]["lessons"]
        if lessons != LESSONS:
            raise RuntimeError(f"the report counts {lessons} lessons, not {LESSONS}")
        say(
            f"record.class (50 students, {lessons} lessons): "
            f"median {median(class_times):.1f} ms; {summary}"
        )
        student_times = []
        cpu0 = target.cpu()
        for _ in range(REPEAT):
            ms, rec = await timed(
                host,
                "record.student",
                {"class_id": people.class_small, "student_id": people.small[0], "period": "term"},
            )
            student_times.append(ms)
        student_cpu_ms = (target.cpu() - cpu0) * 1000 / REPEAT
        say(f"record.student (a term): median {median(student_times):.1f} ms; {rec['record']}")
    finally:
        await close_sender(host)
    return {
        "students": STUDENTS,
        "spread_s": spread,
        "poll_spread": spread_round,
        "poll_burst": burst_round,
        "term": {"lessons": LESSONS, "class_students": 50, "homework": HOMEWORK, **seeded},
        "class_report_all_ms": [round(x, 1) for x in class_times],
        "class_report_server_cpu_ms": round(class_cpu_ms, 1),
        "student_record_server_cpu_ms": round(student_cpu_ms, 1),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "student_record_all_ms": [round(x, 1) for x in student_times],
        "poll_500_p99_ms": spread_round["to_host_p99_ms"],
        "poll_500_acked": spread_round["acked"],
        "class_report_ms": round(median(class_times), 1),
        "student_record_ms": round(median(student_times), 1),
        "targets": {
            "poll_500_p99_ms": 200,
            "poll_500_acked": STUDENTS,
            "class_report_ms": 100,
            "student_record_ms": 50,
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spread", type=float, default=5.0, help="seconds over which students answer")
    args = ap.parse_args()
    started = Started()
    with tempfile.TemporaryDirectory(prefix="homeroom-classroom-") as d:
        try:
            out = asyncio.run(run(Path(d), started, args.spread))
        finally:
            started.stop_all()
    out["root"] = str(ROOT)
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
