"""The REST API under /api/v1, plus /healthz and /metrics.

Routes are declared once in ``API``; the OpenAPI document is built from the same table, and a
test checks that it matches the routes the app serves.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from aiohttp import web

from realtime import jsoncodec, schemas
from realtime.actions import (
    accounts,
    attendance,
    audit,
    chat,
    homework,
    notices,
    push,
    records,
    roster,
    roster_import,
)
from realtime.auth import Identity
from realtime.cluster.watch import NodeWatch
from realtime.domain.exportlang import choose_lang
from realtime.errors import HTTP_STATUS, HomeroomError, bad_request, forbidden, too_large
from realtime.hub import Hub
from realtime.live.schemas import SessionRef
from realtime.live.service import LiveService
from realtime.metrics import Metrics
from realtime.transport.clientaddr import ClientAddresses
from realtime.transport.openapi import openapi_document

log = logging.getLogger(__name__)

HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics", Metrics)
LIVE = web.AppKey("live", LiveService)
ADDRESSES = web.AppKey("addresses", ClientAddresses)
NODES = web.AppKey("nodes", NodeWatch)
MAX_ROSTER_BYTES = 2 * 1024 * 1024
# What the edge stores on a request (``_edge``): who sent it and its validated body.
IDENTITY = web.RequestKey("identity", Identity)
BODY = web.RequestKey("body", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: bool = True
    body: type[Any] | None = None


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        data, status=status, headers=headers, dumps=lambda d: json.dumps(d, ensure_ascii=False)
    )


def error_response(exc: HomeroomError, extra: dict[str, Any] | None = None) -> web.Response:
    body = exc.to_ack()
    if extra:
        body["error"].update(extra)
    response = _json(body, HTTP_STATUS[exc.code])
    if isinstance(exc, accounts.Throttled):
        response.headers["Retry-After"] = str(exc.retry_after)
    elif "retry_after_s" in exc.details:
        response.headers["Retry-After"] = str(int(exc.details["retry_after_s"]))
    return response


def identity(request: web.Request) -> Identity:
    """Who sent this request: proven at the edge (``_edge``) before anything else is read."""
    who = request.get(IDENTITY)
    return _verify(request) if who is None else who  # None: a route outside the table


def body(request: web.Request) -> Any:
    """The request's body, already validated against its endpoint's schema by ``_edge``."""
    return request[BODY]


def _verify(request: web.Request) -> Identity:
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else None
    return request.app[HUB].tokens.verify(token)


async def _body(request: web.Request, kind: type[Any]) -> Any:
    raw = await request.read()
    try:
        data = jsoncodec.loads(raw)
    except ValueError as exc:
        raise bad_request(f"the body must be JSON: {str(exc)[:160]}") from None
    return schemas.parse(kind, data)


def _edge(endpoint: Endpoint) -> Handler:
    """The one gate of every endpoint: the token first (a request without one gets 401 before
    its body is read), then the body against the endpoint's schema, then the handler."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if endpoint.auth:
            request[IDENTITY] = _verify(request)
        if endpoint.body is not None:
            request[BODY] = await _body(request, endpoint.body)
        return await endpoint.handler(request)

    return handle


_PATH_ID = re.compile(r"[1-9][0-9]{0,15}")


