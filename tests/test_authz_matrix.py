"""The authorization matrix: every Socket.IO event and every REST endpoint, tried by every kind of
person against class 1's resources, with the exact outcome each must get.

Actors: the head teacher (li), a subject teacher (chen), a student (wanghao), his guardian
(wang_mom), the school admin (no class role), a guardian and a student of ANOTHER class of the same
school, a guardian who registered with the join code and asked for a link that is still pending,
no token at all, and an expired token.

One server and one connection per actor serve the whole module. Actions that change or use up a
resource (delete, withdraw, dismiss, remind, approve...) get a fresh one per try, so the outcome
depends only on who acts, never on the order of the tries.
"""

from __future__ import annotations

import base64
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from clients import files
from clients.homeroom import HomeroomClient, RequestError
from realtime.actions.accounts import create_user
from realtime.actions.downloads import link_secret
from realtime.actions.roster import add_member, create_class, link_guardian
from realtime.app import GATEWAY
from realtime.auth import TokenIssuer
from realtime.domain.attachments import sign_link
from realtime.domain.roles import Role
from realtime.store.db import inserted_id
from realtime.store.schema import classes, school_years
from realtime.transport import rest
from realtime.transport.rest import HUB
from realtime.transport.socket import ROUTES
from tests.conftest import Server, make_settings, sentinel_to, start_server, stop_server

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

# People who connect and act. "anonymous" (no token) and "expired" never get a connection.
CONNECTED = [
    "li",
    "chen",
    "wanghao",
    "wang_mom",
    "admin",
    "other_guardian",
    "other_student",
    "unlinked",
]
EVERYONE = [*CONNECTED, "anonymous", "expired"]
STUDENT_NAME = "王浩 Wang Hao"
SMALL_PDF = b"%PDF-1.4\n%%EOF\n"


def outcomes(
    allowed: str = "", *, others: str = "forbidden", actors: list[str] = CONNECTED, **special: str
) -> dict[str, str]:
    """``allowed``: space-separated actors that get "ok"; ``special``: actor=outcome."""
    row = {a: others for a in actors}
    for a in allowed.split():
        row[a] = "ok"
    for a, v in special.items():
        row[a] = v
    return row


# --- the expected Socket.IO matrix ------------------------------------------------------------
# Row names are "<event>" or "<event> <variant>"; the event is the part before the space.

STAFF = "li chen"
CLASS_STUDENTS_CHAT = "li chen wanghao"

SOCKET_EXPECTED: dict[str, dict[str, str]] = {
    "sync": outcomes(" ".join(CONNECTED)),
    "chat.send students": outcomes(CLASS_STUDENTS_CHAT),
    "chat.send guardians": outcomes("li chen wang_mom"),
    "chat.send conversation": outcomes("li wang_mom"),
    # Only the sender edits; teachers may delete but not rewrite a student's words.
    "chat.edit": outcomes("wanghao"),
    "chat.edit missing": outcomes(others="not_found"),
    "chat.delete": outcomes("li chen wanghao"),
    "chat.delete missing": outcomes(others="not_found"),
    "chat.history students": outcomes(CLASS_STUDENTS_CHAT),
    "chat.history conversation": outcomes("li wang_mom"),
    "chat.read": outcomes(CLASS_STUDENTS_CHAT),
    # Who read a message of the guardians' chat: its teachers only.
    "chat.read_by": outcomes(STAFF),
    "chat.read_by missing": outcomes(others="not_found"),
    "chat.typing": outcomes(CLASS_STUDENTS_CHAT),
    "chat.mute": outcomes(STAFF),
    # Private talk: a teacher with a student or guardian of the class, nobody else.
    "conversation.open with-head-teacher": outcomes(
        "wanghao wang_mom",
        li="bad_request",  # with oneself
    ),
    "conversation.open with-student": outcomes(STAFF, wanghao="bad_request"),
    "notice.publish": outcomes(STAFF),
    "notice.list": outcomes("li chen wanghao wang_mom"),
    # Every notice below is addressed to guardians only: the student is not a recipient.
    "notice.delivered": outcomes("wang_mom", others="ignored"),
    "notice.read": outcomes("wang_mom"),
    "notice.confirm": outcomes("wang_mom"),
    "notice.reply": outcomes("wang_mom"),
    "notice.receipts": outcomes(STAFF),
    "notice.receipts missing": outcomes(others="not_found"),
    "notice.remind": outcomes(STAFF),
    "question.ask": outcomes("wanghao"),
    "question.edit": outcomes("wanghao"),
    "question.withdraw": outcomes("wanghao"),
    "question.vote": outcomes("wanghao"),
    "question.vote own": outcomes(wanghao="conflict"),
    "question.answer": outcomes(STAFF),
    "question.answer missing": outcomes(others="not_found"),
    "question.dismiss": outcomes(STAFF),
    "question.reopen": outcomes(STAFF),
    "question.list": outcomes(CLASS_STUDENTS_CHAT),
    # Live sessions (connection-bound routes). A lesson of class 1 is live (li hosts it): a
    # second one is a conflict for its teachers, and refused for everyone else.
    "session.start": outcomes(li="conflict", chen="conflict"),
    "session.list": outcomes("li chen wanghao wang_mom"),
    "session.join": outcomes("li chen wanghao"),
    # Polls and quizzes: staff run them; students answer students' polls, guardians guardians'.
    "poll.create": outcomes(STAFF),
    "poll.answer": outcomes("wanghao"),
    "poll.answer guardians": outcomes("wang_mom"),
    "poll.close": outcomes(STAFF),
    "poll.publish": outcomes(STAFF),
    "poll.get": outcomes("li chen wanghao"),
    "poll.get missing": outcomes(others="not_found"),
    "poll.list": outcomes("li chen wanghao wang_mom"),
    # Attendance and records: a guardian sees only her own child's record, never another's.
    "attendance.report": outcomes(STAFF),
    "attendance.correct": outcomes(STAFF),
    "record.student": outcomes("li chen wanghao wang_mom"),
    "record.student other-child": outcomes(STAFF),
    "record.class": outcomes(STAFF),
    "record.digest": outcomes(STAFF),
    "homework.assign": outcomes(STAFF),
    "homework.submit": outcomes("wanghao"),
    "homework.review": outcomes(STAFF),
    "homework.rollup": outcomes(STAFF),
    "homework.remind": outcomes(STAFF),
    "homework.list": outcomes("li chen wanghao wang_mom"),
    "homework.list other-child": outcomes(STAFF),
    # A teacher of ANOTHER class asked to link class 1 into a dual-teacher lesson: only class 1's
    # teachers or the school admin decide (a fresh request per try; class 1's own lesson runs on).
    "classroom.link": outcomes("li chen admin"),
}

