"""Homework: assigned, submitted and resubmitted until the due time, late marked, reviewed or
returned for redo, rolled up live for the teacher, reminders, CSV, and guardians' view."""

from __future__ import annotations

import asyncio
import csv
import io
import time

import pytest

from clients import files
from clients.homeroom import HomeroomClient, RequestError
from tests.attachment_files import pdf_bytes, png_bytes
from tests.conftest import Server


async def test_homework_cycle(server: Server) -> None:
    srv = server
    cid = srv.class_id
    teacher = await srv.client("li")
    wang = await srv.client("wanghao")
    liming = await srv.client("liming")
    mom = await srv.client("wang_mom")
    with pytest.raises(RequestError) as err:
        await teacher.assign_homework(cid, "作文", time.time() - 10)
    assert err.value.code == "bad_request"
    with pytest.raises(RequestError) as err:
        await wang.assign_homework(cid, "作文", time.time() + 60)
    assert err.value.code == "forbidden"
    hw = await teacher.assign_homework(cid, "作文：我的假期", time.time() + 1.5, "300字")
    for c, part in ((wang, "students"), (mom, "guardians")):
        ev = await c.wait_for(lambda e: e["type"] == "homework.assigned")
        assert ev["stream"] == f"notices:{cid}:{part}" and ev["data"]["id"] == hw["id"]

    first = await wang.submit_homework(hw["id"], "初稿")
    assert first["state"] == "submitted" and first["times"] == 1
    again = await wang.submit_homework(hw["id"], "第二稿")
    assert again["times"] == 2 and again["body"] == "第二稿"
    # The teacher sees each submission live.
    ev = await teacher.wait_for(
        lambda e: e["type"] == "homework.submission" and e["data"].get("times") == 2
    )
    assert ev["data"]["student_id"] == srv.uid("wanghao")
    with pytest.raises(RequestError) as err:
        await mom.submit_homework(hw["id"], "家长代写")
    assert err.value.code == "forbidden"

    await asyncio.sleep(max(0.0, hw["due_at"] - time.time() + 0.1))
    late = await liming.submit_homework(hw["id"], "迟交的作文")
    assert late["state"] == "late" and late["late"] is True
    with pytest.raises(RequestError) as err:
        await wang.submit_homework(hw["id"], "截止后再改")
    assert err.value.code == "conflict"

    roll = await teacher.homework_rollup(hw["id"])
    counts = roll["counts"]
    assert (counts["submitted"], counts["late"], counts["missing"]) == (1, 1, 4)
    assert counts["done"] == 2 and counts["students"] == 6

    reviewed = await teacher.review_homework(hw["id"], srv.uid("wanghao"), "写得好", score=95)
    assert reviewed["state"] == "reviewed" and reviewed["score"] == 95
    ev = await mom.wait_for(lambda e: e["type"] == "homework.reviewed")
    assert ev["data"]["comment"] == "写得好" and ev["stream"] == f"user:{srv.uid('wang_mom')}"
    with pytest.raises(RequestError) as err:
        await wang.submit_homework(hw["id"], "评过了还改")
    assert err.value.code == "conflict"
    with pytest.raises(RequestError) as err:
        await teacher.review_homework(hw["id"], srv.uid("zhangwei"), "?")
    assert err.value.code == "conflict"  # nothing submitted
    back = await teacher.review_homework(hw["id"], srv.uid("liming"), "请重写", redo=True)
    assert back["state"] == "returned"

    # Reminders go to students not done (or to redo) and their guardians.
    reminded = await teacher.remind_homework(hw["id"])
    assert srv.uid("liming") in reminded["students"] and srv.uid("zhangwei") in reminded["students"]
    assert srv.uid("wanghao") not in reminded["students"]
    assert (
        srv.uid("zhang_mom") in reminded["reminded"]
        and srv.uid("wang_mom") not in reminded["reminded"]
    )
    li_mom = await srv.client("li_mom", connect=False)
    await li_mom.connect()
    li_mom.follow(f"user:{srv.uid('li_mom')}", 0)
    await li_mom.sync()
    await li_mom.wait_for(lambda e: e["type"] == "homework.reminder")
    with pytest.raises(RequestError) as err:
        await teacher.remind_homework(hw["id"])
    # Refused with what the web app needs to say how long, in the person's language.
    assert err.value.code == "rate_limited"
    assert err.value.details["reason"] == "reminder_cooldown"
    assert 0 < err.value.details["retry_after_s"] <= 600
    roll = await teacher.request("homework.rollup", {"homework_id": hw["id"]})
    assert roll["to_remind"] == len(reminded["students"])
    assert roll["remind_again_at"] == pytest.approx(roll["last_reminded_at"] + 600)
    redo = await liming.submit_homework(hw["id"], "重写的作文")
    assert redo["state"] == "late" and redo["times"] == 2

    # A guardian sees her child's homework and review, never another child's.
    mine = await mom.homework_list(cid)
    assert mine["student_id"] == srv.uid("wanghao")
    assert mine["homework"][0]["submission"]["comment"] == "写得好"
    with pytest.raises(RequestError) as err:
        await mom.homework_list(cid, srv.uid("liming"))
    assert err.value.code == "forbidden"
    liu = await srv.client("liu_mom")
    with pytest.raises(RequestError) as err:
        await liu.homework_list(cid)  # two children: which one
    assert err.value.code == "bad_request"
    assert (await liu.homework_list(cid, srv.uid("liuxin")))["homework"][0]["submission"][
        "state"
    ] == "missing"
    staff_view = await teacher.homework_list(cid)
    assert staff_view["homework"][0]["counts"]["reviewed"] == 1

    text = await teacher.http("GET", f"/api/v1/homework/{hw['id']}/submissions.csv?lang=en")
    rows = {r["Student ID"]: r for r in csv.DictReader(io.StringIO(text.lstrip("\ufeff")))}
    assert rows[str(srv.uid("wanghao"))]["State"] == "reviewed"
    assert rows[str(srv.uid("zhangwei"))]["State"] == "missing"

    # The learning record counts homework due in the period, per state.
    now = time.time()
    rec = (await mom.student_record(cid, srv.uid("wanghao"), since=now - 3600, until=now + 60))[
        "record"
    ]
    assert rec["homework"]["reviewed"] == 1 and rec["homework"]["missing"] == 0
    rec = (
        await teacher.student_record(cid, srv.uid("zhangwei"), since=now - 3600, until=now + 60)
    )["record"]
    assert rec["homework"]["missing"] == 1 and rec["homework"]["reviewed"] == 0
    rec = (await teacher.student_record(cid, srv.uid("liming"), since=now - 3600, until=now + 60))[
        "record"
    ]
    assert rec["homework"]["late"] == 1
    # A guardian's child's homework stays private to that child's guardians.
    with pytest.raises(RequestError) as err:
        await liu.student_record(cid, srv.uid("wanghao"))
    assert err.value.code == "forbidden"


