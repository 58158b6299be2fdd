"""Web Push end to end: a push service of the test's own on 127.0.0.1 receives what the server
sends, checks its VAPID signature and decrypts it (RFC 8291) with the browser-side keys the test
made, as a browser would. Settings, quiet hours, expiry (410) and refusals.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import http_ece
import msgspec
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from clients.homeroom import HomeroomClient, RequestError
from realtime import views
from realtime.actions import homework_due
from realtime.domain import push as rules
from realtime.domain.streams import parse_stream
from realtime.transport.rest import HUB
from tests.conftest import (
    DATABASES,
    Server,
    free_port,
    make_settings,
    start_on,
    start_server,
    stop_server,
)
from tests.services import drop_postgres_database


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Device:
    """One browser's push subscription: its own key pair and auth secret."""

    def __init__(self, service: PushService, name: str) -> None:
        self.name = name
        self.endpoint = f"{service.url}/push/{name}"
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.received: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.status = 201

    def subscription(self) -> dict[str, Any]:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64(public), "auth": b64(self.auth)}}


class PushService:
    """A push service on 127.0.0.1 that verifies VAPID and decrypts like the browser would."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.devices: dict[str, Device] = {}
        self.vapid_keys: set[str] = set()
        self.runner: web.AppRunner | None = None

    def device(self, name: str) -> Device:
        self.devices[name] = Device(self, name)
        return self.devices[name]

    async def receive(self, request: web.Request) -> web.Response:
        dev = self.devices[request.match_info["name"]]
        auth = request.headers["Authorization"]
        assert Vapid02.verify(auth), "the VAPID signature does not verify"
        self.vapid_keys.add(auth.rsplit("k=", 1)[1])
        assert request.headers["Content-Encoding"] == "aes128gcm"
        assert int(request.headers["TTL"]) > 0
        body = await request.read()
        dev.raw.append(body)
        if dev.status == 201:
            plain = http_ece.decrypt(
                body, private_key=dev.key, auth_secret=dev.auth, version="aes128gcm"
            )
            dev.received.append(json.loads(plain))
        return web.Response(status=dev.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/push/{name}", self.receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture(params=DATABASES)
async def push(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Server, PushService]]:
    service = PushService()
    await service.start()
    srv, name = await start_on(request.param, tmp_path, push_endpoint_hosts="127.0.0.1")
    try:
        yield srv, service
    finally:
        await stop_server(srv)
        await service.stop()
        if name:
            drop_postgres_database(name)


async def drained(srv: Server) -> None:
    """Every push of what was committed so far has been sent: the sentinel for "nothing came"."""
    pusher = srv.app[HUB].pusher
    assert pusher is not None
    await pusher.drain()


async def subscribe(c: HomeroomClient, dev: Device) -> None:
    ack = await c.http("POST", "/api/v1/push/subscriptions", dev.subscription())
    assert ack["subscribed"] is True


async def test_pushed_notice_reminder_and_message_decrypt_and_keep_secrets(
    push: tuple[Server, PushService],
) -> None:
    srv, service = push
    cid = srv.class_id
    li, mom = await srv.client("li"), await srv.client("wang_mom")
    key = await mom.http("GET", "/api/v1/push/key")
    msgspec.convert(key, views.PushKey)  # what the web app's types say
    assert key["enabled"] is True and len(base64.urlsafe_b64decode(key["public_key"] + "=")) == 65
    phone, teacher_pc = service.device("mom-phone"), service.device("li-pc")
    await subscribe(mom, phone)
    await subscribe(li, teacher_pc)

    notice = await li.publish_notice(
        cid, "运动会：请签署同意书", kind="confirm_required", body="正文不推送"
    )
    await drained(srv)
    assert phone.received == [
        {
            "kind": "notice",
            "class_id": cid,
            "notice_id": notice["id"],
            "title": "运动会：请签署同意书",
        }
    ]
    assert teacher_pc.received == []  # the author is not told of their own notice

    # A reminder goes to the families not yet covered.
    await li.request("notice.remind", {"notice_id": notice["id"]})
    await drained(srv)
    assert phone.received[-1]["kind"] == "reminder"
    assert phone.received[-1]["title"] == "运动会：请签署同意书"

    # A private message: who wrote, never what.
    conv = await li.open_conversation(cid, srv.uid("wang_mom"))
    secret = "王浩这次数学考了 58 分，请您周五来学校"
    await li.send_chat(conv["stream"], secret)
    await drained(srv)
    msg = phone.received[-1]
    assert msg == {"kind": "message", "stream": conv["stream"], "from": "李老师 Ms. Li"}
    assert all(secret not in json.dumps(p, ensure_ascii=False) for p in phone.received)
    assert teacher_pc.received == []  # the sender is not pushed their own message
    # The reply reaches the teacher's PC the same way.
    await mom.send_chat(conv["stream"], "好的，周五见")
    await drained(srv)
    assert teacher_pc.received == [
        {"kind": "message", "stream": conv["stream"], "from": "王浩妈妈 Wang Hao's mother"}
    ]
    # Everything was signed with the one key the browsers subscribed with.
    assert service.vapid_keys == {key["public_key"]}


async def test_link_request_is_pushed_to_the_class_teachers(
    push: tuple[Server, PushService],
) -> None:
    srv, service = push
    li, chen = await srv.client("li"), await srv.client("chen")
    li_dev, chen_dev = service.device("li"), service.device("chen")
    await subscribe(li, li_dev)
    await subscribe(chen, chen_dev)
    new = await srv.client(None)
    body = await new.http(
        "POST",
        "/api/v1/auth/register",
        {
            "username": "zhao_mom",
            "password": "a-good-long-password",
            "display_name": "赵磊妈妈",
            "join_code": srv.demo["join_code"],
        },
        auth=False,
    )
    new.token = body["access_token"]
    await new.http(
        "POST",
        "/api/v1/join",
        {
            "join_code": srv.demo["join_code"],
            "child_name": "赵磊 Zhao Lei",
            "relationship": "mother",
        },
    )
    await drained(srv)
    expected = {
        "kind": "link",
        "class_id": srv.class_id,
        "guardian": "赵磊妈妈",
        "student": "赵磊 Zhao Lei",
    }
    assert li_dev.received == [expected] and chen_dev.received == [expected]


async def test_a_meeting_starting_is_pushed_to_guardians_a_lesson_to_students(
    push: tuple[Server, PushService],
) -> None:
    srv, service = push
    li, mom, kid = (
        await srv.client("li"),
        await srv.client("wang_mom"),
        await srv.client("wanghao"),
    )
    phone, pad, host = service.device("mom"), service.device("kid"), service.device("li")
    await subscribe(mom, phone)
    await subscribe(kid, pad)
    await subscribe(li, host)
    ack = await li.request(
        "session.start", {"class_id": srv.class_id, "kind": "meeting", "title": "期中家长会"}
    )
    await drained(srv)
    assert phone.received == [
        {
            "kind": "session",
            "class_id": srv.class_id,
            "session_id": ack["session"]["id"],
            "session_kind": "meeting",
            "title": "期中家长会",
        }
    ]
    assert pad.received == [] and host.received == []
    await li.request("session.end", {"session_id": ack["session"]["id"]})
    # A lesson starting is pushed to the students.
    lesson = await li.request(
        "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "数学：分数"}
    )
    await drained(srv)
    assert pad.received == [
        {
            "kind": "session",
            "class_id": srv.class_id,
            "session_id": lesson["session"]["id"],
            "session_kind": "lesson",
            "title": "数学：分数",
        }
    ]
    assert host.received == []
    await li.request("session.end", {"session_id": lesson["session"]["id"]})


async def test_a_mention_is_pushed_without_the_text(push: tuple[Server, PushService]) -> None:
    srv, service = push
    stream = f"class:{srv.class_id}:guardians"
    li, mom = await srv.client("li"), await srv.client("wang_mom")
    phone, dad_phone = service.device("mom"), service.device("dad")
    await subscribe(mom, phone)
    await subscribe(await srv.client("wang_dad"), dad_phone)
    await li.send_chat(stream, "@王浩妈妈 体检表还差您家的", mentions=[srv.uid("wang_mom")])
    await drained(srv)
    assert phone.received == [{"kind": "mention", "stream": stream, "from": "李老师 Ms. Li"}]
    assert dad_phone.received == []  # the class chat itself is not pushed, only mentions


async def test_settings_and_quiet_hours_are_respected(push: tuple[Server, PushService]) -> None:
    srv, service = push
    cid = srv.class_id
    li, mom = await srv.client("li"), await srv.client("wang_mom")
    phone = service.device("phone")
    await subscribe(mom, phone)
    settings = await mom.http("GET", "/api/v1/push/settings")
    msgspec.convert(settings, views.PushSettings)
    assert settings["kinds"] == sorted(rules.KINDS) and settings["quiet_hours"] is None
    assert settings["devices"] == 1 and settings["time_zone"] == "Asia/Shanghai"

    # No notices, please: a notice is not pushed, a private message still is.
    kinds = [k for k in rules.KINDS if k != "notice"]
    await mom.http("PUT", "/api/v1/push/settings", {"kinds": kinds})
    await li.publish_notice(cid, "不推送的通知")
    conv = await li.open_conversation(cid, srv.uid("wang_mom"))
    await li.send_chat(conv["stream"], "在吗")
    await drained(srv)
    assert [p["kind"] for p in phone.received] == ["message"]

    # Quiet hours around the school's present minute: nothing is pushed.
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    minute = now.hour * 60 + now.minute
    quiet = {"start": rules.hhmm((minute - 5) % 1440), "end": rules.hhmm((minute + 60) % 1440)}
    ack = await mom.http("PUT", "/api/v1/push/settings", {"kinds": kinds, "quiet_hours": quiet})
    msgspec.convert(ack, views.PushSettings)
    assert ack["quiet_hours"] == quiet
    await li.send_chat(conv["stream"], "晚上打扰了")
    await drained(srv)
    assert len(phone.received) == 1
    # Quiet hours that have just ended: pushed again.
    quiet = {"start": rules.hhmm((minute - 120) % 1440), "end": rules.hhmm((minute - 60) % 1440)}
    await mom.http("PUT", "/api/v1/push/settings", {"kinds": kinds, "quiet_hours": quiet})
    await li.send_chat(conv["stream"], "明天见")
    await drained(srv)
    assert len(phone.received) == 2


async def test_expired_subscription_is_removed(push: tuple[Server, PushService]) -> None:
    srv, service = push
    li, mom = await srv.client("li"), await srv.client("wang_mom")
    old, new = service.device("old-phone"), service.device("new-phone")
    await subscribe(mom, old)
    await subscribe(mom, new)
    assert (await mom.http("GET", "/api/v1/push/settings"))["devices"] == 2
    old.status = 410  # the browser dropped it
    await li.publish_notice(srv.class_id, "第一条")
    await drained(srv)
    assert len(old.raw) == 1 and len(new.received) == 1
    assert (await mom.http("GET", "/api/v1/push/settings"))["devices"] == 1
    await li.publish_notice(srv.class_id, "第二条")
    await drained(srv)
    assert len(old.raw) == 1 and [p["title"] for p in new.received] == ["第一条", "第二条"]
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/metrics") as resp:
        text = await resp.text()
    assert 'homeroom_push_sends_total{outcome="gone"} 1.0' in text
    assert 'homeroom_push_sends_total{outcome="sent"} 2.0' in text
    # Unsubscribing stops the rest.
    ack = await mom.http("DELETE", "/api/v1/push/subscriptions", {"endpoint": new.endpoint})
    assert ack == {"removed": True}
    await li.publish_notice(srv.class_id, "第三条")
    await drained(srv)
    assert len(new.received) == 2


async def test_bad_subscriptions_and_settings_are_refused(
    push: tuple[Server, PushService],
) -> None:
    srv, service = push
    mom = await srv.client("wang_mom")
    good = service.device("x").subscription()
    bad: list[dict[str, Any]] = [
        {**good, "endpoint": "https://evil.example/push"},  # not a push service
        {**good, "endpoint": "http://10.0.0.1/push"},  # nor an internal address
        {**good, "endpoint": "ftp://127.0.0.1/push"},
        {**good, "keys": {"p256dh": "AAAA", "auth": good["keys"]["auth"]}},
        {**good, "keys": {"p256dh": good["keys"]["p256dh"], "auth": "!!"}},
        {**good, "extra": 1},
    ]
    for body in bad:
        with pytest.raises(RequestError) as err:
            await mom.http("POST", "/api/v1/push/subscriptions", body)
        assert err.value.code == "bad_request"
    for body in [
        {"kinds": ["notice", "gossip"]},
        {"kinds": [], "quiet_hours": {"start": "25:00", "end": "07:00"}},
        {"kinds": [], "quiet_hours": {"start": "2130", "end": "07:00"}},
    ]:
        with pytest.raises(RequestError) as err:
            await mom.http("PUT", "/api/v1/push/settings", body)
        assert err.value.code == "bad_request"
    settings = await mom.http("GET", "/api/v1/push/settings")
    assert settings["devices"] == 0 and settings["kinds"] == sorted(rules.KINDS)
    anon = await srv.client(None)
    with pytest.raises(RequestError) as err:
        await anon.http("GET", "/api/v1/push/settings")
    assert err.value.code == "unauthorized"


async def _due_events(srv: Server, username: str) -> list[dict[str, Any]]:
    async with srv.app[HUB].store.read() as conn:
        evs = await srv.app[HUB].store.events_after(conn, f"user:{srv.uid(username)}", 0, 1000)
    return [e.data for e in evs if e.type == "homework.due"]


async def test_homework_due_soon_is_pushed_once_to_those_who_have_not_handed_it_in(
    push: tuple[Server, PushService], tmp_path: Path
) -> None:
    """Two nodes on one PostgreSQL database sweep at the same moment (two sweeps in one node on
    SQLite): each homework due within the notice time is told once, to the students who have
    not handed it in and their guardians only."""
    srv, service = push
    cid = srv.class_id
    li = await srv.client("li")
    devices = {u: service.device(u) for u in ("wang_mom", "wanghao", "li_mom", "liming", "li")}
    for u, dev in devices.items():
        await subscribe(await srv.client(u), dev)
    soon = await li.assign_homework(cid, "背诵《静夜思》", time.time() + 3600)
    later = await li.assign_homework(cid, "下周的作文", time.time() + 10 * 3600)
    await (await srv.client("liming")).submit_homework(soon["id"], "背好了")

    # SQLite serves one process: there the two sweeps run side by side in the one node.
    shared = srv.settings.database_url.startswith("postgresql")
    other = srv
    if shared:
        other = await start_server(
            make_settings(
                tmp_path / "node2",
                database_url=srv.settings.database_url,
                push_vapid_key_file=srv.settings.push_vapid_key_file,
                push_endpoint_hosts="127.0.0.1",
            ),
            seed=False,
        )
    try:
        told = await asyncio.gather(
            homework_due.sweep(srv.app[HUB]), homework_due.sweep(other.app[HUB])
        )
        assert sorted(told) == [0, 1]
        await drained(srv)
        await drained(other)
        # Swept again on both: told already, nothing more.
        assert await homework_due.sweep(srv.app[HUB]) == 0
        assert await homework_due.sweep(other.app[HUB]) == 0
        await drained(srv)
        await drained(other)
    finally:
        if shared:
            await stop_server(other)
    expected = {
        "kind": "homework",
        "class_id": cid,
        "homework_id": soon["id"],
        "title": "背诵《静夜思》",
        "student": "王浩 Wang Hao",
        "due_at": soon["due_at"],
    }
    assert devices["wanghao"].received == [expected]  # told once, whatever the sweeps
    assert devices["wang_mom"].received == [expected]
    # A teacher's own reminder to hand it in is pushed too (a reminder).
    await li.remind_homework(soon["id"])
    await drained(srv)
    assert len(devices["wang_mom"].received) == 2
    assert devices["wang_mom"].received[-1] == {
        "kind": "homework_reminder",
        "class_id": cid,
        "homework_id": soon["id"],
        "title": "背诵《静夜思》",
    }
    # Li Ming handed it in: neither he nor his mother is told; nor is the teacher.
    assert devices["liming"].received == [] and devices["li_mom"].received == []
    assert devices["li"].received == []
    assert [e["homework_id"] for e in await _due_events(srv, "wang_mom")] == [soon["id"]]
    assert later["id"] not in {e["homework_id"] for e in await _due_events(srv, "wanghao")}
    # A mother of two hears of each child who has not handed it in.
    liu = await _due_events(srv, "liu_mom")
    assert sorted(e["student_name"] for e in liu) == ["刘欣 Liu Xin", "刘洋 Liu Yang"]


async def test_the_running_server_sends_homework_due_reminders_by_itself(
    tmp_path: Path,
) -> None:
    service = PushService()
    await service.start()
    srv = await start_server(
        make_settings(tmp_path, push_endpoint_hosts="127.0.0.1", homework_due_sweep_s=0.2)
    )
    try:
        mom = await srv.client("wang_mom")
        phone = service.device("phone")
        await subscribe(mom, phone)
        li = await srv.client("li")
        hw = await li.assign_homework(srv.class_id, "口算练习", time.time() + 600)
        ev = await mom.wait_for(lambda e: e["type"] == "homework.due", timeout=30)
        assert ev["data"]["homework_id"] == hw["id"] and ev["data"]["title"] == "口算练习"
        await drained(srv)
        assert [p["title"] for p in phone.received] == ["口算练习"]
    finally:
        await stop_server(srv)
        await service.stop()


def test_homework_is_due_soon_once_and_never_after_its_due_time() -> None:
    from realtime.domain.homework import due_soon

    assert due_soon(due_at=1000, notified_at=None, now=900, notice_s=200)
    assert not due_soon(due_at=1000, notified_at=850, now=900, notice_s=200)
    assert not due_soon(due_at=1000, notified_at=None, now=700, notice_s=200)
    assert not due_soon(due_at=1000, notified_at=None, now=1000, notice_s=200)


def test_quiet_hours_span_midnight() -> None:
    prefs = rules.PushPrefs(quiet_start=21 * 60 + 30, quiet_end=7 * 60)
    assert rules.in_quiet_hours(prefs, 23 * 60)
    assert rules.in_quiet_hours(prefs, 6 * 60 + 59)
    assert not rules.in_quiet_hours(prefs, 7 * 60)
    assert not rules.in_quiet_hours(prefs, 12 * 60)
    assert not rules.in_quiet_hours(rules.PushPrefs(quiet_start=60, quiet_end=60), 60)


def test_only_listed_push_services_are_sent_to() -> None:
    hosts = "fcm.googleapis.com,.push.apple.com,127.0.0.1"
    assert rules.endpoint_allowed("https://fcm.googleapis.com/fcm/send/abc", hosts)
    assert rules.endpoint_allowed("https://web.push.apple.com/xyz", hosts)
    assert not rules.endpoint_allowed("https://push.apple.com.evil.cn/xyz", hosts)
    assert not rules.endpoint_allowed("http://fcm.googleapis.com/fcm/send/abc", hosts)
    assert not rules.endpoint_allowed("https://user:pw@fcm.googleapis.com/x", hosts)
    assert rules.endpoint_allowed("http://127.0.0.1:9/push/a", hosts)


def test_nothing_private_in_a_message_push() -> None:
    p = rules.pushable(
        parse_stream("conv:3"),
        "chat.message",
        {"sender_id": 1, "sender_name": "李老师", "body": "秘密", "stream": "conv:3"},
    )
    assert p is not None and "秘密" not in json.dumps(p.payload, ensure_ascii=False)
    assert rules.pushable(parse_stream("class:1:students"), "chat.message", {}) is None