# Live-session events that need joined participants or media legs: their own tests cover them
# (tests/live). A new one must be added here or to the matrix, deliberately.
LIVE_NOT_IN_MATRIX = {
    "session.leave",
    "session.end",
    "rtc.publish",
    "rtc.subscribe",
    "rtc.answer",
    "rtc.ice",
    "hand.raise",
    "hand.lower",
    "stage.invite",
    "stage.accept",
    "stage.decline",
    "stage.remove",
    "stage.places",
    "classroom.stage",
    "lobby.admit",
    "lobby.decline",
    "moderate.mute",
    "moderate.mute_all",
    "moderate.lock",
    "moderate.remove",
    "host.transfer",
    "media.mute_self",
}

# --- the expected REST matrix -----------------------------------------------------------------
# Row names are "<METHOD> <path template>" (every entry of rest.API) or that plus " <variant>".

NO_TOKEN = {"anonymous": "unauthorized", "expired": "unauthorized"}


def rest_outcomes(
    allowed: str = "", *, others: str = "forbidden", **special: str
) -> dict[str, str]:
    return {**outcomes(allowed, others=others, actors=EVERYONE, **special), **NO_TOKEN}


def public(outcome: str) -> dict[str, str]:
    """Endpoints without a token: the same answer for everyone, an expired token is ignored."""
    return {a: outcome for a in EVERYONE}


REST_EXPECTED: dict[str, dict[str, str]] = {
    "POST /api/v1/auth/login": public("unauthorized"),  # a wrong password, whoever asks
    "POST /api/v1/auth/refresh": public("unauthorized"),  # a made-up refresh token
    "POST /api/v1/auth/logout": public("ok"),
    "POST /api/v1/auth/register": public("not_found"),  # a join code no class has
    "GET /api/v1/openapi.json": public("ok"),
    "GET /api/v1/me": rest_outcomes(" ".join(CONNECTED)),
    # Anyone signed in may ASK to be linked; people already in the class are told they need not.
    "POST /api/v1/join": rest_outcomes(
        "admin other_guardian other_student unlinked", others="conflict"
    ),
    "GET /api/v1/classes": rest_outcomes("li chen admin"),
    "GET /api/v1/classes/{class_id}/members": rest_outcomes("li chen wanghao wang_mom admin"),
    "GET /api/v1/classes/{class_id}/members missing-class": rest_outcomes(others="not_found"),
    "GET /api/v1/classes/{class_id}/links": rest_outcomes("li chen admin"),
    "POST /api/v1/classes/{class_id}/roster": rest_outcomes("li chen admin"),
    # A row naming an account that existed before the import (issue 11 item 1): teachers get
    # it back as a pending line, untouched; a school admin may enrol and link it.
    "POST /api/v1/classes/{class_id}/roster existing-account": rest_outcomes(
        "admin", li="pending", chen="pending"
    ),
    "POST /api/v1/links/{link_id}/approve": rest_outcomes("li chen admin"),
    "POST /api/v1/links/{link_id}/approve missing": rest_outcomes(others="not_found"),
    "POST /api/v1/links/{link_id}/reject": rest_outcomes("li chen admin"),
    "GET /api/v1/history": rest_outcomes(CLASS_STUDENTS_CHAT),
    "GET /api/v1/history conversation": rest_outcomes("li wang_mom"),
    "GET /api/v1/notices/{notice_id}/receipts": rest_outcomes(STAFF),
    "GET /api/v1/notices/{notice_id}/receipts.csv": rest_outcomes(STAFF),
    "GET /api/v1/lessons/{session_id}/attendance": rest_outcomes(STAFF),
    "GET /api/v1/lessons/{session_id}/attendance missing": rest_outcomes(others="not_found"),
    "GET /api/v1/lessons/{session_id}/attendance.csv": rest_outcomes(STAFF),
    "GET /api/v1/classes/{class_id}/records": rest_outcomes(STAFF),
    "GET /api/v1/classes/{class_id}/students/{student_id}/record": rest_outcomes(
        "li chen wanghao wang_mom"
    ),
    "GET /api/v1/classes/{class_id}/students/{student_id}/record other-child": rest_outcomes(STAFF),
    "GET /api/v1/homework/{homework_id}/submissions": rest_outcomes(STAFF),
    "GET /api/v1/homework/{homework_id}/submissions.csv": rest_outcomes(STAFF),
    "GET /api/v1/sessions/{session_id}/stats": rest_outcomes("li"),  # the host only
    "GET /api/v1/sessions/{session_id}/stats missing": rest_outcomes(others="not_found"),
    "GET /api/v1/audit": rest_outcomes("admin"),
    # Attachments: anyone signed in uploads; an upload is its owner's until attached (li's here).
    "POST /api/v1/uploads": rest_outcomes(" ".join(CONNECTED)),
    "GET /api/v1/uploads/{upload_id}": rest_outcomes("li", others="not_found"),
    "PATCH /api/v1/uploads/{upload_id}": rest_outcomes("li", others="not_found"),
    "DELETE /api/v1/uploads/{upload_id}": rest_outcomes("li", others="not_found"),
    # Links to a file: whoever may see the message carrying it.
    "POST /api/v1/uploads/links": rest_outcomes(CLASS_STUDENTS_CHAT),
    "POST /api/v1/uploads/links conversation": rest_outcomes("li wang_mom"),
    # Homework's files: the class; a submission's: the student, their guardian and the staff.
    "POST /api/v1/uploads/links homework": rest_outcomes("li chen wanghao wang_mom"),
    "POST /api/v1/uploads/links submission": rest_outcomes("li chen wanghao wang_mom"),
    # A signed link is the key itself (no token); it expires.
    "GET /files/{upload_id}/{variant}": public("ok"),
    "GET /files/{upload_id}/{variant} expired": public("link_expired"),
    "GET /api/v1/school/storage": rest_outcomes("admin"),
    "PUT /api/v1/school/storage": rest_outcomes("admin"),
    # Web Push: each person manages their own browsers and settings only.
    "GET /api/v1/push/key": rest_outcomes(" ".join(CONNECTED)),
    "POST /api/v1/push/subscriptions": rest_outcomes(" ".join(CONNECTED)),
    "DELETE /api/v1/push/subscriptions": rest_outcomes(" ".join(CONNECTED)),
    "GET /api/v1/push/settings": rest_outcomes(" ".join(CONNECTED)),
    "PUT /api/v1/push/settings": rest_outcomes(" ".join(CONNECTED)),
    # A school that sets itself up: the school's admins only; the join QR code for the class's
    # teachers too.
    "GET /api/v1/school": rest_outcomes("admin"),
    "PUT /api/v1/school/settings": rest_outcomes("admin"),
    "POST /api/v1/school/years": rest_outcomes("admin"),
    "POST /api/v1/school/years/{year_id}/archive": rest_outcomes("admin"),
    "POST /api/v1/school/classes": rest_outcomes("admin"),
    "POST /api/v1/classes/{class_id}/archive": rest_outcomes("admin"),
    "POST /api/v1/classes/{class_id}/teachers": rest_outcomes("admin"),
    "POST /api/v1/classes/{class_id}/move": rest_outcomes("admin"),
    "GET /api/v1/school/links": rest_outcomes("admin"),
    "GET /api/v1/classes/{class_id}/join-qr.svg": rest_outcomes("li chen admin"),
}

