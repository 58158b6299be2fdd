"""Notices that guardians read, confirm or reply to, rolled up per student for the teacher."""

from __future__ import annotations

import csv
import io
import time

import pytest

from clients.homeroom import RequestError
from tests.conftest import Server


async def test_confirm_required_notice_rollup_and_reminder(any_store_server: Server) -> None:
    srv = any_store_server
    teacher = await srv.client("li")
    mom = await srv.client("wang_mom")
    dad = await srv.client("wang_dad")
    liu = await srv.client("liu_mom")
    notice = await teacher.publish_notice(
        srv.class_id, "运动会：请签字确认", kind="confirm_required", body="周五运动会"
    )
    stream = f"notices:{srv.class_id}:guardians"
    for c in (mom, dad, liu):
        ev = await c.wait_for(lambda e: e["type"] == "notice.published")
        assert ev["stream"] == stream and ev["data"]["id"] == notice["id"]
    # Students do not get a guardians' notice.
    wang = await srv.client("wanghao")
    assert stream not in wang.cursors

    first = await mom.confirm_notice(notice["id"])
    again = await mom.confirm_notice(notice["id"])
    assert first["state"] == "confirmed" and again["confirmed_at"] == first["confirmed_at"]
    await liu.confirm_notice(notice["id"])

    # The teacher sees the receipts live on the staff stream.
    await teacher.wait_for(
        lambda e: e["type"] == "notice.receipt" and e["data"]["user_id"] == srv.uid("liu_mom")
    )
    report = await teacher.receipts(notice["id"])
    covered = {s["student_id"] for s in report["covered"]}
    missing = {s["student_id"] for s in report["not_covered"]}
    # Wang Hao is covered by his mother alone; Liu Yang and Liu Xin by their shared mother.
    assert covered == {srv.uid("wanghao"), srv.uid("liuyang"), srv.uid("liuxin")}
    assert missing == {srv.uid("liming"), srv.uid("zhangwei"), srv.uid("zhaolei")}
    assert report["counts"]["covered"] == 3 and report["counts"]["students"] == 6

    # Guardians see no one else's receipts.
    with pytest.raises(RequestError) as err:
        await mom.receipts(notice["id"])
    assert err.value.code == "forbidden"

    li_mom = await srv.client("li_mom")
    reminded = await teacher.request("notice.remind", {"notice_id": notice["id"]})
    assert srv.uid("li_mom") in reminded["reminded"]
    assert srv.uid("wang_dad") not in reminded["reminded"]  # his child is covered
    await li_mom.wait_for(lambda e: e["type"] == "notice.reminder")
    with pytest.raises(RequestError) as err:
        await teacher.request("notice.remind", {"notice_id": notice["id"]})
    assert err.value.code == "rate_limited"


async def test_offline_guardian_gets_notice_on_connect(server: Server) -> None:
    teacher = await server.client("li")
    mom = await server.client("wang_mom")
    await mom.sio.disconnect()
    notice = await teacher.publish_notice(server.class_id, "家长会通知")
    await mom.connect()
    ev = await mom.wait_for(lambda e: e["type"] == "notice.published")
    assert ev["data"]["id"] == notice["id"]
    listed = await mom.request("notice.list", {"class_id": server.class_id})
    assert listed["notices"][0]["receipt"]["state"] == "sent"
    await mom.request("notice.delivered", {"notice_ids": [notice["id"]]})
    await mom.request("notice.read", {"notice_id": notice["id"]})
    listed = await mom.request("notice.list", {"class_id": server.class_id})
    assert listed["notices"][0]["receipt"]["state"] == "read"


async def test_reply_required_notice_and_csv_export(server: Server) -> None:
    teacher = await server.client("li")
    mom = await server.client("wang_mom")
    notice = await teacher.publish_notice(
        server.class_id,
        "春游",
        kind="reply_required",
        choices=["参加", "不参加"],
        deadline=time.time() + 3600,
    )
    with pytest.raises(RequestError) as err:
        await mom.reply_notice(notice["id"], "maybe")
    assert err.value.code == "bad_request"
    with pytest.raises(RequestError) as err:
        await mom.confirm_notice(notice["id"])
    assert err.value.code == "conflict"
    receipt = await mom.reply_notice(notice["id"], "参加")
    assert receipt["reply"] == "参加" and receipt["state"] == "replied"
    text = await teacher.http("GET", f"/api/v1/notices/{notice['id']}/receipts.csv")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    wang_rows = [r for r in rows if r["recipient_id"] == str(server.uid("wang_mom"))]
    assert wang_rows[0]["reply"] == "参加" and wang_rows[0]["covered"] == "True"
    assert any(r["student_id"] == str(server.uid("zhaolei")) and r["state"] == "none" for r in rows)


async def test_only_teachers_publish_and_bad_notices_change_nothing(server: Server) -> None:
    teacher = await server.client("li")
    mom = await server.client("wang_mom")
    with pytest.raises(RequestError) as err:
        await mom.publish_notice(server.class_id, "fake")
    assert err.value.code == "forbidden"
    with pytest.raises(RequestError) as err:
        await teacher.publish_notice(server.class_id, "x", kind="reply_required", choices=["a"])
    assert err.value.code == "bad_request"
    with pytest.raises(RequestError) as err:
        await teacher.request("notice.publish", {"class_id": server.class_id, "title": "x"})
    assert err.value.code == "bad_request"
    listed = await teacher.request("notice.list", {"class_id": server.class_id})
    assert listed["notices"] == []
