"""Events published on commit: the store's transaction publishes what it appended, after the
commit and only then, and every state change tells the people it concerns.
"""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from realtime.store import Store
from realtime.store.db import StoredEvent
from realtime.store.schema import live_sessions
from realtime.transport.rest import HUB, LIVE
from tests.conftest import Server

pytestmark = pytest.mark.timeout(60)

STREAM = "class:1:students"


async def test_store_publishes_after_commit_and_never_on_rollback(store: Store) -> None:
    published: list[list[tuple[int, Any]]] = []
    stored_when_told: list[list[int]] = []

    async def publisher(events: list[StoredEvent]) -> None:
        # Whoever is told can already read it: the commit came first.
        async with store.read() as conn:
            stored = await store.events_after(conn, STREAM, 0, 100)
        stored_when_told.append([e.seq for e in stored])
        published.append([(e.seq, (e.data or {}).get("i")) for e in events])

    store.publish_to(publisher)
    async with store.transaction() as conn:
        await store.append(conn, STREAM, "test.event", {"i": "a"})
        await store.append(conn, STREAM, "test.event", {"i": "b"})
    assert published == [[(1, "a"), (2, "b")]]
    assert stored_when_told == [[1, 2]]

    with pytest.raises(RuntimeError):
        async with store.transaction() as conn:
            await store.append(conn, STREAM, "test.event", {"i": "rolled back"})
            raise RuntimeError("the action failed after appending")
    assert len(published) == 1

    async def returns_early() -> str:
        async with store.transaction() as conn:
            await store.append(conn, STREAM, "test.event", {"i": "c"})
            return "done"

    assert await returns_early() == "done"
    assert published[-1] == [(3, "c")]

    # A transaction that appends nothing publishes nothing; a read never publishes, nor keeps
    # what it wrote (on PostgreSQL a write there is refused: reads run in autocommit).
    async with store.transaction() as conn:
        await store.last_seqs(conn, [STREAM])
    with contextlib.suppress(RuntimeError):
        async with store.read() as conn:
            await store.append(conn, STREAM, "test.event", {"i": "in a read: not kept"})
    assert len(published) == 2
    async with store.read() as conn:
        assert [e.seq for e in await store.events_after(conn, STREAM, 0, 100)] == [1, 2, 3]


def _record_bus(srv: Server) -> list[dict[str, Any]]:
    """Every stream event this node publishes on its bus, in order."""
    hub = srv.app[HUB]
    seen: list[dict[str, Any]] = []
    publish = hub.bus.publish

    async def recording(message: dict[str, Any]) -> None:
        if message.get("t") == "events":
            seen.extend(message["events"])
        await publish(message)

    hub.bus.publish = recording  # type: ignore[method-assign]
    return seen


async def test_a_second_device_sees_the_read_position(server: Server) -> None:
    stream = f"class:{server.class_id}:students"
    phone = await server.client("wanghao")
    laptop = await server.client("wanghao")
    liming = await server.client("liming")
    sent = [await liming.send_chat(stream, f"作业第{i}题") for i in range(3)]
    await laptop.wait_for(lambda e: e["type"] == "chat.message" and e["seq"] == sent[-1]["seq"])

    ack = await phone.request("chat.read", {"stream": stream, "seq": sent[0]["seq"]})
    assert ack["unread"] == 2
    ev = await laptop.wait_for(lambda e: e["type"] == "chat.read")
    assert ev["stream"] == f"user:{server.uid('wanghao')}"
    assert ev["data"] == {"stream": stream, "read_seq": sent[0]["seq"], "unread": 2}
    await phone.request("chat.read", {"stream": stream, "seq": sent[-1]["seq"]})
    ev = await laptop.wait_for(lambda e: e["type"] == "chat.read" and e["data"]["unread"] == 0)
    assert ev["data"]["read_seq"] == sent[-1]["seq"]
    # Reading an older position again moves nothing and tells nobody.
    mine = f"user:{server.uid('wanghao')}"
    before = len(laptop.events[mine])
    again = await phone.request("chat.read", {"stream": stream, "seq": sent[0]["seq"]})
    assert again["read_seq"] == sent[-1]["seq"]
    # Sentinel down the same stream: a mute lands on the same user stream after it.
    teacher = await server.client("li")
    await teacher.request(
        "chat.mute", {"class_id": server.class_id, "user_id": server.uid("wanghao"), "minutes": 0}
    )
    await laptop.wait_for(lambda e: e["type"] == "chat.muted")
    assert [e["type"] for e in laptop.events[mine][before:]] == ["chat.muted"]
    # A classmate does not learn what Wang Hao has read.
    assert not any(e["type"] == "chat.read" for evs in liming.events.values() for e in evs)