HTTP_FOR = {
    "ok": {200, 201},
    "pending": {201},
    "bad_request": {400},
    "unauthorized": {401},
    "forbidden": {403},
    "not_found": {404},
    "conflict": {409},
}


# --- the world ----------------------------------------------------------------------------------


@dataclass
class World:
    srv: Server
    http: aiohttp.ClientSession
    clients: dict[str, HomeroomClient]
    tokens: dict[str, str | None]
    uids: dict[str, int]
    class_id: int
    other_class_id: int
    school_id: int
    join_code: str
    message_id: int = 0
    guardians_message_id: int = 0  # li's message in the guardians' chat
    conv_stream: str = ""
    notice_confirm: int = 0
    notice_reply: int = 0
    question_own: int = 0  # asked by wanghao
    question_other: int = 0  # asked by liming
    session_id: int = 0  # a live lesson hosted by li
    poll_students: int = 0  # an open students' poll of class 1
    poll_guardians: int = 0  # an open guardians' poll of class 1
    homework_id: int = 0  # homework of class 1, due in an hour
    dual_session_id: int = 0  # the other class's dual lesson asking to link class 1
    raw_events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counter: itertools.count = field(default_factory=itertools.count)

    @property
    def students_chat(self) -> str:
        return f"class:{self.class_id}:students"

    @property
    def guardians_chat(self) -> str:
        return f"class:{self.class_id}:guardians"

    # Fresh resources, made by the people who legitimately make them.

    async def fresh_message(self) -> int:
        msg = await self.clients["wanghao"].send_chat(self.students_chat, "fresh message")
        return int(msg["id"])

    async def fresh_question(self, dismissed: bool = False) -> int:
        q = await self.clients["wanghao"].ask(self.class_id, "fresh question?")
        if dismissed:
            await self.clients["li"].request("question.dismiss", {"question_id": q["id"]})
        return int(q["id"])

    async def fresh_notice(self, **kw: Any) -> int:
        notice = await self.clients["li"].publish_notice(self.class_id, "fresh notice", **kw)
        return int(notice["id"])

    async def fresh_poll(self) -> int:
        poll = await self.clients["li"].create_poll(self.class_id, "fresh?", "true_false")
        return int(poll["id"])

    async def fresh_homework(self, submitted: bool = False) -> int:
        hw = await self.clients["li"].assign_homework(self.class_id, "fresh", time.time() + 3600)
        if submitted:
            await self.clients["wanghao"].submit_homework(hw["id"], "done")
        return int(hw["id"])

    async def fresh_link_request(self) -> int:
        """A new dual lesson of the other class that asks to link class 1 (pending)."""
        other = self.clients["other_teacher"]
        if self.dual_session_id:
            await other.request("session.end", {"session_id": self.dual_session_id})
        started = await other.request(
            "session.start",
            {
                "class_id": self.other_class_id,
                "kind": "dual_lesson",
                "title": "连线课",
                "linked_class_ids": [self.class_id],
            },
        )
        assert [c["class_id"] for c in started["session"]["pending_classrooms"]] == [self.class_id]
        self.dual_session_id = int(started["session"]["id"])
        return self.dual_session_id

    async def fresh_pending_link(self) -> int:
        """A new guardian's pending request to be linked to wanghao (no password: no hashing)."""
        store = self.srv.app[HUB].store
        n = next(self.counter)
        async with store.transaction() as conn:
            gid = await create_user(
                conn,
                self.school_id,
                f"pending_{n}_{uuid.uuid4().hex[:6]}",
                "Pending",
                None,
                now=0.0,
            )
            return await link_guardian(
                conn,
                self.class_id,
                gid,
                self.uids["wanghao"],
                "aunt",
                status="pending",
                by=None,
                now=0.0,
            )


async def _record_raw(world: World, name: str, client: HomeroomClient) -> None:
    """Record every stream event the server pushes to this connection, before the client
    filters anything: a leak must be seen even if the client would drop it."""
    seen = world.raw_events.setdefault(name, [])

    async def on_event(ev: dict[str, Any]) -> None:
        seen.append(ev)
        await client._on_stream_event(ev)

    client.sio.on("event", on_event)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    # Push subscriptions made below point at a closed port of 127.0.0.1: nothing leaves.
    srv = await start_server(
        make_settings(tmp_path_factory.mktemp("authz"), push_endpoint_hosts="127.0.0.1")
    )
    hub = srv.app[HUB]
    cid = srv.class_id
    async with hub.store.read() as conn:
        school_id = (
            await conn.execute(select(classes.c.school_id).where(classes.c.id == cid))
        ).scalar_one()
    uids = {k: int(v) for k, v in srv.demo["users"].items()}
    # Another class of the same school, with its own student and guardian.
    async with hub.store.transaction() as conn:
        other_cid = await create_class(conn, school_id, "六年级一班 Grade 6 Class 1")
        uids["other_student"] = await create_user(
            conn, school_id, "other_student", "赵六 Zhao Liu", None, now=0.0
        )
        uids["other_guardian"] = await create_user(
            conn, school_id, "other_guardian", "赵六妈妈", None, now=0.0
        )
        await add_member(conn, other_cid, uids["other_student"], Role.STUDENT)
        uids["other_teacher"] = await create_user(
            conn, school_id, "other_teacher", "赵老师", None, now=0.0
        )
        await add_member(conn, other_cid, uids["other_teacher"], Role.TEACHER)
        await link_guardian(
            conn,
            other_cid,
            uids["other_guardian"],
            uids["other_student"],
            "mother",
            status="approved",
            by=None,
            now=0.0,
        )
    http = aiohttp.ClientSession()
    tokens: dict[str, str | None] = {"anonymous": None}
    clients: dict[str, HomeroomClient] = {}
    w = World(srv, http, clients, tokens, uids, cid, other_cid, school_id, srv.demo["join_code"])
    for name in ("li", "chen", "wanghao", "wang_mom", "admin", "liming"):
        c = await srv.client(name, connect=False)
        tokens[name] = c.token
        clients[name] = c
    for name in ("other_guardian", "other_student", "other_teacher"):
        c = await srv.client(None)
        c.token = tokens[name] = hub.tokens.issue(uids[name], school_id)
        clients[name] = c
    # A guardian who registered with the join code and asked for wanghao: pending, not approved.
    c = await srv.client(None)
    reg = await c.http(
        "POST",
        "/api/v1/auth/register",
        {
            "username": "new_parent",
            "password": "a-long-password",
            "display_name": "新家长",
            "join_code": w.join_code,
        },
        auth=False,
    )
    c.token = tokens["unlinked"] = reg["access_token"]
    uids["unlinked"] = int(reg["user"]["id"])
    link = await c.http(
        "POST", "/api/v1/join", {"join_code": w.join_code, "child_name": STUDENT_NAME}
    )
    assert link["link"]["status"] == "pending"
    clients["unlinked"] = c
    # A token that expired a minute ago, signed with the server's own key.
    expired_issuer = TokenIssuer(srv.settings.signing_keys, srv.settings.secret_key_id, ttl_s=-60)
    tokens["expired"] = expired_issuer.issue(uids["wanghao"], school_id)
    for name, client in clients.items():
        await _record_raw(w, name, client)
        await client.connect()

    # Class 1's resources, prepared by the people who make them.
    li, wang, liming = clients["li"], clients["wanghao"], clients["liming"]
    w.message_id = int((await wang.send_chat(w.students_chat, "老师，这道题怎么做？"))["id"])
    w.guardians_message_id = int((await li.send_chat(w.guardians_chat, "家长们好"))["id"])
    conv = await li.open_conversation(cid, uids["wang_mom"])
    w.conv_stream = conv["stream"]
    await li.send_chat(w.conv_stream, "王浩妈妈您好")
    w.notice_confirm = int(
        (await li.publish_notice(cid, "运动会同意书", kind="confirm_required"))["id"]
    )
    w.notice_reply = int(
        (
            await li.publish_notice(
                cid, "家长会能否参加", kind="reply_required", choices=["参加", "不参加"]
            )
        )["id"]
    )
    w.question_own = int((await wang.ask(cid, "分数怎么约分？"))["id"])
    w.question_other = int((await liming.ask(cid, "小数怎么比较？"))["id"])
    lesson = await li.request(
        "session.start", {"class_id": cid, "kind": "lesson", "title": "数学：分数"}
    )
    w.session_id = int(lesson["session"]["id"])
    w.poll_students = int(
        (await li.create_poll(cid, "分数难吗？", "single", ["难", "不难"], correct=["不难"]))["id"]
    )
    w.poll_guardians = int(
        (
            await li.create_poll(
                cid, "家长会哪天？", "multiple", ["周五", "周六"], audience="guardians"
            )
        )["id"]
    )
    w.homework_id = int((await li.assign_homework(cid, "练习册第3页", time.time() + 3600))["id"])
    for c in clients.values():
        await c.sync()
    yield w
    await http.close()
    await stop_server(srv)