async def test_homework_with_files(server: Server) -> None:
    """A worksheet with the homework, a photo of the work with the submission: each file only
    for the people who may see what carries it; a resubmission keeps, adds and drops files."""
    cid = server.class_id
    teacher = await server.client("li")
    wang = await server.client("wanghao")
    mom = await server.client("wang_mom")
    liming = await server.client("liming", connect=False)
    li_mom = await server.client("li_mom", connect=False)

    sheet = await teacher.upload(pdf_bytes(), "练习册第5页.pdf")
    hw = await teacher.assign_homework(
        cid, "练习册", time.time() + 60, "做第5页", attachments=[sheet["id"]]
    )
    assert [a["name"] for a in hw["attachments"]] == ["练习册第5页.pdf"]
    ev = await mom.wait_for(lambda e: e["type"] == "homework.assigned")
    assert [a["id"] for a in ev["data"]["attachments"]] == [sheet["id"]]
    for c in (wang, li_mom):  # every member of the class gets the worksheet
        assert (await files.download(await _link(c, sheet["id"])))[0] == 200

    # Wang Hao hands in a photo of his page, no text needed.
    photo = await wang.upload(png_bytes(), "第5页.png")
    sub = await wang.submit_homework(hw["id"], attachments=[photo["id"]])
    assert [a["id"] for a in sub["attachments"]] == [photo["id"]] and sub["body"] == ""
    with pytest.raises(RequestError) as err:  # nothing at all is refused
        await wang.submit_homework(hw["id"])
    assert err.value.code == "bad_request"
    with pytest.raises(RequestError) as err:  # the worksheet is the teacher's, attached already
        await wang.submit_homework(hw["id"], "x", attachments=[sheet["id"]])
    assert err.value.code == "not_found"
    # His mother and the teacher see it; a classmate and a classmate's mother do not.
    for c in (mom, teacher):
        assert (await files.download(await _link(c, photo["id"])))[0] == 200
    for c in (liming, li_mom):
        with pytest.raises(RequestError) as err:
            await files.links(c, [photo["id"]])
        assert err.value.code == "forbidden"
    rolled = await teacher.request("homework.rollup", {"homework_id": hw["id"]})
    mine = next(s for s in rolled["students"] if s["student_id"] == server.uid("wanghao"))
    assert [a["id"] for a in mine["attachments"]] == [photo["id"]]

    # Resubmitted: the first photo kept and a second added; then only the second.
    second = await wang.upload(pdf_bytes(pad=10), "第5页补充.pdf")
    sub = await wang.submit_homework(hw["id"], "补了一页", [photo["id"], second["id"]])
    assert [a["id"] for a in sub["attachments"]] == [photo["id"], second["id"]]
    sub = await wang.submit_homework(hw["id"], "只交这一页", [second["id"]])
    assert [a["id"] for a in sub["attachments"]] == [second["id"]] and sub["times"] == 3
    with pytest.raises(RequestError) as err:  # the dropped photo is deleted
        await files.links(mom, [photo["id"]])
    assert err.value.code == "not_found"
    assert (await files.download(await _link(mom, second["id"])))[0] == 200


async def _link(c: HomeroomClient, upload_id: str) -> str:
    return (await files.links(c, [upload_id]))[upload_id]