async def test_teachers_are_told_of_a_link_request_and_its_decision(server: Server) -> None:
    teacher = await server.client("li")
    colleague = await server.client("chen")
    guardian = await server.client()
    body = await guardian.http(
        "POST",
        "/api/v1/auth/register",
        {
            "username": "zhao_mom",
            "password": "zhao-mom-password",
            "display_name": "赵磊妈妈",
            "join_code": server.demo["join_code"],
        },
        auth=False,
    )
    guardian.token = body["access_token"]
    await guardian.connect()
    link = await guardian.http(
        "POST",
        "/api/v1/join",
        {
            "join_code": server.demo["join_code"],
            "child_name": "赵磊 Zhao Lei",
            "relationship": "母亲",
        },
    )
    staff = f"staff:{server.class_id}"
    for c in (teacher, colleague):
        ev = await c.wait_for(lambda e: e["type"] == "link.requested")
        assert ev["stream"] == staff
        assert ev["data"]["id"] == link["link"]["id"]
        assert ev["data"]["guardian_name"] == "赵磊妈妈"
        assert ev["data"]["student_name"] == "赵磊 Zhao Lei"
        assert ev["data"]["relationship"] == "母亲"

    await teacher.http("POST", f"/api/v1/links/{link['link']['id']}/approve")
    ev = await colleague.wait_for(lambda e: e["type"] == "link.decided")
    assert ev["stream"] == staff and ev["data"]["status"] == "approved"
    mine = await guardian.wait_for(lambda e: e["type"] == "link.decided")
    assert mine["stream"] == f"user:{body['user']['id']}"
    assert mine["data"]["student_id"] == server.uid("zhaolei")
    # The link request is not for students' eyes.
    student = await server.client("zhaolei")
    assert staff not in student.cursors


HEADER = "student,student_username,guardian,guardian_username,relationship,phone\n"


async def _upload(srv: Server, token: str, text: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{srv.url}/api/v1/classes/{srv.class_id}/roster",
            data=text.encode("utf-8"),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        ) as resp,
    ):
        return resp.status, await resp.json()


async def test_roster_import_tells_teachers_and_a_refused_one_tells_nobody(
    server: Server,
) -> None:
    published = _record_bus(server)
    # The school admin imports (a teacher may not link an existing account: see test_roster).
    admin = await server.client("admin")
    teacher = await server.client("li")
    mom = await server.client("wang_mom")
    # The first row links Wang Hao's mother to a new student (an event is appended), the second
    # names a teacher as a student: the file is refused and its transaction rolled back.
    row = "王小妹 Wang Xiaomei,wangxiaomei,王浩妈妈,wang_mom,mother,\n"
    status, _ = await _upload(server, admin.token or "", HEADER + row + "陈老师,chen,,,,\n")
    assert status == 400
    status, body = await _upload(server, admin.token or "", HEADER + row)
    assert status == 201, body
    ev = await teacher.wait_for(lambda e: e["type"] == "roster.imported")
    assert ev["stream"] == f"staff:{server.class_id}"
    assert ev["data"]["rows"] == 1 and server.uid("wang_mom") in ev["data"]["guardians"]
    decided = await mom.wait_for(lambda e: e["type"] == "link.decided")
    assert decided["data"]["student_id"] == ev["data"]["students"][0]
    # Only the accepted file's events ever left the node: each (stream, seq) once.
    keys = [(e["stream"], e["seq"]) for e in published]
    assert len(keys) == len(set(keys))
    assert [e["type"] for e in published if e["stream"].startswith("staff:")] == [
        "link.decided",
        "roster.imported",
    ]
    # The accepted file did link her.
    mine = await mom.http("GET", "/api/v1/me")
    assert any(k["name"] == "王小妹 Wang Xiaomei" for k in mine["classes"][0]["children"])


async def test_resends_answer_with_display_names(server: Server) -> None:
    teacher = await server.client("li")
    student = await server.client("wanghao")
    notice = {
        "class_id": server.class_id,
        "client_id": "n-1",
        "audience": "both",
        "kind": "info",
        "title": "春游",
        "body": "周五春游",
    }
    first = await teacher.request("notice.publish", notice)
    again = await teacher.request("notice.publish", notice)
    assert again["duplicate"] is True
    assert again["notice"] == first["notice"]
    assert again["notice"]["author_name"] == "李老师 Ms. Li"
    question = {"class_id": server.class_id, "client_id": "q-1", "body": "怎么约分？"}
    asked = await student.request("question.ask", question)
    resent = await student.request("question.ask", question)
    assert resent["duplicate"] is True and resent["question"] == asked["question"]
    assert resent["question"]["asker_name"] == "王浩 Wang Hao"


async def test_a_live_session_is_announced_only_once_stored(server: Server) -> None:
    """Members told of a hand-over or an end find it already stored."""
    live = server.app[LIVE]
    hub = server.app[HUB]
    teacher = await server.client("li")
    student = await server.client("wanghao")
    stored_when_told: list[tuple[str, Any]] = []
    emit = live.sio.emit

    async def checking(event: str, data: Any = None, **kw: Any) -> Any:
        if event == "session.ended":
            async with hub.store.read() as conn:
                row = (
                    await conn.execute(
                        select(live_sessions.c.ended_at).where(
                            live_sessions.c.id == data["session_id"]
                        )
                    )
                ).one()
            stored_when_told.append((event, row.ended_at))
        return await emit(event, data, **kw)

    live.sio.emit = checking
    started = await teacher.request(
        "session.start", {"class_id": server.class_id, "kind": "lesson", "title": "分数"}
    )
    sid = started["session"]["id"]
    ev = await student.wait_for(lambda e: e["type"] == "session.started")
    assert ev["data"]["id"] == sid
    await teacher.request("session.join", {"session_id": sid})
    await teacher.request("session.end", {"session_id": sid})
    ended = await student.wait_for(lambda e: e["type"] == "session.ended")
    assert ended["data"]["id"] == sid and ended["data"]["reason"] == "ended_by_host"
    assert [e for e, _ in stored_when_told] == ["session.ended"]
    assert all(at is not None for _, at in stored_when_told)