# --- Socket.IO ----------------------------------------------------------------------------------

Payload = Callable[[World, str], Awaitable[dict[str, Any]]]


def _const(make: Callable[[World], dict[str, Any]]) -> Payload:
    async def payload(w: World, _actor: str) -> dict[str, Any]:
        return make(w)

    return payload


def _cid() -> str:
    return uuid.uuid4().hex


async def _delete_payload(w: World, _a: str) -> dict[str, Any]:
    return {"message_id": await w.fresh_message()}


async def _withdraw_payload(w: World, _a: str) -> dict[str, Any]:
    return {"question_id": await w.fresh_question()}


async def _answer_payload(w: World, _a: str) -> dict[str, Any]:
    return {"question_id": await w.fresh_question(), "answer": "约分就是同时除以公因数"}


async def _reopen_payload(w: World, _a: str) -> dict[str, Any]:
    return {"question_id": await w.fresh_question(dismissed=True)}


async def _link_payload(w: World, _a: str) -> dict[str, Any]:
    return {"session_id": await w.fresh_link_request(), "class_id": w.class_id, "accept": True}


async def _delivered_payload(w: World, _a: str) -> dict[str, Any]:
    return {"notice_ids": [await w.fresh_notice()]}


async def _remind_payload(w: World, _a: str) -> dict[str, Any]:
    return {"notice_id": await w.fresh_notice(kind="confirm_required")}


async def _fresh_poll_payload(w: World, _a: str) -> dict[str, Any]:
    return {"poll_id": await w.fresh_poll()}


async def _review_payload(w: World, _a: str) -> dict[str, Any]:
    hid = await w.fresh_homework(submitted=True)
    return {"homework_id": hid, "student_id": w.uids["wanghao"], "comment": "好", "score": 9}


async def _homework_remind_payload(w: World, _a: str) -> dict[str, Any]:
    return {"homework_id": await w.fresh_homework()}