def _int(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if _PATH_ID.fullmatch(text) is None or int(text) > schemas.MAX_ID:
        raise bad_request(f"{name} must be a whole number from 1 to {schemas.MAX_ID}")
    return int(text)


# --- handlers ---------------------------------------------------------------------------------


DEVICE_COOKIE = "homeroom_device"


def client_address(request: web.Request) -> str:
    return request.app[ADDRESSES].resolve(request.remote, request.headers.get("X-Forwarded-For"))


async def login(request: web.Request) -> web.StreamResponse:
    result = await accounts.login(
        request.app[HUB], body(request), client_address(request), request.cookies.get(DEVICE_COOKIE)
    )
    response = _json(result)
    # The browser keeps the device token where scripts cannot read it (docs/security.md).
    response.set_cookie(
        DEVICE_COOKIE,
        result["device_token"],
        max_age=365 * 24 * 3600,
        path="/api/v1/auth",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def refresh(request: web.Request) -> web.StreamResponse:
    return _json(await accounts.refresh(request.app[HUB], body(request)))


async def logout(request: web.Request) -> web.StreamResponse:
    return _json(await accounts.logout(request.app[HUB], body(request)))


async def register(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    return _json(await accounts.register(hub, body(request), client_address(request)), 201)


async def me(request: web.Request) -> web.StreamResponse:
    return _json(await accounts.me(request.app[HUB], identity(request).user_id))


async def join(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    return _json(await roster.request_link(request.app[HUB], who.user_id, body(request)), 201)


async def school_classes(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    return _json(await roster.school_classes(request.app[HUB], who.user_id))


async def class_members(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    return _json(await roster.members(request.app[HUB], who.user_id, _int(request, "class_id")))


async def class_links(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    hub = request.app[HUB]
    return _json(await roster.pending_links(hub, who.user_id, _int(request, "class_id")))


async def approve_link(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    hub = request.app[HUB]
    return _json(await roster.decide_link(hub, who.user_id, _int(request, "link_id"), True))


async def reject_link(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    hub = request.app[HUB]
    return _json(await roster.decide_link(hub, who.user_id, _int(request, "link_id"), False))


async def import_roster(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    if (request.content_length or 0) > MAX_ROSTER_BYTES:
        raise too_large("a roster file is at most 2 MiB")
    # The whole body (content.read(n) returns what has arrived so far, which cut big files in
    # the middle of a character), bounded as it arrives.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_ROSTER_BYTES:
            raise too_large("a roster file is at most 2 MiB")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("the roster must be UTF-8 CSV") from None
    try:
        result = await roster_import.import_roster(
            request.app[HUB], who.user_id, _int(request, "class_id"), text
        )
    except roster_import.RosterRejected as exc:
        return error_response(exc, {"rejected": roster_import.rejection_report(exc)})
    return _json(result, 201)


async def history(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    q = request.query
    try:
        payload: dict[str, Any] = {
            "stream": q.get("stream", ""),
            "limit": int(q.get("limit", "50")),
        }
        if "before" in q:
            payload["before"] = int(q["before"])
    except ValueError:
        raise bad_request("limit and before must be numbers") from None
    req = schemas.parse(schemas.ChatHistory, payload)
    return _json(await chat.history(request.app[HUB], who.user_id, req))


async def notice_receipts(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    q = request.query
    payload: dict[str, Any] = {"notice_id": _int(request, "notice_id")}
    try:
        payload.update({k: int(q[k]) for k in ("limit", "after") if k in q})
    except ValueError:
        raise bad_request("limit and after must be numbers") from None
    if "list" in q:
        payload["list"] = q["list"]
    req = schemas.parse(schemas.NoticeReceipts, payload)
    return _json(await notices.receipts_rollup(request.app[HUB], who.user_id, req))


async def notice_receipts_csv(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    nid = _int(request, "notice_id")
    lang = choose_lang(request.query.get("lang"), request.headers.get("Accept-Language"))
    text = await notices.receipts_csv(request.app[HUB], who.user_id, nid, lang)
    return _csv(text, f"notice-{nid}-receipts.csv")


async def audit_log(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    q = request.query
    try:
        payload: dict[str, Any] = {k: int(q[k]) for k in ("before", "limit") if k in q}
    except ValueError:
        raise bad_request("before and limit must be numbers") from None
    req = schemas.parse(schemas.AuditQuery, payload)
    return _json(await audit.read(request.app[HUB], who.user_id, req))


def _csv(text: str, filename: str) -> web.Response:
    return web.Response(
        body=("\ufeff" + text).encode("utf-8"),  # BOM: spreadsheet apps read UTF-8 CSV right
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _period(request: web.Request, **fixed: Any) -> dict[str, Any]:
    q = request.query
    payload: dict[str, Any] = {**fixed, "period": q.get("period", "week")}
    try:
        payload.update({k: float(q[k]) for k in ("since", "until") if k in q})
    except ValueError:
        raise bad_request("since and until are Unix times") from None
    return payload


async def lesson_attendance(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    req = schemas.LessonRef(session_id=_int(request, "session_id"))
    return _json(await attendance.report(request.app[HUB], who.user_id, req))


async def lesson_attendance_csv(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    sid = _int(request, "session_id")
    lang = choose_lang(request.query.get("lang"), request.headers.get("Accept-Language"))
    text = await attendance.report_csv(request.app[HUB], who.user_id, sid, lang)
    return _csv(text, f"lesson-{sid}-attendance.csv")


async def student_record(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    payload = _period(
        request, class_id=_int(request, "class_id"), student_id=_int(request, "student_id")
    )
    req = schemas.parse(schemas.StudentRecordQuery, payload)
    return _json(await records.student_record(request.app[HUB], who.user_id, req))


async def class_record(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    req = schemas.parse(
        schemas.ClassRecordQuery, _period(request, class_id=_int(request, "class_id"))
    )
    return _json(await records.class_record(request.app[HUB], who.user_id, req))


async def homework_rollup(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    req = schemas.HomeworkRef(homework_id=_int(request, "homework_id"))
    return _json(await homework.rollup(request.app[HUB], who.user_id, req))


async def homework_rollup_csv(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    hid = _int(request, "homework_id")
    lang = choose_lang(request.query.get("lang"), request.headers.get("Accept-Language"))
    text = await homework.rollup_csv(request.app[HUB], who.user_id, hid, lang)
    return _csv(text, f"homework-{hid}.csv")


async def session_stats(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    # Answered by the session's node, wherever it runs.
    ref = SessionRef(session_id=_int(request, "session_id"))
    return _json(await request.app[LIVE].route("session.stats", who.user_id, ref))


async def push_key(request: web.Request) -> web.StreamResponse:
    identity(request)
    return _json(push.public_key(request.app[HUB]))


async def push_subscribe(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    body = await _body(request, schemas.PushSubscribe)
    return _json(await push.subscribe(request.app[HUB], who.user_id, body), 201)


async def push_unsubscribe(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    body = await _body(request, schemas.PushUnsubscribe)
    return _json(await push.unsubscribe(request.app[HUB], who.user_id, body))


async def push_settings_get(request: web.Request) -> web.StreamResponse:
    return _json(await push.get_settings(request.app[HUB], identity(request).user_id))


async def push_settings_put(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    body = await _body(request, schemas.PushSettings)
    return _json(await push.put_settings(request.app[HUB], who.user_id, body))


async def healthz(request: web.Request) -> web.StreamResponse:
    """200 while the store answers; ``status`` is "degraded" while the bus is down (people on
    this node still get each other's messages live, other nodes' from the store by the
    follower), 503 and "down" while the store does not (every write answers unavailable)."""
    hub = request.app[HUB]
    ok = await hub.store.ping()
    bus = hub.bus.health
    body: dict[str, object] = {
        "ok": ok,
        "status": ("ok" if bus.state != "down" else "degraded") if ok else "down",
        "store": "up" if ok else "down",
        "bus": bus.state,
    }
    if bus.down_since is not None:
        body["bus_down_s"] = round(max(0.0, time.time() - bus.down_since), 1)
    down_since = hub.store.health.down_since
    if not ok and down_since is not None:
        # Since the first request that could not reach it (every write answers unavailable).
        body["store_down_s"] = round(max(0.0, time.time() - down_since), 1)
    watch = request.app[NODES]
    body["node"] = watch.name
    body["nodes"] = len(watch.membership.nodes)  # alive in the registry, this one included
    return _json(body, 200 if ok else 503)


async def nodes(request: web.Request) -> web.StreamResponse:
    """The node registry as this node last read it, for admins: the same access as /metrics
    (it names internal addresses)."""
    _metrics_allowed(request)
    watch = request.app[NODES]
    return _json(
        {
            "node": watch.name,
            "shared": watch.registry.shared,
            "nodes": [n.view() for n in sorted(watch.membership.nodes.values(), key=_by_name)],
        },
        200,
    )


def _by_name(n: Any) -> str:
    return str(n.name)


def _metrics_allowed(request: web.Request) -> None:
    """Prometheus' usual arrangement: scrapers on allowed addresses, or with a bearer token."""
    settings = request.app[HUB].settings
    header = request.headers.get("Authorization", "")
    if header:
        given = header[7:] if header.lower().startswith("bearer ") else ""
        expected = settings.metrics_token
        if expected and hmac.compare_digest(given.encode(), expected.encode()):
            return
        raise HomeroomError("unauthorized", "the metrics token is not valid")
    try:
        remote: IPv4Address | IPv6Address | None = ip_address(
            (request.remote or "").split("%", 1)[0]
        )
    except ValueError:
        remote = None
    if isinstance(remote, IPv6Address) and remote.ipv4_mapped is not None:
        remote = remote.ipv4_mapped  # a dual-stack socket's IPv4 client
    networks = settings.metrics_networks
    if remote is not None and any(remote in net for net in networks):
        return
    raise forbidden("metrics are served only to allowed addresses or with the metrics token")


async def metrics(request: web.Request) -> web.StreamResponse:
    _metrics_allowed(request)
    return web.Response(
        body=request.app[METRICS].render(), content_type="text/plain", charset="utf-8"
    )


async def openapi(request: web.Request) -> web.StreamResponse:
    return _json(openapi_document(API))


API: list[Endpoint] = [
    Endpoint("POST", "/api/v1/auth/login", login, "Sign in with a password", False, schemas.Login),
    Endpoint(
        "POST",
        "/api/v1/auth/refresh",
        refresh,
        "Trade a refresh token for new tokens",
        False,
        schemas.RefreshBody,
    ),
    Endpoint(
        "POST", "/api/v1/auth/logout", logout, "Revoke a refresh token", False, schemas.RefreshBody
    ),
    Endpoint(
        "POST",
        "/api/v1/auth/register",
        register,
        "Create a guardian account with a class join code",
        False,
        schemas.Register,
    ),
    Endpoint("GET", "/api/v1/me", me, "Who I am, my classes, roles, children, pending links"),
    Endpoint(
        "POST",
        "/api/v1/join",
        join,
        "Ask to be linked to a child of a class",
        True,
        schemas.JoinClass,
    ),
    Endpoint(
        "GET",
        "/api/v1/classes",
        school_classes,
        "The classes of my school, to link into a dual-teacher lesson (teachers, admins)",
    ),
    Endpoint("GET", "/api/v1/classes/{class_id}/members", class_members, "A class's members"),
    Endpoint(
        "GET", "/api/v1/classes/{class_id}/links", class_links, "Pending guardian link requests"
    ),
    Endpoint(
        "POST",
        "/api/v1/classes/{class_id}/roster",
        import_roster,
        "Import a roster CSV (all rows or none)",
    ),
    Endpoint("POST", "/api/v1/links/{link_id}/approve", approve_link, "Approve a guardian link"),
    Endpoint("POST", "/api/v1/links/{link_id}/reject", reject_link, "Reject a guardian link"),
    Endpoint("GET", "/api/v1/history", history, "A stream's chat history, newest page first"),
    Endpoint(
        "GET",
        "/api/v1/notices/{notice_id}/receipts",
        notice_receipts,
        "A notice's receipts rolled up per student",
    ),
    Endpoint(
        "GET",
        "/api/v1/notices/{notice_id}/receipts.csv",
        notice_receipts_csv,
        "A notice's receipts as CSV",
    ),
    Endpoint(
        "GET",
        "/api/v1/sessions/{session_id}/stats",
        session_stats,
        "Forwarding statistics of a live session, per track and subscriber (host only)",
    ),
    Endpoint(
        "GET",
        "/api/v1/audit",
        audit_log,
        "The school's audit log, newest first, a page at a time (school admins)",
    ),
    Endpoint(
        "GET",
        "/api/v1/lessons/{session_id}/attendance",
        lesson_attendance,
        "A lesson's attendance and participation per student (the class's teachers)",
    ),
    Endpoint(
        "GET",
        "/api/v1/lessons/{session_id}/attendance.csv",
        lesson_attendance_csv,
        "A lesson's attendance as CSV",
    ),
    Endpoint(
        "GET",
        "/api/v1/classes/{class_id}/records",
        class_record,
        "Every student's record and the class's totals over a period (?period=week|month|term)",
    ),
    Endpoint(
        "GET",
        "/api/v1/classes/{class_id}/students/{student_id}/record",
        student_record,
        "A student's learning record (the student, their approved guardians, class staff)",
    ),
    Endpoint(
        "GET",
        "/api/v1/homework/{homework_id}/submissions",
        homework_rollup,
        "A homework's submissions rolled up per student",
    ),
    Endpoint(
        "GET",
        "/api/v1/homework/{homework_id}/submissions.csv",
        homework_rollup_csv,
        "A homework's submissions as CSV",
    ),
    Endpoint("GET", "/api/v1/push/key", push_key, "The server's VAPID public key for Web Push"),
    Endpoint(
        "POST",
        "/api/v1/push/subscriptions",
        push_subscribe,
        "Push to this browser (its PushSubscription)",
        True,
        schemas.PushSubscribe,
    ),
    Endpoint(
        "DELETE",
        "/api/v1/push/subscriptions",
        push_unsubscribe,
        "Stop pushing to this browser",
        True,
        schemas.PushUnsubscribe,
    ),
    Endpoint(
        "GET", "/api/v1/push/settings", push_settings_get, "What I am pushed, and quiet hours"
    ),
    Endpoint(
        "PUT",
        "/api/v1/push/settings",
        push_settings_put,
        "Choose what I am pushed, and quiet hours (school time)",
        True,
        schemas.PushSettings,
    ),
    Endpoint("GET", "/api/v1/openapi.json", openapi, "This document", False),
]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HomeroomError as exc:
        request.app[METRICS].errors.labels(exc.code).inc()
        return error_response(exc)
    except web.HTTPException:
        raise
    except ConnectionResetError:
        # The client went away (gave up waiting, a phone lost its network): not our failure,
        # and in a storm of reconnections a traceback each cost the node a tenth of its CPU.
        log.debug("request %s %s: the client went away", request.method, request.path)
        return web.Response(status=400, text="the connection was lost")  # (nobody reads it)
    except Exception:
        log.exception("request %s %s failed", request.method, request.path)
        return error_response(HomeroomError("internal", "something went wrong"))


def add_routes(app: web.Application) -> None:
    for e in API:
        app.router.add_route(e.method, e.path, _edge(e))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz/nodes", nodes)


# Routes of other concepts, in their own modules (imported last: they use the helpers above):
# the attachment endpoints (transport/uploads.py) and the school's set-up (rest_school.py).
from realtime.transport import rest_school  # noqa: E402
from realtime.transport.uploads import UPLOAD_API  # noqa: E402

API.extend(UPLOAD_API)
API += rest_school.ENDPOINTS
