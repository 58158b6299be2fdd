"""The audit log: written with the action (same transaction), rolled back with it, read a page at
a time by school admins of the school only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from clients.homeroom import RequestError
from realtime.actions.accounts import create_user
from realtime.store.schema import audit_log, schools
from realtime.transport.rest import HUB
from tests.conftest import Server, make_settings, start_server, stop_server
from tests.services import drop_postgres_database, postgres_database

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]

HEADER = "student,student_username,guardian,guardian_username,relationship,phone\n"


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    name = None
    overrides: dict[str, Any] = {}
    if request.param == "postgresql":
        overrides["database_url"], name = postgres_database()
    server = await start_server(make_settings(tmp_path_factory.mktemp("audit"), **overrides))
    yield server
    await stop_server(server)
    if name:
        drop_postgres_database(name)


async def _rows(srv: Server) -> int:
    async with srv.app[HUB].store.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(audit_log))).scalar_one())


async def _upload(srv: Server, token: str, text: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{srv.url}/api/v1/classes/{srv.class_id}/roster",
            data=text.encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        ) as resp,
    ):
        return resp.status, await resp.json()


async def test_actions_are_recorded_and_admins_read_them(srv: Server) -> None:
    cid = srv.class_id
    li = await srv.client("li")
    admin = await srv.client("admin", connect=False)
    student = await srv.client("liming")
    # A roster import, a moderation delete, a mute, an export, a link request decided.
    status, imported = await _upload(srv, li.token, HEADER + "新同学,audit_kid,,,,\n")
    assert status == 201, imported
    msg = await student.send_chat(f"class:{cid}:students", "something rude")
    await li.request("chat.delete", {"message_id": msg["id"]})
    await li.request("chat.mute", {"class_id": cid, "user_id": srv.uid("liming"), "minutes": 10})
    notice = await li.publish_notice(cid, "秋游同意书", kind="confirm_required")
    await li.http("GET", f"/api/v1/notices/{notice['id']}/receipts.csv")
    parent = await srv.client(None)
    reg = await parent.http(
        "POST",
        "/api/v1/auth/register",
        {
            "username": "audit_parent",
            "password": "a-long-password",
            "display_name": "赵磊妈妈",
            "join_code": srv.demo["join_code"],
        },
        auth=False,
    )
    parent.token = reg["access_token"]
    link = await parent.http(
        "POST", "/api/v1/join", {"join_code": srv.demo["join_code"], "child_name": "赵磊 Zhao Lei"}
    )
    await li.http("POST", f"/api/v1/links/{link['link']['id']}/reject")
    asked = await student.ask(cid, "匿名问题?", anonymous=True)
    await li.request("question.dismiss", {"question_id": asked["id"]})

    log = await admin.http("GET", "/api/v1/audit")
    entries = log["entries"]
    assert entries[0]["action"] == "question.dismiss"
    assert entries[0]["target"] == f"question:{asked['id']}" and entries[0]["detail"] == {}
    full, entries = entries, entries[1:]
    assert [e["action"] for e in entries[:5]] == [
        "link.rejected",
        "export.receipts",
        "chat.mute",
        "chat.delete",
        "roster.import",
    ]
    by = {e["action"]: e for e in entries}
    assert all(e["actor"] == {"id": srv.uid("li"), "name": "李老师 Ms. Li"} for e in entries[:5])
    assert by["roster.import"]["detail"]["created"] == ["audit_kid"]
    assert by["chat.delete"]["target"] == f"message:{msg['id']}"
    assert by["chat.delete"]["detail"]["sender_id"] == srv.uid("liming")
    assert by["chat.mute"]["target"] == f"user:{srv.uid('liming')}"
    assert by["export.receipts"]["target"] == f"notice:{notice['id']}"
    assert by["link.rejected"]["detail"]["student_id"] == srv.uid("zhaolei")
    assert all(e["class_id"] == cid for e in entries[:5])

    # Pages: newest first, no overlap, and the last page says so.
    first = await admin.http("GET", "/api/v1/audit?limit=2")
    second = await admin.http("GET", f"/api/v1/audit?limit=2&before={first['next_before']}")
    ids = [e["id"] for e in first["entries"] + second["entries"]]
    assert ids == [e["id"] for e in full[:4]] and ids == sorted(ids, reverse=True)
    last = await admin.http("GET", f"/api/v1/audit?limit=50&before={entries[-1]['id']}")
    assert last == {"entries": [], "next_before": None}

    # Nobody else reads it: teachers, students, guardians, another school's admin.
    for name in ("li", "chen", "wanghao", "wang_mom"):
        c = await srv.client(name, connect=False)
        with pytest.raises(RequestError) as err:
            await c.http("GET", "/api/v1/audit")
        assert err.value.code == "forbidden", name
    hub = srv.app[HUB]
    async with hub.store.transaction() as conn:
        other = (
            await conn.execute(schools.insert().values(name="另一所学校"))
        ).inserted_primary_key[0]
        other_admin = await create_user(
            conn, other, "other_admin", "外校管理员", None, school_admin=True, now=0.0
        )
    stranger = await srv.client(None)
    stranger.token = hub.tokens.issue(other_admin, other)
    assert (await stranger.http("GET", "/api/v1/audit"))["entries"] == []
    with pytest.raises(RequestError) as err:
        await admin.http("GET", "/api/v1/audit?limit=0")
    assert err.value.code == "bad_request"


async def test_an_action_that_fails_leaves_no_entry(srv: Server) -> None:
    """The import writes its entry and then finds a bad row: both roll back together."""
    li = await srv.client("li", connect=False)
    before = await _rows(srv)
    # The second row is refused against the database, after the entry was written.
    status, body = await _upload(
        srv, li.token, HEADER + "新同学二,audit_kid2,,,,\n陈老师,chen,,,,\n"
    )
    assert status == 400 and "teacher here" in body["error"]["rejected"][0]["reason"]
    assert await _rows(srv) == before
    # A refused action records nothing either.
    wanghao = await srv.client("wanghao")
    with pytest.raises(RequestError):
        await wanghao.request(
            "chat.mute", {"class_id": srv.class_id, "user_id": srv.uid("liming"), "minutes": 5}
        )
    assert await _rows(srv) == before
