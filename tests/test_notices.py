"""Notices that guardians read, confirm or reply to, rolled up per student for the teacher."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from clients.homeroom import RequestError
from realtime.actions import notices
from realtime.actions.access import guardians_of, members_with_role
from realtime.actions.notice_rollup import receipt_of
from realtime.actions.roster import add_member, create_class, link_guardian
from realtime.domain.notices import Audience, NoticeKind, coverage
from realtime.domain.roles import Role
from realtime.schemas import NoticeRef, NoticesDelivered
from realtime.store.schema import guardian_links, memberships, receipts, users
from realtime.transport.rest import HUB
from tests.conftest import Server


async def test_confirm_required_notice_rollup_and_reminder(server: Server) -> None:
    srv = server
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
    # The web app says "请 N 分钟后再提醒" from these details, not from the English message.
    assert err.value.details["reason"] == "reminder_cooldown"
    wait = err.value.details["retry_after_s"]
    assert isinstance(wait, int) and 0 < wait <= srv.settings.notice_remind_interval_s


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
    report = await teacher.receipts(notice["id"])
    assert report["counts"]["replies"] == {"参加": 1, "不参加": 0}
    text = await teacher.http("GET", f"/api/v1/notices/{notice['id']}/receipts.csv?lang=en")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    wang_rows = [r for r in rows if r["Recipient ID"] == str(server.uid("wang_mom"))]
    assert wang_rows[0]["Reply"] == "参加" and wang_rows[0]["Covered"] == "yes"
    zhao = str(server.uid("zhaolei"))
    assert any(r["Student ID"] == zhao and r["State"] == "not delivered" for r in rows)


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


# --- a class of a thousand students and two thousand guardians --------------------------------


@dataclass
class BigClass:
    class_id: int
    school_id: int
    students: list[int]
    guardians: dict[int, list[int]]  # student id -> guardian ids, in link order


async def seed_big_class(srv: Server, n_students: int) -> BigClass:
    """A class straight in the server's store: fast, no passwords; Ms. Li teaches it."""
    hub = srv.app[HUB]
    now = time.time()
    async with hub.store.transaction() as conn:
        school = (
            await conn.execute(select(users.c.school_id).where(users.c.id == srv.uid("li")))
        ).scalar_one()
        class_id = await create_class(conn, school, "初一年级 Grade 7")
        await add_member(conn, class_id, srv.uid("li"), Role.HEAD_TEACHER)

        def user(name: str) -> dict[str, Any]:
            return {
                "school_id": school,
                "username": f"{name}.{class_id}",
                "display_name": name,
                "school_admin": False,
                "created_at": now,
            }

        rows = [user(f"s{i:05}") for i in range(n_students)]
        rows += [user(f"g{i:05}{side}") for i in range(n_students) for side in "ab"]
        await conn.execute(users.insert(), rows)
        ids = {
            r.display_name: r.id
            for r in await conn.execute(
                select(users.c.id, users.c.display_name).where(
                    users.c.username.like(f"%.{class_id}")
                )
            )
        }
        students = sorted(ids[f"s{i:05}"] for i in range(n_students))
        guardians = {
            ids[f"s{i:05}"]: [ids[f"g{i:05}a"], ids[f"g{i:05}b"]] for i in range(n_students)
        }
        await conn.execute(
            memberships.insert(),
            [{"class_id": class_id, "user_id": s, "role": "student"} for s in students]
            + [
                {"class_id": class_id, "user_id": g, "role": "guardian"}
                for gs in guardians.values()
                for g in gs
            ],
        )
        await conn.execute(
            guardian_links.insert(),
            [
                {
                    "class_id": class_id,
                    "guardian_id": g,
                    "student_id": s,
                    "relationship": "",
                    "status": "approved",
                    "requested_at": now,
                }
                for s, gs in guardians.items()
                for g in gs
            ],
        )
    return BigClass(class_id, school, students, guardians)


async def expected_rollup(srv: Server, notice: dict[str, Any]) -> dict[str, Any]:
    """The roll-up recomputed from every row with the domain's rules: what the pages must add to."""
    async with srv.app[HUB].store.read() as conn:
        students = await members_with_role(conn, notice["class_id"], Role.STUDENT)
        guardians = await guardians_of(conn, notice["class_id"])
        rows = list(
            await conn.execute(select(receipts).where(receipts.c.notice_id == notice["id"]))
        )
    by_user = {r.user_id: receipt_of(r) for r in rows}
    cov = coverage(
        NoticeKind(notice["kind"]), Audience(notice["audience"]), students, guardians, by_user
    )
    return {
        "counts": {
            **cov.counts,
            "recipients": len(rows),
            "states": dict(Counter(r.state.value for r in by_user.values())),
        },
        "covered": list(cov.covered),
        "not_covered": list(cov.not_covered),
        "states": {u: r.state.value for u, r in by_user.items()},
    }


async def page_through(teacher: Any, notice_id: int, which: str, limit: int) -> list[Any]:
    entries: list[Any] = []
    after = None
    while True:
        payload: dict[str, Any] = {"notice_id": notice_id, "list": which, "limit": limit}
        if after is not None:
            payload["after"] = after
        page = await teacher.request("notice.receipts", payload)
        assert set(page["next"]) == {which} and len(page[which]) <= limit
        entries += page[which]
        after = page["next"][which]
        if after is None:
            return entries


