"""Roster import: a CSV of students and guardians, all rows or none (docs/security.md: what an
import may enrol and link)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from realtime.actions import audit
from realtime.actions.access import class_access, require_class
from realtime.actions.accounts import create_user
from realtime.actions.roster import add_member, link_guardian, new_password, tell_link_decided
from realtime.domain import policy
from realtime.domain.policy import require
from realtime.domain.roles import Role
from realtime.domain.roster import Rejection, parse_roster
from realtime.domain.streams import staff_stream
from realtime.errors import HomeroomError
from realtime.hub import Hub
from realtime.store.db import DbConnection
from realtime.store.schema import classes, guardian_links, users


async def import_roster(hub: Hub, actor_id: int | None, class_id: int, text: str) -> dict[str, Any]:
    """Import students and guardians: every row or none. ``actor_id`` None is the console.

    Accounts the file creates are enrolled and linked. An account that existed before is
    enrolled or linked only by a school admin (or the console), or if it is already there;
    otherwise its row is reported under ``pending``: the person joins by their own request.
    """
    rows, bad = parse_roster(text)
    created: list[dict[str, str]] = []
    pending: list[dict[str, Any]] = []
    async with hub.store.transaction() as conn:
        await require_class(conn, class_id)
        school_id = (
            await conn.execute(select(classes.c.school_id).where(classes.c.id == class_id))
        ).scalar_one()
        admin = actor_id is None
        if actor_id is not None:
            access = await class_access(conn, actor_id, class_id)
            require(policy.may_manage_roster(access), "only teachers of this class import rosters")
            me = (
                await conn.execute(
                    select(users.c.school_admin, users.c.school_id).where(users.c.id == actor_id)
                )
            ).one()
            admin = bool(me.school_admin) and me.school_id == school_id
        if bad:
            raise RosterRejected(bad)
        # Second pass against the database: names already taken by someone else.
        ids: dict[str, int] = {}
        new_ids: set[int] = set()
        students: set[int] = set()
        guardians: set[int] = set()
        now = hub.now()
        for row in rows:
            for username, name, phone in (
                (row.student_username, row.student, None),
                (row.guardian_username, row.guardian, row.phone or None),
            ):
                if not username or username in ids:
                    continue
                user = (
                    await conn.execute(select(users).where(users.c.username == username))
                ).first()
                if user is not None:
                    if user.school_id != school_id:
                        bad.append(Rejection(row.line, f"{username} belongs to another school"))
                    ids[username] = user.id
                    continue
                password = new_password()
                digest = await hub.passwords.hash(password)
                ids[username] = await create_user(
                    conn,
                    school_id,
                    username,
                    name,
                    None,
                    phone=phone,
                    now=now,
                    password_hash=digest,
                )
                new_ids.add(ids[username])
                created.append({"username": username, "display_name": name, "password": password})
        for row in rows:
            student = ids[row.student_username]
            student_access = await class_access(conn, student, class_id)
            if student_access.is_staff:
                bad.append(Rejection(row.line, f"{row.student_username} is a teacher here"))
                continue
            if not policy.may_enrol_by_import(
                created_now=student in new_ids,
                already_there=student_access.is_student,
                school_admin=admin,
            ):
                pending.append(_pending(row.line, row.student_username, "enrolled"))
                continue
            await add_member(conn, class_id, student, Role.STUDENT)
            students.add(student)
            if not row.guardian_username:
                continue
            guardian = ids[row.guardian_username]
            if not policy.may_enrol_by_import(
                created_now=guardian in new_ids,
                already_there=await _linked(conn, guardian, student),
                school_admin=admin,
            ):
                pending.append(_pending(row.line, row.guardian_username, "linked"))
                continue
            guardians.add(guardian)
            was_linked = await _linked(conn, guardian, student)
            link_id = await link_guardian(
                conn,
                class_id,
                guardian,
                student,
                row.relationship,
                status="approved",
                by=actor_id,
                now=now,
            )
            if not was_linked:
                await tell_link_decided(hub, conn, link_id, class_id, guardian, student)
        await audit.record(
            conn,
            actor_id=actor_id,
            action="roster.import",
            now=now,
            class_id=class_id,
            school_id=school_id,
            detail={
                "rows": len(rows),
                "created": [c["username"] for c in created],
                "pending": [p["username"] for p in pending],
            },
        )
        if bad:
            # Roll the whole file back (the audit entry too): raising ends the transaction
            # without a commit.
            raise RosterRejected(bad)
        data = {
            "class_id": class_id,
            "rows": len(rows),
            "students": sorted(students),
            "guardians": sorted(guardians),
        }
        await hub.store.append(conn, str(staff_stream(class_id)), "roster.imported", data)
    # Their classes changed: every node re-enters their connections in the class's streams.
    for uid in sorted((students | guardians) - new_ids):
        await hub.resync_user(uid)
    return {"ok": True, "rows": len(rows), "created": created, "pending": pending}


def _pending(line: int, username: str, what: str) -> dict[str, Any]:
    return {
        "line": line,
        "username": username,
        "reason": f"{username} is an existing account and was not {what}: they ask with the "
        "class's join code and a teacher approves, or a school admin imports this row",
    }


async def _linked(conn: DbConnection, guardian_id: int, student_id: int) -> bool:
    status = (
        await conn.execute(
            select(guardian_links.c.status).where(
                guardian_links.c.guardian_id == guardian_id,
                guardian_links.c.student_id == student_id,
            )
        )
    ).scalar()
    return status == "approved"


class RosterRejected(HomeroomError):
    """The file was refused; ``rejected`` says why, row by row."""

    def __init__(self, bad: list[Rejection]) -> None:
        super().__init__(
            "bad_request",
            "the roster was not imported: "
            + "; ".join(f"line {b.line}: {b.reason}" for b in bad[:20]),
        )
        self.rejected = bad


def rejection_report(exc: HomeroomError) -> list[dict[str, Any]]:
    return [{"line": b.line, "reason": b.reason} for b in getattr(exc, "rejected", [])]
