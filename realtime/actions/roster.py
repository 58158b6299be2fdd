"""Roster actions: classes, members, CSV import, and guardian links (request, approve, reject)."""

from __future__ import annotations

import secrets
import string
from typing import Any

from sqlalchemy import select, update

from realtime.actions import audit, notice_rollup
from realtime.actions.access import class_access, display_names, require_class
from realtime.domain import names as child_names
from realtime.domain import policy
from realtime.domain.policy import require
from realtime.domain.roles import Role
from realtime.domain.streams import staff_stream, user_stream
from realtime.errors import HomeroomError, conflict, not_found
from realtime.hub import Hub
from realtime.schemas import JoinClass
from realtime.store.db import DbConnection, inserted_id
from realtime.store.schema import classes, guardian_links, memberships, users

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_join_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))


def new_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(12))


async def create_class(conn: DbConnection, school_id: int, name: str) -> int:
    res = await conn.execute(
        classes.insert().values(school_id=school_id, name=name, join_code=new_join_code())
    )
    return inserted_id(res)


async def add_member(conn: DbConnection, class_id: int, user_id: int, role: Role) -> None:
    exists = (
        await conn.execute(
            select(memberships.c.user_id).where(
                memberships.c.class_id == class_id,
                memberships.c.user_id == user_id,
                memberships.c.role == role.value,
            )
        )
    ).first()
    if exists is None:
        await conn.execute(
            memberships.insert().values(class_id=class_id, user_id=user_id, role=role.value)
        )


async def link_guardian(
    conn: DbConnection,
    class_id: int,
    guardian_id: int,
    student_id: int,
    relationship: str,
    *,
    status: str,
    by: int | None,
    now: float,
) -> int:
    row = (
        await conn.execute(
            select(guardian_links).where(
                guardian_links.c.guardian_id == guardian_id,
                guardian_links.c.student_id == student_id,
            )
        )
    ).first()
    decided = {"decided_by": by, "decided_at": now} if status != "pending" else {}
    if row is None:
        res = await conn.execute(
            guardian_links.insert().values(
                class_id=class_id,
                guardian_id=guardian_id,
                student_id=student_id,
                relationship=relationship,
                status=status,
                requested_at=now,
                **decided,
            )
        )
        link_id = inserted_id(res)
    else:
        link_id = row.id
        await conn.execute(
            guardian_links.update()
            .where(guardian_links.c.id == row.id)
            .values(status=status, relationship=relationship or row.relationship, **decided)
        )
    if status == "approved":
        await add_member(conn, class_id, guardian_id, Role.GUARDIAN)
        await notice_rollup.cover_new_link(conn, class_id, guardian_id, student_id, now)
    return link_id


async def tell_link_decided(
    hub: Hub,
    conn: DbConnection,
    link_id: int,
    class_id: int,
    guardian_id: int,
    student_id: int,
    status: str = "approved",
) -> dict[str, Any]:
    """The guardian learns the decision; the class's teachers see the request settled."""
    data = {"link_id": link_id, "class_id": class_id, "student_id": student_id, "status": status}
    await hub.store.append(conn, str(user_stream(guardian_id)), "link.decided", data)
    staff = {**data, "guardian_id": guardian_id}
    await hub.store.append(conn, str(staff_stream(class_id)), "link.decided", staff)
    return data


