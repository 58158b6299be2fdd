"""Accounts end to end: sign in, refresh rotation, sign out, key rotation, who am I, a new
guardian's way into a class (register, ask, wait, be approved or rejected), health, metrics and
the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import socketio

from clients.homeroom import HomeroomClient, RequestError
from realtime.auth import TokenIssuer
from realtime.demo import DEMO_PASSWORD
from realtime.transport.rest import LIVE
from tests.conftest import DATABASES, Server, start_on, stop_server
from tests.services import drop_postgres_database

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

OLD_KID, OLD_SECRET = "k0", "the-previous-secret-0123456789-abcdefghijkl"


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=DATABASES)
async def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    server, name = await start_on(
        request.param,
        tmp_path_factory.mktemp("accounts"),
        secret_key_id="k1",
        old_secrets={OLD_KID: OLD_SECRET},
    )
    yield server
    await stop_server(server)
    if name:
        drop_postgres_database(name)


async def _status(
    srv: Server, method: str, path: str, token: str | None = None, **kw: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, srv.url + path, headers=headers, **kw) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


# --- sign in, refresh, sign out ---------------------------------------------------------------


async def test_login_and_wrong_credentials(srv: Server) -> None:
    c = await srv.client(None)
    body = await c.login("li", DEMO_PASSWORD)
    assert body["user"]["username"] == "li" and body["expires_in"] == 900
    status, me = await _status(srv, "GET", "/api/v1/me", body["access_token"])
    assert status == 200 and me["user"]["id"] == srv.uid("li")

    wrong = await _status(
        srv, "POST", "/api/v1/auth/login", json={"username": "li", "password": "demo12345"}
    )
    unknown = await _status(
        srv,
        "POST",
        "/api/v1/auth/login",
        json={"username": "nobody_here", "password": DEMO_PASSWORD},
    )
    assert wrong[0] == unknown[0] == 401
    assert wrong[1]["error"]["code"] == unknown[1]["error"]["code"] == "unauthorized"
    # Nothing tells a stranger which usernames exist.
    assert wrong[1]["error"]["message"] == unknown[1]["error"]["message"]
    assert "refresh_token" not in wrong[1] and "access_token" not in wrong[1]


async def test_refresh_rotates_and_logout_revokes(srv: Server) -> None:
    c = await srv.client(None)
    await c.login("chen", DEMO_PASSWORD)
    first_refresh = c.refresh_token
    await c.refresh()
    assert c.refresh_token != first_refresh
    status, me = await _status(srv, "GET", "/api/v1/me", c.token)
    assert status == 200 and me["user"]["username"] == "chen"
    # The used refresh token is spent.
    status, body = await _status(
        srv, "POST", "/api/v1/auth/refresh", json={"refresh_token": first_refresh}
    )
    assert status == 401 and body["error"]["code"] == "unauthorized"
    # Signing out revokes the current one.
    current = c.refresh_token
    status, _ = await _status(srv, "POST", "/api/v1/auth/logout", json={"refresh_token": current})
    assert status == 200
    status, body = await _status(
        srv, "POST", "/api/v1/auth/refresh", json={"refresh_token": current}
    )
    assert status == 401 and body["error"]["code"] == "unauthorized"


async def test_tokens_signed_with_an_old_key_still_work_unknown_keys_do_not(srv: Server) -> None:
    uid = srv.uid("wanghao")
    old = TokenIssuer({OLD_KID: OLD_SECRET}, OLD_KID, 900).issue(uid, 1)
    status, me = await _status(srv, "GET", "/api/v1/me", old)
    assert status == 200 and me["user"]["id"] == uid
    c = await srv.client(None)
    await c.connect(old)  # the socket accepts it as well
    assert f"class:{srv.class_id}:students" in c.cursors

    for kid, secret in (("k9", OLD_SECRET), ("k9", srv.settings.secret), (OLD_KID, "x" * 40)):
        bad = TokenIssuer({kid: secret}, kid, 900).issue(uid, 1)
        status, body = await _status(srv, "GET", "/api/v1/me", bad)
        assert status == 401 and body["error"]["code"] == "unauthorized", kid
        refusals: list[Any] = []
        async with aiohttp.ClientSession() as http:
            sio = socketio.AsyncClient(reconnection=False, http_session=http)
            sio.on("connect_error", lambda data=None, r=refusals: r.append(data))
            with pytest.raises(socketio.exceptions.ConnectionError):
                await sio.connect(srv.url, auth={"token": bad}, transports=["websocket"])
        assert refusals[0]["data"]["code"] == "unauthorized"
    unknown = TokenIssuer({"k9": OLD_SECRET}, "k9", 900).issue(uid, 1)
    _, body = await _status(srv, "GET", "/api/v1/me", unknown)
    assert "unknown key" in body["error"]["message"]


# --- who am I -----------------------------------------------------------------------------------


async def test_me_shows_a_guardians_own_children_only(srv: Server) -> None:
    cid = srv.class_id
    expect = {
        "liu_mom": {srv.uid("liuyang"), srv.uid("liuxin")},
        "wang_mom": {srv.uid("wanghao")},
        "liu_dad": {srv.uid("liuyang")},
    }
    for username, children in expect.items():
        c = await srv.client(username, connect=False)
        me = await c.http("GET", "/api/v1/me")
        assert [k["id"] for k in me["classes"]] == [cid]
        assert me["classes"][0]["roles"] == ["guardian"]
        assert {k["id"] for k in me["classes"][0]["children"]} == children, username
        assert me["pending_links"] == []
    teacher = await srv.client("li", connect=False)
    me = await teacher.http("GET", "/api/v1/me")
    assert me["classes"][0]["roles"] == ["head_teacher"] and me["classes"][0]["children"] == []


# --- a new guardian -----------------------------------------------------------------------------


async def _register(srv: Server, username: str) -> HomeroomClient:
    c = await srv.client(None)
    body = await c.http(
        "POST",
        "/api/v1/auth/register",
        {
            "username": username,
            "password": "a-good-long-password",
            "display_name": f"{username} 家长",
            "join_code": srv.demo["join_code"],
        },
        auth=False,
    )
    c.token, c.refresh_token, c.user = body["access_token"], body["refresh_token"], body["user"]
    return c


def _record_resyncs(c: HomeroomClient) -> list[Any]:
    got: list[Any] = []

    async def on_resync(data: Any = None) -> None:
        got.append(data)
        await c._on_resync(data)

    c.sio.on("resync", on_resync)
    return got


async def _wait(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def _assert_sees_nothing_of_the_class(srv: Server, g: HomeroomClient) -> None:
    cid = srv.class_id
    ack = await g.request(
        "sync", {"cursors": {f"class:{cid}:guardians": 0, f"notices:{cid}:guardians": 0}}
    )
    assert [s["stream"] for s in ack["streams"]] == [f"user:{g.user['id']}"]
    assert all(e["stream"].startswith("user:") for e in ack["events"])
    for event, payload in (
        ("notice.list", {"class_id": cid}),
        ("chat.send", {"stream": f"class:{cid}:guardians", "client_id": "x1", "body": "hi"}),
        ("chat.history", {"stream": f"class:{cid}:guardians"}),
    ):
        with pytest.raises(RequestError) as err:
            await g.request(event, payload)
        assert err.value.code == "forbidden", event
    with pytest.raises(RequestError) as err:
        await g.http("GET", f"/api/v1/classes/{cid}/members")
    assert err.value.code == "forbidden"


async def test_new_guardian_is_approved_and_joins_live(srv: Server) -> None:
    cid = srv.class_id
    teacher = await srv.client("li")
    g = await _register(srv, "zhao_mom")
    link = await g.http(
        "POST",
        "/api/v1/join",
        {
            "join_code": srv.demo["join_code"],
            "child_name": "赵磊 Zhao Lei",
            "relationship": "mother",
        },
    )
    assert link["link"]["status"] == "pending" and link["link"]["class_id"] == cid
    me = await g.http("GET", "/api/v1/me")
    assert me["classes"] == []
    assert [p["child"]["name"] for p in me["pending_links"]] == ["赵磊 Zhao Lei"]

    resyncs = _record_resyncs(g)
    await g.connect()
    await _assert_sees_nothing_of_the_class(srv, g)
    # A guardians' notice published now is not for her yet.
    await teacher.publish_notice(cid, "待审核期间的通知", audience="guardians")

    pending = await teacher.http("GET", f"/api/v1/classes/{cid}/links")
    mine = [x for x in pending["links"] if x["guardian_id"] == g.user["id"]]
    assert len(mine) == 1 and mine[0]["student_name"] == "赵磊 Zhao Lei"
    decided = await teacher.http("POST", f"/api/v1/links/{mine[0]['id']}/approve")
    assert decided["link"]["status"] == "approved"

    # Her open connection is told, re-syncs, and now follows the guardians' streams.
    await _wait(lambda: resyncs and f"class:{cid}:guardians" in g.cursors)
    assert f"notices:{cid}:guardians" in g.cursors
    assert f"class:{cid}:students" not in g.cursors
    ev = await g.wait_for(lambda e: e["type"] == "link.decided")
    assert ev["data"]["status"] == "approved" and ev["data"]["student_id"] == srv.uid("zhaolei")
    msg = await g.send_chat(f"class:{cid}:guardians", "李老师好，我是赵磊妈妈")
    got = await teacher.wait_for(
        lambda e: e["type"] == "chat.message" and e["data"]["id"] == msg["id"]
    )
    assert got["data"]["sender_id"] == g.user["id"]
    listed = await g.request("notice.list", {"class_id": cid})
    assert "待审核期间的通知" in [n["title"] for n in listed["notices"]]
    me = await g.http("GET", "/api/v1/me")
    assert me["pending_links"] == []
    assert [k["name"] for k in me["classes"][0]["children"]] == ["赵磊 Zhao Lei"]
    # Deciding twice is refused.
    with pytest.raises(RequestError) as err:
        await teacher.http("POST", f"/api/v1/links/{mine[0]['id']}/reject")
    assert err.value.code == "conflict"


async def test_new_guardian_is_rejected(srv: Server) -> None:
    cid = srv.class_id
    teacher = await srv.client("chen", connect=False)
    g = await _register(srv, "not_a_parent")
    link = await g.http(
        "POST", "/api/v1/join", {"join_code": srv.demo["join_code"], "child_name": "王浩 Wang Hao"}
    )
    await g.connect()
    decided = await teacher.http("POST", f"/api/v1/links/{link['link']['id']}/reject")
    assert decided["link"]["status"] == "rejected"
    ev = await g.wait_for(lambda e: e["type"] == "link.decided")
    assert ev["data"]["status"] == "rejected"
    await g.sync()
    await _assert_sees_nothing_of_the_class(srv, g)
    me = await g.http("GET", "/api/v1/me")
    assert me["classes"] == [] and me["pending_links"] == []
    pending = await teacher.http("GET", f"/api/v1/classes/{cid}/links")
    assert g.user["id"] not in [x["guardian_id"] for x in pending["links"]]


async def test_join_with_a_wrong_name_or_code(srv: Server) -> None:
    g = await _register(srv, "typo_parent")
    for body, code in (
        # A spelling the roster does not have ("王 浩" would be found: spaces do not count).
        ({"join_code": srv.demo["join_code"], "child_name": "王皓"}, "not_found"),
        ({"join_code": "ZZZZZZZZ", "child_name": "王浩 Wang Hao"}, "not_found"),
    ):
        with pytest.raises(RequestError) as err:
            await g.http("POST", "/api/v1/join", body)
        assert err.value.code == code
    with pytest.raises(RequestError) as err:
        await _register(srv, "typo_parent")
    assert err.value.code == "conflict"


# --- operations ---------------------------------------------------------------------------------


def _metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_healthz_and_metrics(srv: Server) -> None:
    status, body = await _status(srv, "GET", "/healthz")
    assert status == 200
    node = srv.app[LIVE].node
    assert body == {
        "ok": True,
        "status": "ok",
        "store": "up",
        "bus": "local",
        "node": node,
        "nodes": 1,  # one process, one node: the in-process registry
    }

    _, text = await _status(srv, "GET", "/metrics")
    conns = _metric(text, "homeroom_connections")
    errors = _metric(text, "homeroom_errors_total", '{code="forbidden"}')
    c = await srv.client("liming")
    with pytest.raises(RequestError):
        await c.request(
            "notice.publish",
            {
                "class_id": srv.class_id,
                "client_id": "m1",
                "audience": "guardians",
                "kind": "info",
                "title": "students may not",
            },
        )
    _, text = await _status(srv, "GET", "/metrics")
    assert "# TYPE homeroom_connections gauge" in text
    assert _metric(text, "homeroom_connections") == conns + 1
    assert _metric(text, "homeroom_errors_total", '{code="forbidden"}') == errors + 1
    await c.close()
    await asyncio.sleep(0.2)
    _, text = await _status(srv, "GET", "/metrics")
    assert _metric(text, "homeroom_connections") == conns


async def test_openapi_lists_exactly_the_served_api(srv: Server) -> None:
    status, doc = await _status(srv, "GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (r.resource.canonical, r.method)
        for r in srv.app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith(("/api/v1/", "/files/"))
        and r.method != "HEAD"
    }
    assert documented == served
    assert len(served) >= 15
    # The attachment endpoints (docs/protocol.md §14) among them, with their request bodies.
    for path, method in (
        ("/api/v1/uploads", "post"),
        ("/api/v1/uploads/{upload_id}", "get"),
        ("/api/v1/uploads/{upload_id}", "patch"),
        ("/api/v1/uploads/{upload_id}", "delete"),
        ("/api/v1/uploads/links", "post"),
        ("/files/{upload_id}/{variant}", "get"),
        ("/api/v1/school/storage", "put"),
    ):
        assert method in doc["paths"][path], (path, method)
    assert doc["paths"]["/api/v1/uploads/links"]["post"]["requestBody"]["content"]
    # A download needs no token: the signed link is the key.
    assert "security" not in doc["paths"]["/files/{upload_id}/{variant}"]["get"]
    # Endpoints that need a token say so; sign-in does not.
    assert "security" in doc["paths"]["/api/v1/me"]["get"]
    assert "security" not in doc["paths"]["/api/v1/auth/login"]["post"]
    assert doc["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"]
