"""CSV exports for people: the chosen language, 是/否, the school's time zone, a BOM for Excel
and WPS, and formulas neutralised."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
import zoneinfo

import aiohttp
from sqlalchemy import update

from realtime.app import HUB
from realtime.domain.exportlang import Localiser, choose_lang
from realtime.store.schema import schools
from tests.conftest import Server


def test_language_choice_and_words() -> None:
    assert choose_lang(None, None) == "zh-CN"
    assert choose_lang("en", "zh-CN") == "en"
    assert choose_lang("zh-CN", "en") == "zh-CN"
    assert choose_lang("fr", "en-GB,en;q=0.9,zh;q=0.8") == "en"
    assert choose_lang(None, "fr;q=1, zh-TW;q=0.5, en;q=0.3") == "zh-CN"
    assert choose_lang(None, "de") == "zh-CN"
    zh, en = Localiser("zh-CN"), Localiser("en", "UTC")
    assert (zh.yes_no(True), zh.yes_no(False), en.yes_no(True)) == ("是", "否", "yes")
    # 00:30 UTC is 08:30 in Shanghai.
    ts = dt.datetime(2026, 9, 1, 0, 30, tzinfo=dt.UTC).timestamp()
    assert zh.time(ts) == "2026-09-01 08:30:00" and en.time(ts) == "2026-09-01 00:30:00"
    assert Localiser("zh-CN", "Not/AZone").time(ts) == "2026-09-01 08:30:00"


def _when(row: list[str]) -> str:
    """The first time the row has (delivered, read, confirmed)."""
    return next(cell for cell in row[6:9] if cell)


async def _download(srv: Server, token: str, path: str, **headers: str) -> bytes:
    async with (
        aiohttp.ClientSession() as http,
        http.get(srv.url + path, headers={"Authorization": f"Bearer {token}", **headers}) as r,
    ):
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/csv")
        return await r.read()


async def test_receipts_csv_in_chinese_for_excel(server: Server) -> None:
    teacher = await server.client("li")
    mom = await server.client("wang_mom")
    notice = await teacher.publish_notice(
        server.class_id,
        "春游报名",
        kind="reply_required",
        choices=["=HYPERLINK(1)", "不参加"],
        deadline=time.time() + 3600,
    )
    before = time.time()
    await mom.reply_notice(notice["id"], "=HYPERLINK(1)")
    path = f"/api/v1/notices/{notice['id']}/receipts.csv"

    raw = await _download(server, teacher.token, path, **{"Accept-Language": "zh-CN,zh;q=0.9"})
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel and WPS read the Chinese right
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["学生编号", "学生", "已完成"]
    assert rows[0][-1] == "回复"
    mine = next(r for r in rows if r[3] == str(server.uid("wang_mom")))
    assert mine[2] == "是" and mine[5] == "已回复"
    assert mine[9] == "'=HYPERLINK(1)"  # read as text, never as a formula
    assert {r[2] for r in rows[1:]} <= {"是", "否"} and "否" in {r[2] for r in rows[1:]}
    shanghai = dt.datetime.strptime(_when(mine), "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai")
    )
    assert abs(shanghai.timestamp() - before) < 60

    # The school moves to another zone; ?lang=en beats the browser's language.
    async with server.app[HUB].store.transaction() as conn:
        await conn.execute(update(schools).values(time_zone="Europe/London"))
    raw = await _download(server, teacher.token, path + "?lang=en", **{"Accept-Language": "zh"})
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Student ID", "Student", "Covered"]
    mine = next(r for r in rows if r[3] == str(server.uid("wang_mom")))
    assert mine[2] == "yes" and mine[5] == "replied"
    london = dt.datetime.strptime(_when(mine), "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=zoneinfo.ZoneInfo("Europe/London")
    )
    assert abs(london.timestamp() - before) < 60


async def test_attendance_and_homework_csv_in_chinese_for_excel(server: Server) -> None:
    """The lesson's attendance and a homework's submissions, as a teacher downloads them from
    the zh-CN app: Chinese headers and words, 是/否, times in the school's zone, a BOM."""
    cid = server.class_id
    li, wang = await server.client("li"), await server.client("wanghao")
    sid = (await li.request("session.start", {"class_id": cid, "kind": "lesson", "title": "数学"}))[
        "session"
    ]["id"]
    joined = time.time()
    await li.request("session.join", {"session_id": sid})
    await wang.request("session.join", {"session_id": sid})
    await li.request("session.end", {"session_id": sid})
    await li.correct_attendance(sid, server.uid("zhangwei"), "excused", "=病假")

    raw = await _download(server, li.token, f"/api/v1/lessons/{sid}/attendance.csv?lang=zh-CN")
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    head = rows[0]
    assert head[:5] == ["学生编号", "学生", "班级编号", "出勤", "在线分钟"]
    by = {r[1]: dict(zip(head, r, strict=True)) for r in rows[1:]}
    assert by["王浩 Wang Hao"]["出勤"] == "出勤" and by["张伟 Zhang Wei"]["出勤"] == "请假"
    assert by["张伟 Zhang Wei"]["老师已更正"] == "是" and by["王浩 Wang Hao"]["老师已更正"] == "否"
    assert by["张伟 Zhang Wei"]["备注"] == "'=病假"  # text, never a formula
    first = dt.datetime.strptime(by["王浩 Wang Hao"]["首次进入"], "%Y-%m-%d %H:%M:%S")
    first = first.replace(tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert abs(first.timestamp() - joined) < 60

    hw = await li.assign_homework(cid, "口算", time.time() + 3600)
    await wang.submit_homework(hw["id"], "做完了")
    raw = await _download(
        server,
        li.token,
        f"/api/v1/homework/{hw['id']}/submissions.csv",
        **{"Accept-Language": "zh-CN,zh;q=0.9"},
    )
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    head = rows[0]
    assert head == [
        "学生编号",
        "学生",
        "状态",
        "提交时间",
        "提交次数",
        "逾期",
        "分数",
        "等级",
        "评语",
    ]
    by = {r[1]: dict(zip(head, r, strict=True)) for r in rows[1:]}
    assert by["王浩 Wang Hao"]["状态"] == "已提交" and by["王浩 Wang Hao"]["逾期"] == "否"
    assert by["李明 Li Ming"]["状态"] == "未提交" and by["李明 Li Ming"]["逾期"] == ""
    sent = dt.datetime.strptime(by["王浩 Wang Hao"]["提交时间"], "%Y-%m-%d %H:%M:%S")
    assert abs(sent.replace(tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai")).timestamp() - joined) < 60
    assert "True" not in raw.decode("utf-8-sig") and "False" not in raw.decode("utf-8-sig")