async def request_link(hub: Hub, user_id: int, req: JoinClass) -> dict[str, Any]:
    """A guardian asks to be linked to a child in the class with this join code."""
    hub.check_rate(user_id, "join")
    async with hub.store.transaction() as conn:
        cls = (
            await conn.execute(select(classes).where(classes.c.join_code == req.join_code))
        ).first()
        if cls is None:
            raise not_found("no class has this join code")
        access = await class_access(conn, user_id, cls.id)
        if access.is_staff or access.is_student:
            raise conflict("teachers and students of the class do not need a guardian link")
        # The roster's "赵磊 Zhao Lei" is found from "赵磊", "zhao lei", "ＺＨＡＯ ＬＥＩ"...
        # (domain/names.py); only "found" or "not found" comes back, never the class list.
        kids = [
            r
            for r in await conn.execute(
                select(users.c.id, users.c.display_name)
                .join(memberships, memberships.c.user_id == users.c.id)
                .where(
                    memberships.c.class_id == cls.id,
                    memberships.c.role == Role.STUDENT.value,
                )
            )
            if child_names.matches(req.child_name, r.display_name)
        ]
        if not kids:
            raise not_found("no student of that name in this class; check the spelling")
        if len(kids) > 1:
            raise conflict("two students have that name; ask the teacher to link you")
        existing = (
            await conn.execute(
                select(guardian_links.c.status).where(
                    guardian_links.c.guardian_id == user_id,
                    guardian_links.c.student_id == kids[0].id,
                )
            )
        ).scalar()
        if existing == "approved":
            raise conflict("you are already linked to this child")
        now = hub.now()
        link_id = await link_guardian(
            conn,
            cls.id,
            user_id,
            kids[0].id,
            req.relationship,
            status="pending",
            by=None,
            now=now,
        )
        phone = req.phone.strip() or None
        await conn.execute(
            update(guardian_links).where(guardian_links.c.id == link_id).values(phone=phone)
        )
        # The class's teachers are told, in the form of their list of pending requests.
        names = await display_names(conn, [user_id, kids[0].id])
        request = {
            "id": link_id,
            "class_id": cls.id,
            "guardian_id": user_id,
            "guardian_name": names.get(user_id, ""),
            "student_id": kids[0].id,
            "student_name": names.get(kids[0].id, ""),
            "relationship": req.relationship,
            "phone": phone,
            "on_roster": await _on_roster(conn, kids[0].id, phone),
            "requested_at": now,
        }
        await hub.store.append(conn, str(staff_stream(cls.id)), "link.requested", request)
    return {
        "link": {"id": link_id, "class_id": cls.id, "class_name": cls.name, "status": "pending"}
    }


async def decide_link(hub: Hub, user_id: int, link_id: int, approve: bool) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        link = (
            await conn.execute(select(guardian_links).where(guardian_links.c.id == link_id))
        ).first()
        if link is None:
            raise not_found("no such link request")
        access = await class_access(conn, user_id, link.class_id)
        require(policy.may_manage_roster(access), "only teachers of this class decide links")
        if link.status != "pending":
            raise conflict(f"this request was already {link.status}")
        status = "approved" if approve else "rejected"
        await link_guardian(
            conn,
            link.class_id,
            link.guardian_id,
            link.student_id,
            link.relationship,
            status=status,
            by=user_id,
            now=hub.now(),
        )
        data = await tell_link_decided(
            hub, conn, link_id, link.class_id, link.guardian_id, link.student_id, status
        )
        await audit.record(
            conn,
            actor_id=user_id,
            action="link." + status,
            now=hub.now(),
            class_id=link.class_id,
            target=f"link:{link_id}",
            detail={"guardian_id": link.guardian_id, "student_id": link.student_id},
        )
    await hub.resync_user(link.guardian_id)
    return {"link": data}


async def _on_roster(conn: DbConnection, student_id: int, phone: str | None) -> bool:
    """Whether the roster already lists this guardian: an approved guardian of the child has
    the phone number the request gives."""
    if not phone:
        return False
    digits = _digits(phone)
    rows = await conn.execute(
        select(users.c.phone)
        .join(guardian_links, guardian_links.c.guardian_id == users.c.id)
        .where(guardian_links.c.student_id == student_id, guardian_links.c.status == "approved")
    )
    return any(r.phone and _digits(r.phone) == digits for r in rows)


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())[-11:]


async def pending_links(hub: Hub, user_id: int, class_id: int) -> dict[str, Any]:
    async with hub.store.read() as conn:
        access = await class_access(conn, user_id, class_id)
        require(policy.may_manage_roster(access), "only teachers of this class see link requests")
        g = users.alias("g")
        s = users.alias("s")
        rows = await conn.execute(
            select(
                guardian_links,
                g.c.display_name.label("guardian_name"),
                s.c.display_name.label("student_name"),
            )
            .join(g, g.c.id == guardian_links.c.guardian_id)
            .join(s, s.c.id == guardian_links.c.student_id)
            .where(guardian_links.c.class_id == class_id, guardian_links.c.status == "pending")
        )
        return {
            "links": [
                {
                    "id": r.id,
                    "guardian_id": r.guardian_id,
                    "guardian_name": r.guardian_name,
                    "student_id": r.student_id,
                    "student_name": r.student_name,
                    "relationship": r.relationship,
                    "phone": r.phone,
                    "on_roster": await _on_roster(conn, r.student_id, r.phone),
                    "requested_at": r.requested_at,
                }
                for r in list(rows)
            ]
        }