SOCKET_ACTIONS: dict[str, Payload] = {
    "sync": _const(lambda w: {"cursors": {}}),
    "chat.send students": _const(
        lambda w: {"stream": w.students_chat, "client_id": _cid(), "body": "hi"}
    ),
    "chat.send guardians": _const(
        lambda w: {"stream": w.guardians_chat, "client_id": _cid(), "body": "hello parents"}
    ),
    "chat.send conversation": _const(
        lambda w: {"stream": w.conv_stream, "client_id": _cid(), "body": "private"}
    ),
    "chat.edit": _const(lambda w: {"message_id": w.message_id, "body": "edited"}),
    "chat.edit missing": _const(lambda w: {"message_id": 10**9, "body": "edited"}),
    "chat.delete": _delete_payload,
    "chat.delete missing": _const(lambda w: {"message_id": 10**9}),
    "chat.history students": _const(lambda w: {"stream": w.students_chat}),
    "chat.history conversation": _const(lambda w: {"stream": w.conv_stream}),
    "chat.read": _const(lambda w: {"stream": w.students_chat, "seq": 1}),
    "chat.read_by": _const(lambda w: {"message_id": w.guardians_message_id}),
    "chat.read_by missing": _const(lambda w: {"message_id": 10**9}),
    "chat.typing": _const(lambda w: {"stream": w.students_chat}),
    "chat.mute": _const(
        lambda w: {"class_id": w.class_id, "user_id": w.uids["liming"], "minutes": 0}
    ),
    "conversation.open with-head-teacher": _const(
        lambda w: {"class_id": w.class_id, "user_id": w.uids["li"]}
    ),
    "conversation.open with-student": _const(
        lambda w: {"class_id": w.class_id, "user_id": w.uids["wanghao"]}
    ),
    "notice.publish": _const(
        lambda w: {
            "class_id": w.class_id,
            "client_id": _cid(),
            "audience": "guardians",
            "kind": "info",
            "title": "明天放假",
        }
    ),
    "notice.list": _const(lambda w: {"class_id": w.class_id}),
    "notice.delivered": _delivered_payload,
    "notice.read": _const(lambda w: {"notice_id": w.notice_confirm}),
    "notice.confirm": _const(lambda w: {"notice_id": w.notice_confirm}),
    "notice.reply": _const(lambda w: {"notice_id": w.notice_reply, "reply": "参加"}),
    "notice.receipts": _const(lambda w: {"notice_id": w.notice_confirm}),
    "notice.receipts missing": _const(lambda w: {"notice_id": 10**9}),
    "notice.remind": _remind_payload,
    "question.ask": _const(
        lambda w: {"class_id": w.class_id, "client_id": _cid(), "body": "为什么？"}
    ),
    "question.edit": _const(lambda w: {"question_id": w.question_own, "body": "分数怎么约分呢？"}),
    "question.withdraw": _withdraw_payload,
    "question.vote": _const(lambda w: {"question_id": w.question_other, "up": True}),
    "question.vote own": _const(lambda w: {"question_id": w.question_own, "up": True}),
    "question.answer": _answer_payload,
    "question.answer missing": _const(lambda w: {"question_id": 10**9, "answer": "x"}),
    "question.dismiss": _withdraw_payload,  # a fresh open question
    "question.reopen": _reopen_payload,
    "question.list": _const(lambda w: {"class_id": w.class_id}),
    "session.start": _const(
        lambda w: {"class_id": w.class_id, "kind": "lesson", "title": "又一节"}
    ),
    "session.list": _const(lambda w: {"class_id": w.class_id}),
    "session.join": _const(lambda w: {"session_id": w.session_id}),
    "poll.create": _const(
        lambda w: {
            "class_id": w.class_id,
            "client_id": _cid(),
            "kind": "single",
            "question": "A or B?",
            "options": ["A", "B"],
        }
    ),
    "poll.answer": _const(lambda w: {"poll_id": w.poll_students, "answer": ["不难"]}),
    "poll.answer guardians": _const(lambda w: {"poll_id": w.poll_guardians, "answer": ["周五"]}),
    "poll.close": _fresh_poll_payload,
    "poll.publish": _fresh_poll_payload,
    "poll.get": _const(lambda w: {"poll_id": w.poll_students}),
    "poll.get missing": _const(lambda w: {"poll_id": 10**9}),
    "poll.list": _const(lambda w: {"class_id": w.class_id}),
    "attendance.report": _const(lambda w: {"session_id": w.session_id}),
    "attendance.correct": _const(
        lambda w: {
            "session_id": w.session_id,
            "student_id": w.uids["liming"],
            "status": "excused",
            "note": "病假",
        }
    ),
    "record.student": _const(
        lambda w: {"class_id": w.class_id, "student_id": w.uids["wanghao"], "period": "week"}
    ),
    "record.student other-child": _const(
        lambda w: {"class_id": w.class_id, "student_id": w.uids["liming"], "period": "term"}
    ),
    "record.class": _const(lambda w: {"class_id": w.class_id, "period": "month"}),
    "record.digest": _const(lambda w: {"class_id": w.class_id}),
    "homework.assign": _const(
        lambda w: {
            "class_id": w.class_id,
            "client_id": _cid(),
            "title": "作业",
            "due_at": time.time() + 3600,
        }
    ),
    "homework.submit": _const(lambda w: {"homework_id": w.homework_id, "body": "我的作业"}),
    "homework.review": _review_payload,
    "homework.rollup": _const(lambda w: {"homework_id": w.homework_id}),
    "homework.remind": _homework_remind_payload,
    "homework.list": _const(lambda w: {"class_id": w.class_id}),
    "homework.list other-child": _const(
        lambda w: {"class_id": w.class_id, "student_id": w.uids["liming"]}
    ),
    "classroom.link": _link_payload,
}


def _socket_outcome(row: str, ack: dict[str, Any]) -> str:
    if not ack.get("ok"):
        return str(ack["error"]["code"])
    if row == "notice.delivered":
        return "ok" if ack["delivered"] else "ignored"
    return "ok"


def _diff(observed: dict[str, dict[str, str]], expected: dict[str, dict[str, str]]) -> list[str]:
    lines = []
    for row, want in expected.items():
        got = observed.get(row, {})
        for actor, outcome in want.items():
            if got.get(actor) != outcome:
                lines.append(f"{row:45} {actor:15} expected {outcome:12} got {got.get(actor)}")
    return lines


async def test_matrix_covers_the_whole_protocol(world: World) -> None:
    """A new event or endpoint without a row here fails: nobody forgets to decide who may."""
    events = {row.split(" ")[0] for row in SOCKET_EXPECTED}
    live_events = set(world.srv.app[GATEWAY].sid_routes)
    assert events == set(ROUTES) | {"sync"} | (live_events - LIVE_NOT_IN_MATRIX)
    assert live_events >= LIVE_NOT_IN_MATRIX
    assert set(SOCKET_ACTIONS) == set(SOCKET_EXPECTED)
    endpoints = {" ".join(row.split(" ")[:2]) for row in REST_EXPECTED}
    assert endpoints == {f"{e.method} {e.path}" for e in rest.API}
    assert set(REST_ACTIONS) == set(REST_EXPECTED)


async def test_socket_matrix(world: World) -> None:
    observed: dict[str, dict[str, str]] = {}
    for row, make_payload in SOCKET_ACTIONS.items():
        event = row.split(" ")[0]
        for actor in CONNECTED:
            payload = await make_payload(world, actor)
            ack = await world.clients[actor].sio.call(event, payload, timeout=10)
            assert isinstance(ack, dict), (row, actor, ack)
            observed.setdefault(row, {})[actor] = _socket_outcome(row, ack)
    # Every push of the matrix has arrived once each person has a sentinel published after it.
    await sentinel_to(world.srv, {c: world.uids[a] for a, c in world.clients.items()})
    leaks = _leaks(world)
    mismatches = _diff(observed, SOCKET_EXPECTED)
    assert not mismatches, "authorization matrix differs:\n" + "\n".join(mismatches)
    assert not leaks, "events pushed to people who may not see them:\n" + "\n".join(leaks)


def _leaks(world: World) -> list[str]:
    """Every event pushed while the matrix ran was in a stream the receiver may follow."""
    cid, other = world.class_id, world.other_class_id
    uid = world.uids
    may_see = {
        "wanghao": (
            f"class:{cid}:students",
            f"notices:{cid}:students",
            f"qa:{cid}",
            "conv:",
            f"user:{uid['wanghao']}",
        ),
        "wang_mom": (
            f"class:{cid}:guardians",
            f"notices:{cid}:guardians",
            "conv:",
            f"user:{uid['wang_mom']}",
        ),
        "admin": (f"user:{uid['admin']}",),
        "other_guardian": (f"user:{uid['other_guardian']}", f"class:{other}:", f"notices:{other}:"),
        "other_student": (
            f"user:{uid['other_student']}",
            f"class:{other}:",
            f"notices:{other}:",
            f"qa:{other}",
        ),
        "unlinked": (f"user:{uid['unlinked']}",),
    }
    out = []
    # The pushes were real: the teacher saw the matrix happen, the family saw their part.
    if len(world.raw_events["li"]) < 50:
        out.append(f"li received only {len(world.raw_events['li'])} events")
    for actor in ("wanghao", "wang_mom"):
        if not world.raw_events[actor]:
            out.append(f"{actor} received nothing")
    for actor, prefixes in may_see.items():
        for e in world.raw_events[actor]:
            if not e["stream"].startswith(prefixes):
                out.append(f"{actor} got {e['stream']} {e['type']}")
    # A private conversation reaches its two people only.
    for actor, evs in world.raw_events.items():
        if actor not in ("li", "wang_mom") and any(e["stream"] == world.conv_stream for e in evs):
            out.append(f"{actor} got the li/wang_mom conversation")
    if not any(e["stream"] == world.conv_stream for e in world.raw_events["wang_mom"]):
        out.append("wang_mom never got her conversation")
    return out


