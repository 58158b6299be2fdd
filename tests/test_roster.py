"""Roster import: a CSV of students and guardians, all rows or none, over REST and from the
``homeroom import-roster`` console command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select

from clients.homeroom import HomeroomClient, RequestError
from realtime.actions.accounts import create_user
from realtime.actions.roster import create_class
from realtime.auth import verify_password
from realtime.store import open_store
from realtime.store.schema import guardian_links, memberships, schools, users
from realtime.transport.rest import HUB
from tests.conftest import DATABASES, Server, start_on, stop_server
from tests.services import drop_postgres_database

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parent.parent
HEADER = "student,student_username,guardian,guardian_username,relationship,phone\n"

GOOD = (
    "\ufeff"  # spreadsheet programs start UTF-8 CSV with a BOM
    + HEADER
    + "孙悦 Sun Yue,sunyue,孙悦妈妈,sun_mom,mother,13911112222\n"
    + "孙悦 Sun Yue,sunyue,孙悦爸爸,sun_dad,father,\n"
    + '"周杰, Jr.",zhoujie,,,,\n'
    + "吴迪 Wu Di,wudi,吴迪奶奶,wu_grandma,grandmother,+86 139 0000 1111\n"
)

BAD = (
    HEADER
    + "钱多 Qian Duo,qianduo,钱多妈妈,qian_mom,mother,13922223333\n"  # line 2: fine
    + ",nameless,,,,\n"  # line 3: no student name
    + "冯一 Feng Yi,fengyi,,,,\n"  # line 4: fine
    + "陈二 Chen Er,chener,陈二妈妈,chen_mom,mother,call me\n"  # line 5: not a phone
)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=DATABASES)
async def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    server, name = await start_on(request.param, tmp_path_factory.mktemp("roster"))
    yield server
    await stop_server(server)
    if name:
        drop_postgres_database(name)


async def _upload(srv: Server, token: str | None, text: str) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "text/csv; charset=utf-8"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{srv.url}/api/v1/classes/{srv.class_id}/roster",
            data=text.encode("utf-8"),
            headers=headers,
        ) as resp,
    ):
        return resp.status, await resp.json()


async def _members(teacher: HomeroomClient, class_id: int) -> list[dict[str, Any]]:
    return (await teacher.http("GET", f"/api/v1/classes/{class_id}/members"))["members"]


async def test_teacher_imports_a_roster(srv: Server) -> None:
    teacher = await srv.client("li", connect=False)
    before = await _members(teacher, srv.class_id)
    status, body = await _upload(srv, teacher.token, GOOD)
    assert status == 201, body
    assert body["rows"] == 4
    created = {c["username"]: c for c in body["created"]}
    assert set(created) == {"sunyue", "sun_mom", "sun_dad", "zhoujie", "wudi", "wu_grandma"}
    assert created["zhoujie"]["display_name"] == "周杰, Jr."
    assert all(len(c["password"]) >= 12 for c in created.values())

    after = await _members(teacher, srv.class_id)
    assert len(after) == len(before) + 6
    by_name = {m["name"]: m for m in after}
    assert by_name["孙悦 Sun Yue"]["role"] == "student"
    sun = by_name["孙悦 Sun Yue"]["id"]
    assert by_name["孙悦妈妈"]["children"] == [sun] and by_name["孙悦爸爸"]["children"] == [sun]
    assert by_name["孙悦妈妈"]["phone"] == "13911112222"
    assert by_name["吴迪奶奶"]["phone"] == "+86 139 0000 1111"

    # The printed passwords work, and each new person is where the file put them.
    mom = await srv.client(None)
    await mom.login("sun_mom", created["sun_mom"]["password"])
    me = await mom.http("GET", "/api/v1/me")
    assert me["classes"][0]["id"] == srv.class_id
    assert [k["name"] for k in me["classes"][0]["children"]] == ["孙悦 Sun Yue"]
    await mom.connect()
    assert f"class:{srv.class_id}:guardians" in mom.cursors
    assert f"class:{srv.class_id}:students" not in mom.cursors
    kid = await srv.client(None)
    await kid.login("zhoujie", created["zhoujie"]["password"])
    await kid.connect()
    assert f"class:{srv.class_id}:students" in kid.cursors

    # Importing the same file again creates nobody and links nobody twice.
    status, body = await _upload(srv, teacher.token, GOOD)
    assert status == 201 and body["created"] == []
    assert len(await _members(teacher, srv.class_id)) == len(after)


async def test_a_file_with_bad_rows_changes_nothing(srv: Server) -> None:
    teacher = await srv.client("chen", connect=False)
    before = await _members(teacher, srv.class_id)
    status, body = await _upload(srv, teacher.token, BAD)
    assert status == 400
    assert body["ok"] is False and body["error"]["code"] == "bad_request"
    rejected = body["error"]["rejected"]
    assert [r["line"] for r in rejected] == [3, 5]
    assert "student name is empty" in rejected[0]["reason"]
    assert "phone" in rejected[1]["reason"]
    assert "line 3" in body["error"]["message"] and "line 5" in body["error"]["message"]
    assert await _members(teacher, srv.class_id) == before
    # Not even the good rows' accounts exist: their usernames are still free.
    for username in ("qianduo", "qian_mom", "fengyi"):
        with pytest.raises(RequestError) as err:
            await (await srv.client(None)).login(username, "whatever-password")
        assert err.value.code == "unauthorized"

    # The corrected file imports, creating exactly those accounts: the refused one made none.
    fixed = BAD.replace(",nameless,", "无名 Wu Ming,nameless,").replace("call me", "")
    status, body = await _upload(srv, teacher.token, fixed)
    assert status == 201, body
    assert {c["username"] for c in body["created"]} == {
        "qianduo",
        "qian_mom",
        "nameless",
        "fengyi",
        "chener",
        "chen_mom",
    }


async def test_bad_files_are_refused_whole(srv: Server) -> None:
    teacher = await srv.client("li", connect=False)
    async with srv.app[HUB].store.transaction() as conn:
        other_school = (
            await conn.execute(schools.insert().values(name="另一所学校"))
        ).inserted_primary_key[0]
        await create_user(conn, other_school, "elsewhere_kid", "外校学生", None, now=0.0)
    before = await _members(teacher, srv.class_id)
    for text, line, words in (
        ("name,username\n张三,zhangsan\n", 1, "missing columns"),
        (HEADER, 1, "no rows"),
        (HEADER + "郑七,zhengqi,,,mother,\n", 2, "without a guardian"),
        (HEADER + "王五,wangwu,王五妈妈,wangwu,mother,\n", 2, "own guardian"),
        (HEADER + "王五,wang wu,,,,\n", 2, "student_username"),
        (HEADER + "王五,wangwu,,,,\n王六,wangwu,,,,\n", 3, "another name above"),
        (HEADER + "王五,wangwu,,,,,extra\n", 2, "more fields"),
        # A teacher of the class cannot be imported as one of its students.
        (HEADER + "陈老师,chen,,,,\n", 2, "teacher here"),
        # A username taken in another school is caught against the database.
        (HEADER + "王五,wangwu,,,,\n外校学生,elsewhere_kid,,,,\n", 3, "another school"),
    ):
        status, body = await _upload(srv, teacher.token, text)
        assert status == 400, (text, body)
        assert [r["line"] for r in body["error"]["rejected"]] == [line], text
        assert words in body["error"]["rejected"][0]["reason"], text
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{srv.url}/api/v1/classes/{srv.class_id}/roster",
            data=b"\xff\xfe not utf-8",
            headers={"Authorization": f"Bearer {teacher.token}"},
        ) as resp,
    ):
        assert resp.status == 400
        assert "UTF-8" in (await resp.json())["error"]["message"]
    assert await _members(teacher, srv.class_id) == before


async def test_a_student_or_parent_cannot_import(srv: Server) -> None:
    teacher = await srv.client("li", connect=False)
    before = await _members(teacher, srv.class_id)
    for username in ("wanghao", "wang_mom"):
        c = await srv.client(username, connect=False)
        status, body = await _upload(srv, c.token, HEADER + "黑客,hacker,,,,\n")
        assert status == 403 and body["error"]["code"] == "forbidden", username
    status, body = await _upload(srv, None, HEADER + "黑客,hacker,,,,\n")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert await _members(teacher, srv.class_id) == before


async def test_a_teacher_cannot_pull_existing_accounts_into_their_class(srv: Server) -> None:
    """The attack of issue 11 item 1: a teacher of another class imports rows naming existing
    accounts (a guardian of class 1, a student of class 1) to enrol them and read the phone."""
    village = int(srv.demo["linked_class_ids"][0])
    rogue = await srv.client("wu", connect=False)  # a teacher of the village class
    attack = (
        HEADER
        + "新学生 New Kid,rogue_kid_1,王浩妈妈,wang_mom,mother,13700000000\n"
        + "王浩 Wang Hao,wanghao,,,,\n"
        + "新学生二 Kid Two,rogue_kid_2,新家长,rogue_parent,father,\n"
    )
    status, body = await _upload_to(srv, rogue.token, village, attack)
    assert status == 201, body
    # The accounts the file created are in; the existing ones are reported, not touched.
    assert {c["username"] for c in body["created"]} == {
        "rogue_kid_1",
        "rogue_kid_2",
        "rogue_parent",
    }
    pending = {(p["line"], p["username"]) for p in body["pending"]}
    assert pending == {(2, "wang_mom"), (3, "wanghao")}
    assert all("join code" in p["reason"] for p in body["pending"])
    members = await _members(rogue, village)
    ids = {m["id"] for m in members}
    assert srv.uid("wang_mom") not in ids and srv.uid("wanghao") not in ids
    assert "13800000000" not in str(members) and "13700000000" not in str(members)
    # Nothing changed for the family: no new class, no new link, the phone untouched.
    mom = await srv.client("wang_mom", connect=False)
    me = await mom.http("GET", "/api/v1/me")
    assert [c["id"] for c in me["classes"]] == [srv.class_id] and me["pending_links"] == []
    async with srv.app[HUB].store.read() as conn:
        links = list(
            await conn.execute(
                select(guardian_links.c.class_id).where(
                    guardian_links.c.guardian_id == srv.uid("wang_mom")
                )
            )
        )
        phone = (
            await conn.execute(select(users.c.phone).where(users.c.id == srv.uid("wang_mom")))
        ).scalar_one()
    assert {r.class_id for r in links} == {srv.class_id} and phone == "13800000000"
    # A school admin may import such a row (the school vouches for it).
    admin = await srv.client("admin", connect=False)
    status, body = await _upload_to(
        srv, admin.token, village, HEADER + "新学生 New Kid,rogue_kid_1,王浩妈妈,wang_mom,mother,\n"
    )
    assert status == 201 and body["pending"] == [], body
    async with srv.app[HUB].store.read() as conn:
        kid = (
            await conn.execute(select(users.c.id).where(users.c.username == "rogue_kid_1"))
        ).scalar_one()
    guardians = {m["id"]: m for m in await _members(admin, village)}
    assert guardians[srv.uid("wang_mom")]["children"] == [kid]


async def _upload_to(
    srv: Server, token: str | None, class_id: int, text: str
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{srv.url}/api/v1/classes/{class_id}/roster",
            data=text.encode("utf-8"),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        ) as resp,
    ):
        return resp.status, await resp.json()


# --- the console command ------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "realtime.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_import_roster_console_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/school.db"
    store = open_store(url)
    await store.migrate()
    async with store.transaction() as conn:
        school = (
            await conn.execute(schools.insert().values(name="乡村小学"))
        ).inserted_primary_key[0]
        class_id = await create_class(conn, school, "三年级一班")
    await store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEROOM_")}
    env.update(
        HOMEROOM_DATABASE_URL=url, HOMEROOM_SECRET="console-secret-0123456789-abcdefghijklmn"
    )
    good = tmp_path / "class.csv"
    good.write_text(GOOD, encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD, encoding="utf-8")

    result = _cli("import-roster", str(bad), "--class", str(class_id), env=env)
    assert result.returncode == 1
    assert "NOT imported" in result.stderr
    assert "line 3:" in result.stderr and "line 5:" in result.stderr

    result = _cli("import-roster", str(good), "--class", str(class_id), env=env)
    assert result.returncode == 0, result.stderr
    assert "imported 4 rows" in result.stdout
    printed = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in {"sunyue", "sun_mom", "sun_dad", "zhoujie", "wudi", "wu_grandma"}:
            printed[parts[0]] = parts[-1]
    assert len(printed) == 6

    store = open_store(url)
    async with store.read() as conn:
        rows = {
            r.username: r
            for r in await conn.execute(select(users.c.id, users.c.username, users.c.password_hash))
        }
        roles = {
            (r.user_id, r.role)
            for r in await conn.execute(
                select(memberships.c.user_id, memberships.c.role).where(
                    memberships.c.class_id == class_id
                )
            )
        }
        links = {
            (r.guardian_id, r.student_id, r.status)
            for r in await conn.execute(select(guardian_links))
        }
    await store.close()
    # Only the good file's people exist (the bad file left nothing behind).
    assert set(rows) == set(printed)
    for username, password in printed.items():
        assert verify_password(rows[username].password_hash, password), username
    sid = rows["sunyue"].id
    assert (sid, "student") in roles and (rows["sun_mom"].id, "guardian") in roles
    assert (rows["sun_mom"].id, sid, "approved") in links
    assert (rows["sun_dad"].id, sid, "approved") in links
    assert len(links) == 3
