"""``homeroom school ...``: a school sets itself up from the console, through the same actions
(policy, audit log) as the web app and REST. ``--as`` names the school admin who acts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from realtime import qr, schemas
from realtime.actions import school_admin
from realtime.errors import HomeroomError
from realtime.store import Store
from realtime.store.schema import users

Work = Callable[[Any, int, argparse.Namespace], Awaitable[Any]]


async def _uid(store: Store, username: str) -> int:
    async with store.read() as conn:
        row = (await conn.execute(select(users.c.id).where(users.c.username == username))).first()
    if row is None:
        raise HomeroomError("not_found", f"no user {username}")
    return int(row.id)


def _run(args: argparse.Namespace, work: Work) -> int:
    from realtime.auth import TokenIssuer
    from realtime.bus import LocalBus
    from realtime.cli import _settings, _with_store
    from realtime.hub import Hub

    settings = _settings(args)

    async def go(store: Store) -> int:
        hub = Hub(
            settings,
            store,
            LocalBus(),
            TokenIssuer(settings.signing_keys, settings.secret_key_id, 60),
        )
        try:
            result = await work(hub, await _uid(store, args.actor), args)
        except HomeroomError as exc:
            print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
            return 1
        finally:
            hub.passwords.close()
        if isinstance(result, bytes):
            sys.stdout.buffer.write(result)
        else:
            print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0

    return asyncio.run(_with_store(settings, go))


async def _show(hub: Any, uid: int, a: argparse.Namespace) -> Any:
    return await school_admin.overview(hub, uid)


async def _add_year(hub: Any, uid: int, a: argparse.Namespace) -> Any:
    return await school_admin.create_year(hub, uid, schemas.SchoolYearCreate(name=a.name))


async def _archive_year(hub: Any, uid: int, a: argparse.Namespace) -> Any:
    return await school_admin.archive_year(hub, uid, a.year_id)


async def _add_class(hub: Any, uid: int, a: argparse.Namespace) -> Any:
    req = schemas.ClassCreate(name=a.name, school_year_id=a.year)
    return await school_admin.create_class(hub, uid, req)


async def _archive_class(hub: Any, uid: int, a: argparse.Namespace) -> Any:
    return await school_admin.archive_class(hub, uid, a.class_id)


async def _teacher(hub: Any, uid: int, a: argparse.Namespace) -> Any:
    req = schemas.TeacherAssign(
        user_id=await _uid(hub.store, a.username), role=a.role, remove=a.remove
    )
    return await school_admin.assign_teacher(hub, uid, a.class_id, req)


async def _move(hub: Any, uid: int, a: argparse.Namespace) -> Any:
    req = schemas.StudentMove(student_id=await _uid(hub.store, a.student), to_class_id=a.to)
    return await school_admin.move_student(hub, uid, a.class_id, req)


async def _links(hub: Any, uid: int, a: argparse.Namespace) -> Any:
    return await school_admin.pending_links(hub, uid)


async def _time_zone(hub: Any, uid: int, a: argparse.Namespace) -> Any:
    return await school_admin.set_settings(hub, uid, schemas.SchoolSettings(time_zone=a.zone))


async def _guardian_history(hub: Any, uid: int, a: argparse.Namespace) -> Any:
    req = schemas.SchoolSettings(guardian_chat_history=a.open == "open")
    return await school_admin.set_settings(hub, uid, req)


async def _qr(hub: Any, uid: int, a: argparse.Namespace) -> Any:
    code = await school_admin.join_code_of(hub, uid, a.class_id)
    return qr.svg(qr.join_url(a.origin, code))


def add_parser(sub: Any) -> None:
    school = sub.add_parser("school", help="set up the school: years, classes, teachers")
    school.add_argument("--as", dest="actor", required=True, help="a school admin's username")
    cmds = school.add_subparsers(dest="school_command", required=True)

    def cmd(name: str, work: Work, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = cmds.add_parser(name, help=help)
        p.set_defaults(func=lambda args: _run(args, work))
        return p

    cmd("show", _show, "the school's settings, years and classes (with join codes)")
    cmd("add-year", _add_year, "create a school year").add_argument("name")
    cmd("archive-year", _archive_year, "archive a year and its classes").add_argument(
        "year_id", type=int
    )
    p = cmd("add-class", _add_class, "create a class (prints its join code)")
    p.add_argument("name")
    p.add_argument("--year", type=int, help="school year id")
    cmd("archive-class", _archive_class, "archive a class").add_argument("class_id", type=int)
    p = cmd("teacher", _teacher, "assign (or --remove) a teacher of a class")
    p.add_argument("class_id", type=int)
    p.add_argument("username")
    p.add_argument(
        "--role", default="teacher", choices=["head_teacher", "teacher", "assistant_teacher"]
    )
    p.add_argument("--remove", action="store_true")
    p = cmd("move-student", _move, "move a student (and guardians) to another class")
    p.add_argument("class_id", type=int)
    p.add_argument("student", help="the student's username")
    p.add_argument("--to", type=int, required=True, help="the new class id")
    cmd("links", _links, "every pending guardian link request of the school")
    cmd("time-zone", _time_zone, "set the school's time zone (CSV exports)").add_argument("zone")
    p = cmd(
        "guardian-history",
        _guardian_history,
        "whether newly approved guardians see the guardians' earlier chat",
    )
    p.add_argument("open", choices=["open", "closed"])
    p = cmd("qr", _qr, "a class's join link as a QR code (SVG on stdout)")
    p.add_argument("class_id", type=int)
    p.add_argument("--origin", required=True, help="the web app's address, e.g. https://x.cn")