# --- REST ---------------------------------------------------------------------------------------

RestCall = Callable[[World, str], Awaitable[tuple[str, str, Any, Any]]]


def _rest(method: str, path: Callable[[World], str], body: Any = None) -> RestCall:
    async def call(w: World, _actor: str) -> tuple[str, str, Any, Any]:
        return method, path(w), body, None

    return call


async def _roster_call(w: World, _a: str) -> tuple[str, str, Any, Any]:
    n = next(w.counter)
    csv_text = (
        "student,student_username,guardian,guardian_username,relationship,phone\n"
        f"新同学{n},new_student_{n},新同学{n}爸爸,new_parent_{n},father,13900000000\n"
    )
    return "POST", f"/api/v1/classes/{w.class_id}/roster", None, csv_text


async def _roster_existing_call(w: World, _a: str) -> tuple[str, str, Any, Any]:
    """A new student whose guardian is an existing account of the school (of another class)."""
    n = next(w.counter)
    async with w.srv.app[HUB].store.transaction() as conn:
        existing = f"existing_parent_{n}"
        await create_user(conn, w.school_id, existing, "别班家长", None, phone="13811112222", now=0)
    csv_text = (
        "student,student_username,guardian,guardian_username,relationship,phone\n"
        f"新同学{n},kid_of_existing_{n},别班家长,{existing},mother,\n"
    )
    return "POST", f"/api/v1/classes/{w.class_id}/roster", None, csv_text


async def _login_call(w: World, _a: str) -> tuple[str, str, Any, Any]:
    # A fresh name per try: repeated wrong passwords for one account back off (test_signin).
    body = {"username": f"nobody_{next(w.counter)}", "password": "not-it"}
    return "POST", "/api/v1/auth/login", body, None


async def _approve_call(w: World, _a: str) -> tuple[str, str, Any, Any]:
    return "POST", f"/api/v1/links/{await w.fresh_pending_link()}/approve", None, None


async def _reject_call(w: World, _a: str) -> tuple[str, str, Any, Any]:
    return "POST", f"/api/v1/links/{await w.fresh_pending_link()}/reject", None, None


async def _li_upload(w: World) -> str:
    return str((await files.create(w.clients["li"], "a.pdf", len(SMALL_PDF)))["id"])


async def _sent_file(w: World, sender: str, stream: str) -> str:
    att = await w.clients[sender].upload(SMALL_PDF, "作业.pdf")
    await w.clients[sender].send_chat(stream, "", attachments=[att["id"]])
    return str(att["id"])


async def _upload_status(w: World, _a: str) -> tuple[str, str, Any, Any]:
    return "GET", f"/api/v1/uploads/{await _li_upload(w)}", None, None


async def _upload_chunk(w: World, _a: str) -> tuple[str, str, Any, Any]:
    return "PATCH", f"/api/v1/uploads/{await _li_upload(w)}", None, SMALL_PDF


async def _upload_cancel(w: World, _a: str) -> tuple[str, str, Any, Any]:
    return "DELETE", f"/api/v1/uploads/{await _li_upload(w)}", None, None


async def _links(w: World, _a: str) -> tuple[str, str, Any, Any]:
    uid = await _sent_file(w, "wanghao", w.students_chat)
    return "POST", "/api/v1/uploads/links", {"ids": [uid]}, None


async def _links_conversation(w: World, _a: str) -> tuple[str, str, Any, Any]:
    uid = await _sent_file(w, "li", w.conv_stream)
    return "POST", "/api/v1/uploads/links", {"ids": [uid], "variant": "thumb"}, None


async def _links_homework(w: World, _a: str) -> tuple[str, str, Any, Any]:
    li = w.clients["li"]
    att = await li.upload(SMALL_PDF, "练习.pdf")
    await li.assign_homework(w.class_id, "带附件", time.time() + 3600, attachments=[att["id"]])
    return "POST", "/api/v1/uploads/links", {"ids": [att["id"]]}, None


async def _links_submission(w: World, _a: str) -> tuple[str, str, Any, Any]:
    hid = await w.fresh_homework()
    wang = w.clients["wanghao"]
    att = await wang.upload(SMALL_PDF, "我的作业.pdf")
    await wang.submit_homework(hid, "", attachments=[att["id"]])
    return "POST", "/api/v1/uploads/links", {"ids": [att["id"]]}, None


async def _download(w: World, _a: str) -> tuple[str, str, Any, Any]:
    uid = await _sent_file(w, "wanghao", w.students_chat)
    url = (await files.links(w.clients["wanghao"], [uid]))[uid]
    return "GET", url.removeprefix(w.srv.url), None, None


async def _download_expired(w: World, _a: str) -> tuple[str, str, Any, Any]:
    uid = await _sent_file(w, "wanghao", w.students_chat)
    secret = link_secret(w.srv.app[HUB])
    return "GET", sign_link(secret, uid, "original", int(time.time()) - 1), None, None


PUSH_ENDPOINT = "http://127.0.0.1:9/push/"  # the discard port: closed, never answers


async def _push_subscribe_call(w: World, actor: str) -> tuple[str, str, Any, Any]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    raw = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    keys = {"p256dh": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), "auth": "A" * 22}
    return (
        "POST",
        "/api/v1/push/subscriptions",
        {"endpoint": PUSH_ENDPOINT + actor, "keys": keys},
        None,
    )


async def _fresh_class(w: World) -> int:
    async with w.srv.app[HUB].store.transaction() as conn:
        return await create_class(conn, w.school_id, f"新班级 {next(w.counter)}")


async def _fresh_person(w: World, class_id: int | None = None, role: Role | None = None) -> int:
    n = next(w.counter)
    async with w.srv.app[HUB].store.transaction() as conn:
        uid = await create_user(
            conn, w.school_id, f"fresh_{n}_{uuid.uuid4().hex[:6]}", "新人", None, now=0.0
        )
        if class_id is not None and role is not None:
            await add_member(conn, class_id, uid, role)
    return uid


async def _year_call(w: World, _a: str) -> tuple[str, str, Any, Any]:
    return "POST", "/api/v1/school/years", {"name": f"{2000 + next(w.counter)}学年"}, None


async def _archive_year_call(w: World, _a: str) -> tuple[str, str, Any, Any]:
    async with w.srv.app[HUB].store.transaction() as conn:
        year = inserted_id(
            await conn.execute(
                school_years.insert().values(school_id=w.school_id, name=f"y{next(w.counter)}")
            )
        )
    return "POST", f"/api/v1/school/years/{year}/archive", None, None


async def _new_class_call(w: World, _a: str) -> tuple[str, str, Any, Any]:
    return "POST", "/api/v1/school/classes", {"name": f"三年级{next(w.counter)}班"}, None


