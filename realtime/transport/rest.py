"""The REST API under /api/v1, plus /healthz and /metrics.

Routes are declared once in ``API``; the OpenAPI document is built from the same table, and a
test checks that it matches the routes the app serves.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from realtime import schemas
from realtime.actions import accounts, audit, chat, notices, roster, roster_import
from realtime.auth import Identity
from realtime.domain.exportlang import choose_lang
from realtime.errors import HTTP_STATUS, HomeroomError, bad_request, too_large
from realtime.hub import Hub
from realtime.live.actions import LiveService
from realtime.metrics import Metrics
from realtime.transport.clientaddr import ClientAddresses

log = logging.getLogger(__name__)

HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics", Metrics)
LIVE = web.AppKey("live", LiveService)
ADDRESSES = web.AppKey("addresses", ClientAddresses)
MAX_ROSTER_BYTES = 2 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: bool = True
    body: type[Any] | None = None


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def error_response(exc: HomeroomError, extra: dict[str, Any] | None = None) -> web.Response:
    body = exc.to_ack()
    if extra:
        body["error"].update(extra)
    response = _json(body, HTTP_STATUS[exc.code])
    if isinstance(exc, accounts.Throttled):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def identity(request: web.Request) -> Identity:
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else None
    return request.app[HUB].tokens.verify(token)


async def _body(request: web.Request, kind: type[Any]) -> Any:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("the body must be JSON") from None
    return schemas.parse(kind, data)


def _int(request: web.Request, name: str) -> int:
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise bad_request(f"{name} must be a number") from None
    if value < 1:
        raise bad_request(f"{name} must be positive")
    return value


# --- handlers ---------------------------------------------------------------------------------


DEVICE_COOKIE = "homeroom_device"


def client_address(request: web.Request) -> str:
    return request.app[ADDRESSES].resolve(request.remote, request.headers.get("X-Forwarded-For"))


async def login(request: web.Request) -> web.StreamResponse:
    body = await _body(request, schemas.Login)
    result = await accounts.login(
        request.app[HUB], body, client_address(request), request.cookies.get(DEVICE_COOKIE)
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
    body = await _body(request, schemas.RefreshBody)
    return _json(await accounts.refresh(request.app[HUB], body))


async def logout(request: web.Request) -> web.StreamResponse:
    body = await _body(request, schemas.RefreshBody)
    return _json(await accounts.logout(request.app[HUB], body))


async def register(request: web.Request) -> web.StreamResponse:
    body = await _body(request, schemas.Register)
    hub = request.app[HUB]
    return _json(await accounts.register(hub, body, client_address(request)), 201)


async def me(request: web.Request) -> web.StreamResponse:
    return _json(await accounts.me(request.app[HUB], identity(request).user_id))


async def join(request: web.Request) -> web.StreamResponse:
    body = await _body(request, schemas.JoinClass)
    who = identity(request)
    return _json(await roster.request_link(request.app[HUB], who.user_id, body), 201)


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
    raw = await request.content.read(MAX_ROSTER_BYTES + 1)
    if len(raw) > MAX_ROSTER_BYTES:
        raise too_large("a roster file is at most 2 MiB")
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
    return web.Response(
        body=("\ufeff" + text).encode("utf-8"),  # BOM: spreadsheet apps read UTF-8 CSV right
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="notice-{nid}-receipts.csv"'},
    )


async def audit_log(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    q = request.query
    try:
        payload: dict[str, Any] = {k: int(q[k]) for k in ("before", "limit") if k in q}
    except ValueError:
        raise bad_request("before and limit must be numbers") from None
    req = schemas.parse(schemas.AuditQuery, payload)
    return _json(await audit.read(request.app[HUB], who.user_id, req))


async def session_stats(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    return _json(request.app[LIVE].stats_for(who.user_id, _int(request, "session_id")))


async def healthz(request: web.Request) -> web.StreamResponse:
    """200 while the store answers; ``status`` is "degraded" while the bus is down (people on
    this node still get each other's messages; other nodes' messages wait for the bus)."""
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
    return _json(body, 200 if ok else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=request.app[METRICS].render(), content_type="text/plain", charset="utf-8"
    )


async def openapi(request: web.Request) -> web.StreamResponse:
    return _json(openapi_document())


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
    Endpoint("GET", "/api/v1/openapi.json", openapi, "This document", False),
]


def openapi_document() -> dict[str, Any]:
    import msgspec

    paths: dict[str, dict[str, Any]] = {}
    bodies = [e.body for e in API if e.body is not None]
    _defs, components = msgspec.json.schema_components(
        bodies, ref_template="#/components/schemas/{name}"
    )
    for e in API:
        op: dict[str, Any] = {
            "summary": e.summary,
            "operationId": e.handler.__name__,
            "responses": {
                "200": {"description": "ok"},
                "4XX": {
                    "description": "an error with a stable code",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        params = [p.strip("{}") for p in e.path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "integer"}}
                for p in params
            ]
        if e.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{e.body.__name__}"}
                    }
                },
            }
        if e.auth:
            op["security"] = [{"bearer": []}]
        paths.setdefault(e.path, {})[e.method.lower()] = op
    components["Error"] = {
        "type": "object",
        "properties": {
            "ok": {"const": False},
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Homeroom API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HomeroomError as exc:
        request.app[METRICS].errors.labels(exc.code).inc()
        return error_response(exc)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("request %s %s failed", request.method, request.path)
        return error_response(HomeroomError("internal", "something went wrong"))


def add_routes(app: web.Application) -> None:
    for e in API:
        app.router.add_route(e.method, e.path, e.handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)


# Routes of other concepts, in their own modules (imported last: they use the helpers above).
from realtime.transport import rest_school  # noqa: E402

API += rest_school.ENDPOINTS
