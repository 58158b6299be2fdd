"""REST routes of a school that sets itself up (realtime/actions/school_admin.py); rest.py adds
``ENDPOINTS`` to its route table, so they are in the OpenAPI document too."""

from __future__ import annotations

from aiohttp import web

from realtime import qr, schemas
from realtime.actions import school_admin
from realtime.transport.rest import HUB, Endpoint, _body, _int, _json, identity


async def school(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    return _json(await school_admin.overview(request.app[HUB], who.user_id))


async def school_settings(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    body = await _body(request, schemas.SchoolSettings)
    return _json(await school_admin.set_settings(request.app[HUB], who.user_id, body))


async def create_year(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    body = await _body(request, schemas.SchoolYearCreate)
    return _json(await school_admin.create_year(request.app[HUB], who.user_id, body), 201)


async def archive_year(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    year_id = _int(request, "year_id")
    return _json(await school_admin.archive_year(request.app[HUB], who.user_id, year_id))


async def create_class(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    body = await _body(request, schemas.ClassCreate)
    return _json(await school_admin.create_class(request.app[HUB], who.user_id, body), 201)


async def archive_class(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    cid = _int(request, "class_id")
    return _json(await school_admin.archive_class(request.app[HUB], who.user_id, cid))


async def assign_teacher(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    cid = _int(request, "class_id")
    body = await _body(request, schemas.TeacherAssign)
    return _json(await school_admin.assign_teacher(request.app[HUB], who.user_id, cid, body))


async def move_student(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    cid = _int(request, "class_id")
    body = await _body(request, schemas.StudentMove)
    return _json(await school_admin.move_student(request.app[HUB], who.user_id, cid, body))


async def school_links(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    return _json(await school_admin.pending_links(request.app[HUB], who.user_id))


async def join_qr(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    cid = _int(request, "class_id")
    code = await school_admin.join_code_of(request.app[HUB], who.user_id, cid)
    origin = f"{request.scheme}://{request.host}"
    return web.Response(
        body=qr.svg(qr.join_url(origin, code)),
        content_type="image/svg+xml",
        headers={"Cache-Control": "no-store"},
    )


ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/api/v1/school", school, "The school: settings, years, classes (admins)"),
    Endpoint(
        "PUT",
        "/api/v1/school/settings",
        school_settings,
        "The school's settings: its time zone, whether new guardians see the guardians' earlier "
        "chat (admins)",
        True,
        schemas.SchoolSettings,
    ),
    Endpoint(
        "POST",
        "/api/v1/school/years",
        create_year,
        "Create a school year (admins)",
        True,
        schemas.SchoolYearCreate,
    ),
    Endpoint(
        "POST",
        "/api/v1/school/years/{year_id}/archive",
        archive_year,
        "Archive a school year and its classes (admins)",
    ),
    Endpoint(
        "POST",
        "/api/v1/school/classes",
        create_class,
        "Create a class with a new join code (admins)",
        True,
        schemas.ClassCreate,
    ),
    Endpoint(
        "POST",
        "/api/v1/classes/{class_id}/archive",
        archive_class,
        "Archive a class (admins)",
    ),
    Endpoint(
        "POST",
        "/api/v1/classes/{class_id}/teachers",
        assign_teacher,
        "Assign or remove a head, subject or assistant teacher (admins)",
        True,
        schemas.TeacherAssign,
    ),
    Endpoint(
        "POST",
        "/api/v1/classes/{class_id}/move",
        move_student,
        "Move a student (and their guardians) to another class (admins)",
        True,
        schemas.StudentMove,
    ),
    Endpoint(
        "GET",
        "/api/v1/school/links",
        school_links,
        "Every pending guardian link request of the school (admins)",
    ),
    Endpoint(
        "GET",
        "/api/v1/classes/{class_id}/join-qr.svg",
        join_qr,
        "The class's join link as a QR code, SVG (its teachers, admins)",
    ),
]