async def members(hub: Hub, user_id: int, class_id: int) -> dict[str, Any]:
    async with hub.store.read() as conn:
        await require_class(conn, class_id)
        access = await class_access(conn, user_id, class_id)
        if not access.is_member and not access.school_admin:
            raise HomeroomError(
                "forbidden", "you are not a member of this class", reason="not_member"
            )
        rows = await conn.execute(
            select(memberships.c.user_id, memberships.c.role, users.c.display_name, users.c.phone)
            .join(users, users.c.id == memberships.c.user_id)
            .where(memberships.c.class_id == class_id)
        )
        links = await conn.execute(
            select(
                guardian_links.c.guardian_id,
                guardian_links.c.student_id,
                guardian_links.c.relationship,
            ).where(guardian_links.c.class_id == class_id, guardian_links.c.status == "approved")
        )
        children: dict[int, list[int]] = {}
        for link in links:
            children.setdefault(link.guardian_id, []).append(link.student_id)
        cls = (await conn.execute(select(classes).where(classes.c.id == class_id))).one()
    full = policy.may_view_roster(access)
    people = []
    for r in rows:
        # Non-staff see the teachers and, for guardians, their own children only.
        if (
            not full
            and r.role not in ("head_teacher", "teacher", "assistant_teacher")
            and (r.user_id not in access.children and r.user_id != user_id)
        ):
            continue
        entry: dict[str, Any] = {"id": r.user_id, "name": r.display_name, "role": r.role}
        if full:
            entry["phone"] = r.phone
            if r.role == "guardian":
                entry["children"] = sorted(children.get(r.user_id, []))
        people.append(entry)
    out: dict[str, Any] = {"class": {"id": cls.id, "name": cls.name}, "members": people}
    if full:
        out["class"]["join_code"] = cls.join_code
    return out


_TEACHING = ("head_teacher", "teacher")


async def school_classes(hub: Hub, user_id: int) -> dict[str, Any]:
    """The classes of my school, for a teacher choosing classrooms to link into a lesson.

    Teachers (head teachers and teachers of any class of the school) and school admins only;
    each class comes with its teachers' names and whether I belong to it.
    """
    async with hub.store.read() as conn:
        me = (
            await conn.execute(
                select(users.c.school_id, users.c.school_admin).where(users.c.id == user_id)
            )
        ).first()
        if me is None:
            raise HomeroomError(
                "unauthorized", "this account no longer exists", reason="account_gone"
            )
        mine = {
            (r.class_id, r.role)
            for r in await conn.execute(
                select(memberships.c.class_id, memberships.c.role)
                .join(classes, classes.c.id == memberships.c.class_id)
                .where(memberships.c.user_id == user_id, classes.c.school_id == me.school_id)
            )
        }
        if not me.school_admin and not any(role in _TEACHING for _, role in mine):
            raise HomeroomError("forbidden", "only teachers see the school's classes")
        rows = list(
            await conn.execute(
                select(classes.c.id, classes.c.name)
                .where(classes.c.school_id == me.school_id)
                .order_by(classes.c.id)
            )
        )
        teachers: dict[int, list[str]] = {}
        for r in await conn.execute(
            select(memberships.c.class_id, users.c.display_name)
            .join(users, users.c.id == memberships.c.user_id)
            .join(classes, classes.c.id == memberships.c.class_id)
            .where(classes.c.school_id == me.school_id, memberships.c.role.in_(_TEACHING))
            .order_by(memberships.c.class_id, users.c.id)
        ):
            teachers.setdefault(r.class_id, []).append(r.display_name)
    my_classes = {cid for cid, _ in mine}
    return {
        "classes": [
            {
                "id": r.id,
                "name": r.name,
                "teachers": teachers.get(r.id, []),
                "mine": r.id in my_classes,
            }
            for r in rows
        ]
    }
