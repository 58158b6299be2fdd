"""A school that sets itself up over REST: years, classes, teachers, a student moved at the
start of a year with their guardians, every pending link request, the join code as a QR code;
each change in the audit log, a refused one changing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clients.homeroom import RequestError
from realtime.actions.accounts import create_user
from realtime.actions.roster import link_guardian
from realtime.app import HUB
from realtime.store.schema import schools
from tests.conftest import Server


async def _refused(coro: object) -> RequestError:
    with pytest.raises(RequestError) as err:
        await coro  # type: ignore[misc]
    return err.value


async def test_admin_sets_up_a_year_classes_and_teachers(server: Server) -> None:
    admin = await server.client("admin", connect=False)
    year = (await admin.http("POST", "/api/v1/school/years", {"name": "2026-2027学年"}))["year"]
    err = await _refused(admin.http("POST", "/api/v1/school/years", {"name": "2026-2027学年"}))
    assert err.code == "conflict" and err.details["reason"] == "already_exists"

    made = await admin.http(
        "POST", "/api/v1/school/classes", {"name": "三年级（2）班", "school_year_id": year["id"]}
    )
    cls = made["class"]
    assert len(cls["join_code"]) == 8
    err = await _refused(admin.http("POST", "/api/v1/school/classes", {"name": "三年级（2）班"}))
    assert err.code == "conflict"

    # Head teacher, then a new head: the first one stays as a subject teacher.
    li, chen = server.uid("li"), server.uid("chen")
    path = f"/api/v1/classes/{cls['id']}/teachers"
    await admin.http("POST", path, {"user_id": li, "role": "head_teacher"})
    await admin.http("POST", path, {"user_id": chen, "role": "head_teacher"})
    school = await admin.http("GET", "/api/v1/school")
    mine = next(c for c in school["classes"] if c["id"] == cls["id"])
    roles = {(t["user_id"], t["role"]) for t in mine["teachers"]}
    assert roles == {(li, "teacher"), (chen, "head_teacher")}
    assert mine["school_year_id"] == year["id"] and mine["students"] == 0
    # A guardian cannot be made a teacher of their child's class.
    err = await _refused(
        admin.http(
            "POST",
            f"/api/v1/classes/{server.class_id}/teachers",
            {"user_id": server.uid("wang_mom"), "role": "teacher"},
        )
    )
    assert err.code == "bad_request"

    # The new head teacher now sees the class, and can print its QR code.
    chen_client = await server.client("chen", connect=False)
    svg = await chen_client.http("GET", f"/api/v1/classes/{cls['id']}/join-qr.svg")
    assert svg.startswith("<?xml") and "<svg" in svg and "<path" in svg

    # Archiving the year archives its class: no more teachers there.
    await admin.http("POST", f"/api/v1/school/years/{year['id']}/archive")
    err = await _refused(admin.http("POST", path, {"user_id": li, "role": "teacher"}))
    assert err.code == "conflict" and err.details["reason"] == "archived"
    school = await admin.http("GET", "/api/v1/school")
    assert next(c for c in school["classes"] if c["id"] == cls["id"])["archived"] is True

    actions = [e["action"] for e in (await admin.http("GET", "/api/v1/audit"))["entries"]]
    for action in ("year.create", "class.create", "teacher.assign", "year.archive"):
        assert action in actions


async def test_student_moves_with_guardians_and_pending_links(server: Server) -> None:
    admin = await server.client("admin", connect=False)
    new = (await admin.http("POST", "/api/v1/school/classes", {"name": "四年级（1）班"}))["class"]
    wanghao = server.uid("wanghao")
    moved = await admin.http(
        "POST",
        f"/api/v1/classes/{server.class_id}/move",
        {"student_id": wanghao, "to_class_id": new["id"]},
    )
    assert moved["to_class_id"] == new["id"]
    # His mother follows him; she sees the new class and no longer the old one.
    mom = await server.client("wang_mom", connect=False)
    members = await mom.http("GET", f"/api/v1/classes/{new['id']}/members")
    assert "王浩 Wang Hao" in str(members)
    err = await _refused(mom.http("GET", f"/api/v1/classes/{server.class_id}/members"))
    assert err.code == "forbidden"
    # Moving him again from the old class: he is not there.
    err = await _refused(
        admin.http(
            "POST",
            f"/api/v1/classes/{server.class_id}/move",
            {"student_id": wanghao, "to_class_id": new["id"]},
        )
    )
    assert err.code in ("bad_request", "not_found")

    # Every pending request of the school, with the phone and relationship to vet it.
    hub = server.app[HUB]
    async with hub.store.transaction() as conn:
        gid = await create_user(
            conn, 1, "zhao_aunt", "赵磊姑姑", None, phone="13912345678", now=time.time()
        )
        await link_guardian(
            conn,
            server.class_id,
            gid,
            server.uid("zhaolei"),
            "aunt",
            status="pending",
            by=None,
            now=time.time(),
        )
    links = (await admin.http("GET", "/api/v1/school/links"))["links"]
    aunt = next(x for x in links if x["guardian"]["id"] == gid)
    assert aunt["guardian"]["phone"] == "13912345678" and aunt["relationship"] == "aunt"
    assert aunt["student"]["name"] == "赵磊 Zhao Lei" and aunt["class_id"] == server.class_id

    # The school's time zone: a real one only.
    err = await _refused(admin.http("PUT", "/api/v1/school/settings", {"time_zone": "Mars/Base"}))
    assert err.code == "bad_request"
    await admin.http("PUT", "/api/v1/school/settings", {"time_zone": "Asia/Urumqi"})
    assert (await admin.http("GET", "/api/v1/school"))["school"]["time_zone"] == "Asia/Urumqi"


async def test_another_schools_admin_sees_nothing_here(server: Server) -> None:
    hub = server.app[HUB]
    async with hub.store.transaction() as conn:
        other = (
            await conn.execute(schools.insert().values(name="另一所学校"))
        ).inserted_primary_key[0]
        other_admin = await create_user(
            conn, other, "other_admin2", "外校管理员", None, school_admin=True, now=0.0
        )
    stranger = await server.client(None)
    stranger.token = hub.tokens.issue(other_admin, other)
    err = await _refused(stranger.http("POST", f"/api/v1/classes/{server.class_id}/archive"))
    assert err.code == "not_found"
    assert (await stranger.http("GET", "/api/v1/school/links"))["links"] == []
    assert (await stranger.http("GET", "/api/v1/school"))["classes"] == []


# --- the console ------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "realtime.cli", *args],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_school_set_up_from_the_console_alone(tmp_path: Path) -> None:
    """No demo seed and no Python: an admin account, a year, a class, its teacher, its QR code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEROOM_")}
    env.update(
        HOMEROOM_DATABASE_URL=f"sqlite:///{tmp_path}/school.db",
        HOMEROOM_SECRET="console-secret-0123456789-abcdefghijklmn",
    )
    ok = _cli(
        "create-user", "boss", "--password", "long-enough-1", "--school-admin",
        "--school", "乡村小学", env=env,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    ok = _cli("create-user", "wang_t", "--password", "long-enough-2", env=env)
    assert ok.returncode == 0, ok.stderr
    refused = _cli("school", "--as", "wang_t", "add-year", "2026", env=env)
    assert refused.returncode == 1 and "forbidden" in refused.stderr

    year = json.loads(_cli("school", "--as", "boss", "add-year", "2026学年", env=env).stdout)
    made = _cli(
        "school", "--as", "boss", "add-class", "一年级（1）班", "--year", str(year["year"]["id"]),
        env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    cls = json.loads(made.stdout)["class"]
    ok = _cli(
        "school", "--as", "boss", "teacher", str(cls["id"]), "wang_t", "--role", "head_teacher",
        env=env,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    shown = json.loads(_cli("school", "--as", "boss", "show", env=env).stdout)
    assert shown["classes"][0]["teachers"][0]["role"] == "head_teacher"
    assert shown["school"]["time_zone"] == "Asia/Shanghai"
    qr = _cli(
        "school", "--as", "wang_t", "qr", str(cls["id"]), "--origin", "https://school.example",
        env=env,
    )  # fmt: skip
    assert qr.returncode == 0 and "<svg" in qr.stdout, qr.stderr

    # The start of the next year: a roster, a second class, a student moved with his mother,
    # the pending link requests, then the old class and year archived.
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "student,student_username,guardian,guardian_username,relationship,phone\n"
        "周杰,zhoujie,周杰妈妈,zhou_mom,mother,13900000002\n",
        encoding="utf-8",
    )
    ok = _cli("import-roster", str(roster), "--class", str(cls["id"]), env=env)
    assert ok.returncode == 0, ok.stderr
    year2 = json.loads(_cli("school", "--as", "boss", "add-year", "2027学年", env=env).stdout)
    made = _cli(
        "school", "--as", "boss", "add-class", "二年级（1）班", "--year", str(year2["year"]["id"]),
        env=env,
    )  # fmt: skip
    cls2 = json.loads(made.stdout)["class"]
    moved = _cli(
        "school", "--as", "boss", "move-student", str(cls["id"]), "zhoujie", "--to",
        str(cls2["id"]), env=env,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    shown = json.loads(_cli("school", "--as", "boss", "show", env=env).stdout)
    counts = {c["id"]: c["students"] for c in shown["classes"]}
    assert counts == {cls["id"]: 0, cls2["id"]: 1}
    links = _cli("school", "--as", "boss", "links", env=env)
    assert links.returncode == 0 and json.loads(links.stdout)["links"] == []
    ok = _cli("school", "--as", "boss", "archive-year", str(year["year"]["id"]), env=env)
    assert ok.returncode == 0, ok.stderr
    shown = json.loads(_cli("school", "--as", "boss", "show", env=env).stdout)
    assert {c["id"]: c["archived"] for c in shown["classes"]} == {
        cls["id"]: True,
        cls2["id"]: False,
    }