async def _archive_class_call(w: World, _a: str) -> tuple[str, str, Any, Any]:
    return "POST", f"/api/v1/classes/{await _fresh_class(w)}/archive", None, None


async def _teacher_call(w: World, _a: str) -> tuple[str, str, Any, Any]:
    # A class of its own: the shared class's members stay as the other tests expect them.
    body = {"user_id": await _fresh_person(w), "role": "teacher"}
    return "POST", f"/api/v1/classes/{await _fresh_class(w)}/teachers", body, None


async def _move_call(w: World, _a: str) -> tuple[str, str, Any, Any]:
    old, new = await _fresh_class(w), await _fresh_class(w)
    body = {"student_id": await _fresh_person(w, old, Role.STUDENT), "to_class_id": new}
    return "POST", f"/api/v1/classes/{old}/move", body, None


REST_ACTIONS: dict[str, RestCall] = {
    "POST /api/v1/auth/login": _login_call,
    "POST /api/v1/auth/refresh": _rest(
        "POST", lambda w: "/api/v1/auth/refresh", {"refresh_token": "made-up"}
    ),
    "POST /api/v1/auth/logout": _rest(
        "POST", lambda w: "/api/v1/auth/logout", {"refresh_token": "made-up"}
    ),
    "POST /api/v1/auth/register": _rest(
        "POST",
        lambda w: "/api/v1/auth/register",
        {
            "username": "nobody",
            "password": "long-enough",
            "display_name": "x",
            "join_code": "NOPE1",
        },
    ),
    "GET /api/v1/openapi.json": _rest("GET", lambda w: "/api/v1/openapi.json"),
    "GET /api/v1/me": _rest("GET", lambda w: "/api/v1/me"),
    "POST /api/v1/join": _rest(
        "POST",
        lambda w: "/api/v1/join",
        {"join_code": "JOINCODE", "child_name": STUDENT_NAME},
    ),
    "GET /api/v1/classes": _rest("GET", lambda w: "/api/v1/classes"),
    "GET /api/v1/classes/{class_id}/members": _rest(
        "GET", lambda w: f"/api/v1/classes/{w.class_id}/members"
    ),
    "GET /api/v1/classes/{class_id}/members missing-class": _rest(
        "GET", lambda w: "/api/v1/classes/999999/members"
    ),
    "GET /api/v1/classes/{class_id}/links": _rest(
        "GET", lambda w: f"/api/v1/classes/{w.class_id}/links"
    ),
    "POST /api/v1/classes/{class_id}/roster": _roster_call,
    "POST /api/v1/classes/{class_id}/roster existing-account": _roster_existing_call,
    "POST /api/v1/links/{link_id}/approve": _approve_call,
    "POST /api/v1/links/{link_id}/approve missing": _rest(
        "POST", lambda w: "/api/v1/links/999999/approve"
    ),
    "POST /api/v1/links/{link_id}/reject": _reject_call,
    "GET /api/v1/history": _rest("GET", lambda w: f"/api/v1/history?stream={w.students_chat}"),
    "GET /api/v1/history conversation": _rest(
        "GET", lambda w: f"/api/v1/history?stream={w.conv_stream}"
    ),
    "GET /api/v1/notices/{notice_id}/receipts": _rest(
        "GET", lambda w: f"/api/v1/notices/{w.notice_confirm}/receipts"
    ),
    "GET /api/v1/notices/{notice_id}/receipts.csv": _rest(
        "GET", lambda w: f"/api/v1/notices/{w.notice_confirm}/receipts.csv"
    ),
    "GET /api/v1/lessons/{session_id}/attendance": _rest(
        "GET", lambda w: f"/api/v1/lessons/{w.session_id}/attendance"
    ),
    "GET /api/v1/lessons/{session_id}/attendance missing": _rest(
        "GET", lambda w: "/api/v1/lessons/999999/attendance"
    ),
    "GET /api/v1/lessons/{session_id}/attendance.csv": _rest(
        "GET", lambda w: f"/api/v1/lessons/{w.session_id}/attendance.csv"
    ),
    "GET /api/v1/classes/{class_id}/records": _rest(
        "GET", lambda w: f"/api/v1/classes/{w.class_id}/records?period=term"
    ),
    "GET /api/v1/classes/{class_id}/students/{student_id}/record": _rest(
        "GET", lambda w: f"/api/v1/classes/{w.class_id}/students/{w.uids['wanghao']}/record"
    ),
    "GET /api/v1/classes/{class_id}/students/{student_id}/record other-child": _rest(
        "GET", lambda w: f"/api/v1/classes/{w.class_id}/students/{w.uids['liming']}/record"
    ),
    "GET /api/v1/homework/{homework_id}/submissions": _rest(
        "GET", lambda w: f"/api/v1/homework/{w.homework_id}/submissions"
    ),
    "GET /api/v1/homework/{homework_id}/submissions.csv": _rest(
        "GET", lambda w: f"/api/v1/homework/{w.homework_id}/submissions.csv"
    ),
    "GET /api/v1/sessions/{session_id}/stats": _rest(
        "GET", lambda w: f"/api/v1/sessions/{w.session_id}/stats"
    ),
    "GET /api/v1/sessions/{session_id}/stats missing": _rest(
        "GET", lambda w: "/api/v1/sessions/999999/stats"
    ),
    "GET /api/v1/audit": _rest("GET", lambda w: "/api/v1/audit"),
    "POST /api/v1/uploads": _rest(
        "POST", lambda w: "/api/v1/uploads", {"name": "a.pdf", "size": 100}
    ),
    "GET /api/v1/uploads/{upload_id}": _upload_status,
    "PATCH /api/v1/uploads/{upload_id}": _upload_chunk,
    "DELETE /api/v1/uploads/{upload_id}": _upload_cancel,
    "POST /api/v1/uploads/links": _links,
    "POST /api/v1/uploads/links conversation": _links_conversation,
    "POST /api/v1/uploads/links homework": _links_homework,
    "POST /api/v1/uploads/links submission": _links_submission,
    "GET /files/{upload_id}/{variant}": _download,
    "GET /files/{upload_id}/{variant} expired": _download_expired,
    "GET /api/v1/school/storage": _rest("GET", lambda w: "/api/v1/school/storage"),
    "PUT /api/v1/school/storage": _rest("PUT", lambda w: "/api/v1/school/storage", {}),
    "GET /api/v1/push/key": _rest("GET", lambda w: "/api/v1/push/key"),
    "POST /api/v1/push/subscriptions": _push_subscribe_call,
    "DELETE /api/v1/push/subscriptions": _rest(
        "DELETE", lambda w: "/api/v1/push/subscriptions", {"endpoint": PUSH_ENDPOINT + "gone"}
    ),
    "GET /api/v1/push/settings": _rest("GET", lambda w: "/api/v1/push/settings"),
    "PUT /api/v1/push/settings": _rest(
        "PUT",
        lambda w: "/api/v1/push/settings",
        {"kinds": ["notice"], "quiet_hours": {"start": "22:00", "end": "07:00"}},
    ),
    "GET /api/v1/school": _rest("GET", lambda w: "/api/v1/school"),
    "PUT /api/v1/school/settings": _rest(
        "PUT", lambda w: "/api/v1/school/settings", {"time_zone": "Asia/Shanghai"}
    ),
    "POST /api/v1/school/years": _year_call,
    "POST /api/v1/school/years/{year_id}/archive": _archive_year_call,
    "POST /api/v1/school/classes": _new_class_call,
    "POST /api/v1/classes/{class_id}/archive": _archive_class_call,
    "POST /api/v1/classes/{class_id}/teachers": _teacher_call,
    "POST /api/v1/classes/{class_id}/move": _move_call,
    "GET /api/v1/school/links": _rest("GET", lambda w: "/api/v1/school/links"),
    "GET /api/v1/classes/{class_id}/join-qr.svg": _rest(
        "GET", lambda w: f"/api/v1/classes/{w.class_id}/join-qr.svg"
    ),
}