async def test_big_class_rollup_counts_pages_and_changes(server: Server) -> None:
    srv = server
    hub = srv.app[HUB]
    big = await seed_big_class(srv, 1000)
    teacher = await srv.client("li")
    notice = await teacher.publish_notice(big.class_id, "秋游回执", kind="confirm_required")
    nid = notice["id"]
    ref = NoticeRef(notice_id=nid)

    # A realistic mix, many at once (on PostgreSQL, both guardians of a child concurrently).
    rnd = random.Random(7)
    everyone = [g for gs in big.guardians.values() for g in gs]
    rnd.shuffle(everyone)
    delivered, read, confirmed = everyone[:600], everyone[600:800], everyone[800:1100]
    jobs = [notices.delivered(hub, g, NoticesDelivered(notice_ids=[nid])) for g in delivered]
    jobs += [notices.read(hub, g, ref) for g in read]
    jobs += [notices.confirm(hub, g, ref) for g in confirmed]
    for i in range(0, len(jobs), 50):
        await asyncio.gather(*jobs[i : i + 50])

    want = await expected_rollup(srv, notice)
    first = await teacher.receipts(nid)
    assert first["counts"] == want["counts"]
    assert first["counts"]["recipients"] == 2000 and first["counts"]["students"] == 1000
    assert len(first["not_covered"]) == 100 and len(first["receipts"]) == 100
    assert first["next"]["not_covered"] == first["not_covered"][-1]["student_id"]

    # Paging through not_covered returns every such student exactly once, in order.
    pages = await page_through(teacher, nid, "not_covered", 170)
    assert [s["student_id"] for s in pages] == want["not_covered"]
    assert pages[:100] == first["not_covered"]
    # The Python client pages the same way.
    assert await teacher.receipts_list(nid, "not_covered") == pages
    for s in pages:
        assert [g["id"] for g in s["guardians"]] == big.guardians[s["student_id"]]
        assert all(g["state"] == want["states"][g["id"]] for g in s["guardians"])
    covered = await page_through(teacher, nid, "covered", 500)
    assert [s["student_id"] for s in covered] == want["covered"]
    people = await page_through(teacher, nid, "receipts", 500)
    assert [r["user_id"] for r in people] == sorted(everyone)
    assert {r["user_id"]: r["state"] for r in people} == want["states"]

    # A student covered by one of two guardians: the other one's state still shows.
    one = next(s for s in covered if {g["state"] for g in s["guardians"]} != {"confirmed"})
    assert [g["state"] for g in one["guardians"]].count("confirmed") == 1

    # Changes after a confirm: the second guardian of a covered student changes states only;
    # a guardian of a student not covered moves that student across.
    second = next(g["id"] for g in one["guardians"] if g["state"] != "confirmed")
    await notices.confirm(hub, second, ref)
    moved = pages[0]["student_id"]
    mom = await srv.client(connect=False)
    mom.token = hub.tokens.issue(big.guardians[moved][1], big.school_id)
    await mom.connect()
    assert (await mom.confirm_notice(nid))["state"] == "confirmed"
    after = await teacher.receipts(nid)
    counts = first["counts"]
    assert after["counts"]["covered"] == counts["covered"] + 1
    assert after["counts"]["not_covered"] == counts["not_covered"] - 1
    assert after["counts"] == (await expected_rollup(srv, notice))["counts"]
    assert moved not in [s["student_id"] for s in after["not_covered"]]
    assert after["not_covered"][0]["student_id"] == pages[1]["student_id"]

    # The reminder reaches exactly the guardians of the students not covered.
    left = (await expected_rollup(srv, notice))["not_covered"]
    reminded = await teacher.request("notice.remind", {"notice_id": nid})
    assert reminded["students"] == left
    assert reminded["reminded"] == sorted(g for s in left for g in big.guardians[s])

    # The CSV has every student and guardian.
    text = await teacher.http("GET", f"/api/v1/notices/{nid}/receipts.csv?lang=en")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert len(rows) == 2000
    assert {r["Student ID"] for r in rows if r["Covered"] == "no"} == {str(s) for s in left}

    # The notice list's counts are the roll-up's.
    listed = await teacher.request("notice.list", {"class_id": big.class_id})
    assert listed["notices"][0]["counts"] == after["counts"]


async def test_receipts_paging_payload_is_checked(server: Server) -> None:
    teacher = await server.client("li")
    notice = await teacher.publish_notice(server.class_id, "家长会")
    for bad in (
        {"notice_id": notice["id"], "after": 3},
        {"notice_id": notice["id"], "list": "everyone"},
        {"notice_id": notice["id"], "limit": 501},
        {"notice_id": notice["id"], "limit": 0},
    ):
        with pytest.raises(RequestError) as err:
            await teacher.request("notice.receipts", bad)
        assert err.value.code == "bad_request"
    page = await teacher.http(
        "GET", f"/api/v1/notices/{notice['id']}/receipts?list=not_covered&limit=2"
    )
    assert len(page["not_covered"]) == 2 and page["next"]["not_covered"] is not None
    assert "receipts" not in page and page["counts"]["students"] == 6


async def test_guardian_linked_after_confirming_covers_the_new_child(server: Server) -> None:
    teacher = await server.client("li")
    mom = await server.client("wang_mom")
    notice = await teacher.publish_notice(server.class_id, "体检", kind="confirm_required")
    await mom.confirm_notice(notice["id"])
    before = await teacher.receipts(notice["id"])
    hub = server.app[HUB]
    async with hub.store.transaction() as conn:
        await link_guardian(
            conn,
            server.class_id,
            server.uid("wang_mom"),
            server.uid("zhaolei"),
            "aunt",
            status="approved",
            by=server.uid("li"),
            now=time.time(),
        )
    after = await teacher.receipts(notice["id"])
    assert after["counts"]["covered"] == before["counts"]["covered"] + 1
    assert server.uid("zhaolei") in [s["student_id"] for s in after["covered"]]
    assert after["counts"] == (await expected_rollup(server, notice))["counts"]
