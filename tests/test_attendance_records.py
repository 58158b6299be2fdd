"""Attendance recorded from a live lesson, corrected by the teacher, reported (and as CSV); a
student's record for the student, their guardians and staff only; the guardians' weekly digest."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clients.homeroom import RequestError
from tests.conftest import TEST_SECRET, Server
from tests.live.helpers import eventually

ROOT = Path(__file__).resolve().parents[1]


async def test_lesson_attendance_report_correction_record_and_digest(
    server: Server,
) -> None:
    srv = server
    cid = srv.class_id
    teacher = await srv.client("li")
    wang = await srv.client("wanghao")
    liming = await srv.client("liming")
    start = await teacher.request(
        "session.start", {"class_id": cid, "kind": "lesson", "title": "数学：分数"}
    )
    sid = start["session"]["id"]
    ref = {"session_id": sid}
    await teacher.request("session.join", ref)
    await wang.request("session.join", ref)
    await liming.request("session.join", ref)
    # Li Ming drops out and comes back: two joins, merged into his time present.
    await liming.request("session.leave", ref)
    await liming.request("session.join", ref)
    await wang.request("hand.raise", ref)
    await teacher.request("stage.invite", {**ref, "user_id": srv.uid("wanghao")})
    await wang.request("stage.accept", ref)
    await asyncio.sleep(0.3)
    await teacher.request("stage.remove", {**ref, "user_id": srv.uid("wanghao")})
    await wang.ask(cid, "为什么要通分？", session_id=sid)
    quiz = await teacher.create_poll(
        cid, "1/2 = ?/4", "single", ["1", "2", "3"], correct=["2"], session_id=sid
    )
    await wang.answer_poll(quiz["id"], "2")
    await liming.answer_poll(quiz["id"], "3")
    await asyncio.sleep(0.2)
    await teacher.request("session.end", ref)
    ready = await teacher.wait_for(lambda e: e["type"] == "attendance.ready")
    assert ready["data"] == {"session_id": sid, "class_id": cid, "title": "数学：分数", "came": 2}

    report = await teacher.attendance_report(sid)
    rows = {r["student_id"]: r for r in report["students"]}
    w, m, z = rows[srv.uid("wanghao")], rows[srv.uid("liming")], rows[srv.uid("zhangwei")]
    assert w["status"] == "present" and w["joins"] == 1 and w["hands"] == 1
    assert w["stage_seconds"] >= 0.25 and w["questions"] == 1
    assert (w["polls_answered"], w["quiz_correct"], w["quizzes"]) == (1, 1, 1)
    assert m["status"] == "present" and m["joins"] == 2 and m["quiz_correct"] == 0
    assert 0 < m["seconds"] <= w["seconds"] + 1
    assert z["status"] == "absent" and not z["came"]
    assert set(report["never_came"]) == {
        srv.uid(n) for n in ("zhangwei", "liuyang", "liuxin", "zhaolei")
    }
    assert report["counts"]["present"] == 2 and report["counts"]["absent"] == 4

    # Corrections: Zhang Wei was excused; a student of no classroom of the lesson is refused.
    fixed = await teacher.correct_attendance(sid, srv.uid("zhangwei"), "excused", "病假 sick")
    assert fixed["status"] == "excused"
    with pytest.raises(RequestError) as err:
        await teacher.correct_attendance(sid, srv.uid("wang_mom"), "excused")
    assert err.value.code == "bad_request"
    with pytest.raises(RequestError) as err:
        await wang.correct_attendance(sid, srv.uid("wanghao"), "excused")
    assert err.value.code == "forbidden"
    mom = await srv.client("wang_mom")
    with pytest.raises(RequestError) as err:
        await mom.attendance_report(sid)
    assert err.value.code == "forbidden"
    text = await teacher.http("GET", f"/api/v1/lessons/{sid}/attendance.csv?lang=en")
    by_id = {r["Student ID"]: r for r in csv.DictReader(io.StringIO(text.lstrip("\ufeff")))}
    assert by_id[str(srv.uid("zhangwei"))]["Attendance"] == "excused"
    assert by_id[str(srv.uid("zhangwei"))]["Note"] == "病假 sick"
    assert by_id[str(srv.uid("wanghao"))]["Hands raised"] == "1"

    # Records: the student, each approved guardian, and staff; nobody else's child.
    for c in (wang, mom, teacher):
        rec = (await c.student_record(cid, srv.uid("wanghao")))["record"]
        assert rec["lessons"] == 1 and rec["attended"] == 1 and rec["hands"] == 1
        assert rec["quiz_correct"] == 1 and rec["questions"] == 1
    liu = await srv.client("liu_mom")
    for c, who in ((liu, "wanghao"), (wang, "liming"), (mom, "liming")):
        with pytest.raises(RequestError) as err:
            await c.student_record(cid, srv.uid(who))
        assert err.value.code == "forbidden"
    zrec = (await teacher.student_record(cid, srv.uid("zhangwei"), "term"))["record"]
    assert zrec["excused"] == 1 and zrec["missed"] == 0
    summary = await teacher.class_record(cid, "month")
    assert summary["summary"]["students"] == 6
    assert summary["summary"]["attendance_rate"] == round(2 / 6, 3)
    with pytest.raises(RequestError) as err:
        await mom.class_record(cid)
    assert err.value.code == "forbidden"

    # The weekly digest: each guardian gets their own children's week, in their own stream.
    sent = await teacher.send_digest(cid)
    assert sent["students"] == 5  # Zhao Lei has no guardian yet
    ev = await mom.wait_for(lambda e: e["type"] == "record.digest")
    assert ev["stream"] == f"user:{srv.uid('wang_mom')}"
    assert ev["data"]["student_id"] == srv.uid("wanghao") and ev["data"]["record"]["hands"] == 1
    await eventually(
        lambda: (
            len(
                [
                    e
                    for e in liu.events.get(f"user:{srv.uid('liu_mom')}", [])
                    if e["type"] == "record.digest"
                ]
            )
            == 2
        ),
        5,
        "a digest per child for a mother of two",
    )
    with pytest.raises(RequestError) as err:
        await mom.send_digest(cid)
    assert err.value.code == "forbidden"


async def test_weekly_digest_console_command(server: Server) -> None:
    """`homeroom digest` (for cron) stores each guardian's digest; her app catches up on it."""
    mom = await server.client("wang_mom")
    await mom.sio.disconnect()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEROOM_")}
    env.update(HOMEROOM_DATABASE_URL=server.settings.database_url, HOMEROOM_SECRET=TEST_SECRET)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "realtime.cli", "digest", "--class", str(server.class_id)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # Eight guardians, one digest per child: Liu Yang and Liu Xin's mother gets two.
    assert "9 digests to guardians of 1 classes" in result.stdout
    await mom.connect()
    ev = await mom.wait_for(lambda e: e["type"] == "record.digest")
    assert ev["data"]["student_id"] == server.uid("wanghao")
    assert ev["data"]["record"]["lessons"] == 0