async def test_rest_matrix(world: World) -> None:
    observed: dict[str, dict[str, str]] = {}
    for row, make_call in REST_ACTIONS.items():
        for actor in EVERYONE:
            method, path, body, raw = await make_call(world, actor)
            if isinstance(body, dict) and body.get("join_code") == "JOINCODE":
                body = {**body, "join_code": world.join_code}
            headers = {}
            token = world.tokens[actor]
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            kw: dict[str, Any] = {"json": body} if body is not None else {}
            if isinstance(raw, bytes):  # a chunk of an upload
                kw = {
                    "data": raw,
                    "headers": {
                        **headers,
                        "Upload-Offset": "0",
                        "Content-Type": "application/offset+octet-stream",
                    },
                }
            elif raw is not None:
                kw = {"data": raw.encode(), "headers": {**headers, "Content-Type": "text/csv"}}
            else:
                kw["headers"] = headers
            async with world.http.request(method, world.srv.url + path, **kw) as resp:
                if resp.content_type == "application/json":
                    data = await resp.json()
                    outcome = (
                        data["error"]["code"]
                        if isinstance(data, dict) and data.get("ok") is False
                        else "pending"
                        if isinstance(data, dict) and data.get("pending")
                        else "ok"
                    )
                else:
                    await resp.read()
                    outcome = "ok" if resp.status < 300 else f"http {resp.status}"
                assert resp.status in HTTP_FOR.get(outcome, {resp.status}), (
                    row,
                    actor,
                    outcome,
                    resp.status,
                )
            observed.setdefault(row, {})[actor] = outcome
    mismatches = _diff(observed, REST_EXPECTED)
    assert not mismatches, "REST authorization matrix differs:\n" + "\n".join(mismatches)


# --- tokens at connect ------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["expired", "anonymous", "forged"])
async def test_bad_tokens_are_refused_at_connect(world: World, actor: str) -> None:
    if actor == "forged":
        # The right key id, the wrong secret.
        forger = TokenIssuer(
            {world.srv.settings.secret_key_id: "x" * 40}, world.srv.settings.secret_key_id, 900
        )
        token: str | None = forger.issue(world.uids["li"], world.school_id)
    else:
        token = world.tokens[actor]
    errors: list[Any] = []
    async with aiohttp.ClientSession() as http:
        sio = socketio.AsyncClient(reconnection=False, http_session=http)
        sio.on("connect_error", lambda data=None: errors.append(data))
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(
                world.srv.url, auth={"token": token}, transports=["websocket"], wait_timeout=5
            )
    assert not sio.connected
    assert len(errors) == 1
    assert errors[0]["data"]["code"] == "unauthorized", errors[0]
    if actor == "expired":
        assert "expired" in errors[0]["message"]


# --- what each person sees ----------------------------------------------------------------------


async def test_each_person_follows_only_their_streams(world: World) -> None:
    cid = world.class_id
    staff_streams = {
        f"class:{cid}:students",
        f"class:{cid}:guardians",
        f"notices:{cid}:students",
        f"notices:{cid}:guardians",
        f"qa:{cid}",
        f"staff:{cid}",
    }
    expected = {
        "li": staff_streams | {world.conv_stream},
        "chen": staff_streams,
        "wanghao": {f"class:{cid}:students", f"notices:{cid}:students", f"qa:{cid}"},
        "wang_mom": {f"class:{cid}:guardians", f"notices:{cid}:guardians", world.conv_stream},
        "admin": set(),
        "other_guardian": {
            f"class:{world.other_class_id}:guardians",
            f"notices:{world.other_class_id}:guardians",
        },
        "other_student": {
            f"class:{world.other_class_id}:students",
            f"notices:{world.other_class_id}:students",
            f"qa:{world.other_class_id}",
        },
        "unlinked": set(),
    }
    peek = {
        f"class:{cid}:students": 0,
        f"class:{cid}:guardians": 0,
        f"notices:{cid}:guardians": 0,
        f"staff:{cid}": 0,
        f"qa:{cid}": 0,
        world.conv_stream: 0,
    }
    for actor, want in expected.items():
        ack = await world.clients[actor].request("sync", {"cursors": peek})
        followed = {s["stream"] for s in ack["streams"]}
        # Conversations the matrix opened (a teacher with wanghao) are theirs too.
        convs = {c["stream"] for c in ack["conversations"]}
        uid = world.uids[actor]
        assert followed - convs == (want - {world.conv_stream}) | {f"user:{uid}"}, actor
        if world.conv_stream in want:
            assert world.conv_stream in followed, actor
        # Asking for streams one may not see gives nothing from them.
        leaked = {e["stream"] for e in ack["events"]} - followed
        assert not leaked, (actor, leaked)


async def test_what_a_guardian_and_a_student_are_shown(world: World) -> None:
    # A guardian sees the teachers, her own child and herself in the member list, no phones.
    members = await world.clients["wang_mom"].http(
        "GET", f"/api/v1/classes/{world.class_id}/members"
    )
    ids = {m["id"] for m in members["members"]}
    assert ids == {
        world.uids["li"],
        world.uids["chen"],
        world.uids["wanghao"],
        world.uids["wang_mom"],
    }
    assert all("phone" not in m for m in members["members"])
    assert "join_code" not in members["class"]
    # A student's notice list has no notice addressed to guardians only.
    listed = await world.clients["wanghao"].request("notice.list", {"class_id": world.class_id})
    assert world.notice_confirm not in {n["id"] for n in listed["notices"]}
    listed = await world.clients["wang_mom"].request("notice.list", {"class_id": world.class_id})
    assert world.notice_confirm in {n["id"] for n in listed["notices"]}
    # An expired token cannot even read who it is.
    with pytest.raises(RequestError) as err:
        c = HomeroomClient(world.srv.url)
        c.token = world.tokens["expired"]
        await c.http("GET", "/api/v1/me")
    assert err.value.code == "unauthorized"
