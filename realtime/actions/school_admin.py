"""A school that sets itself up: school years, classes, teachers, moving a student, the school's
settings and every pending link request. School admins only (policy.may_administer_school);
every change is written to the audit log in its own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, func, select, update

from realtime.actions import audit
from realtime.actions.access import class_access
from realtime.actions.roster import add_member, new_join_code
from realtime.domain import policy
from realtime.domain.exportlang import valid_time_zone
from realtime.domain.policy import require
from realtime.domain.roles import Role
from realtime.errors import HomeroomError, bad_request, not_found
from realtime.hub import Hub
from realtime.schemas import (
    ClassCreate,
    SchoolSettings,
    SchoolYearCreate,
    StudentMove,
    TeacherAssign,
)
from realtime.store.db import DbConnection, inserted_id
from realtime.store.schema import (
    classes,
    guardian_links,
    memberships,
    school_years,
    schools,
    users,
)


async def _admin_school(conn: DbConnection, user_id: int) -> int:
    me = (
        await conn.execute(
            select(users.c.school_id, users.c.school_admin).where(users.c.id == user_id)
        )
    ).first()
    if me is None:
        raise HomeroomError("unauthorized", "this account no longer exists", reason="account_gone")
    require(policy.may_administer_school(bool(me.school_admin)), "school admins only")
    return int(me.school_id)


async def _class(conn: DbConnection, school_id: int, class_id: int) -> Any:
    """A class of this school; another school's class is not found (nothing revealed)."""
    row = (
        await conn.execute(
            select(classes).where(classes.c.id == class_id, classes.c.school_id == school_id)
        )
    ).first()
    if row is None:
        raise not_found("no such class")
    return row


async def _open_class(conn: DbConnection, school_id: int, class_id: int) -> Any:
    row = await _class(conn, school_id, class_id)
    if row.archived_at is not None:
        raise HomeroomError("conflict", "the class is archived", reason="archived")
    return row


async def overview(hub: Hub, user_id: int) -> dict[str, Any]:
    """The school: its settings, years, classes (join code, teachers, counts)."""
    async with hub.store.read() as conn:
        school_id = await _admin_school(conn, user_id)
        school = (await conn.execute(select(schools).where(schools.c.id == school_id))).one()
        years = [
            {"id": y.id, "name": y.name, "archived": y.archived_at is not None}
            for y in await conn.execute(
                select(school_years)
                .where(school_years.c.school_id == school_id)
                .order_by(school_years.c.id)
            )
        ]
        staff: dict[int, list[dict[str, Any]]] = {}
        students: dict[int, int] = {}
        for r in await conn.execute(
            select(memberships.c.class_id, memberships.c.role, users.c.id, users.c.display_name)
            .join(users, users.c.id == memberships.c.user_id)
            .join(classes, classes.c.id == memberships.c.class_id)
            .where(classes.c.school_id == school_id)
            .order_by(memberships.c.class_id, users.c.id)
        ):
            if r.role == Role.STUDENT.value:
                students[r.class_id] = students.get(r.class_id, 0) + 1
            elif r.role != Role.GUARDIAN.value:
                staff.setdefault(r.class_id, []).append(
                    {"user_id": r.id, "name": r.display_name, "role": r.role}
                )
        out = [
            {
                "id": c.id,
                "name": c.name,
                "join_code": c.join_code,
                "school_year_id": c.school_year_id,
                "archived": c.archived_at is not None,
                "teachers": staff.get(c.id, []),
                "students": students.get(c.id, 0),
            }
            for c in await conn.execute(
                select(classes).where(classes.c.school_id == school_id).order_by(classes.c.id)
            )
        ]
        # Who may be made a teacher: the school's people who are no class's student or guardian.
        families = select(memberships.c.user_id).where(
            memberships.c.role.in_((Role.STUDENT.value, Role.GUARDIAN.value))
        )
        staff_people = [
            {"id": r.id, "username": r.username, "name": r.display_name}
            for r in await conn.execute(
                select(users.c.id, users.c.username, users.c.display_name)
                .where(users.c.school_id == school_id, users.c.id.not_in(families))
                .order_by(users.c.id)
            )
        ]
    return {
        "school": {"id": school.id, "name": school.name, **_settings_view(school)},
        "years": years,
        "classes": out,
        "staff": staff_people,
    }


async def create_year(hub: Hub, user_id: int, req: SchoolYearCreate) -> dict[str, Any]:
    name = req.name.strip()
    if not name:
        raise bad_request("a school year needs a name")
    async with hub.store.transaction() as conn:
        school_id = await _admin_school(conn, user_id)
        taken = (
            await conn.execute(
                select(school_years.c.id).where(
                    school_years.c.school_id == school_id, school_years.c.name == name
                )
            )
        ).first()
        if taken is not None:
            raise HomeroomError("conflict", "that school year exists", reason="already_exists")
        year_id = inserted_id(
            await conn.execute(school_years.insert().values(school_id=school_id, name=name))
        )
        await audit.record(
            conn,
            actor_id=user_id,
            action="year.create",
            now=hub.now(),
            school_id=school_id,
            target=f"year:{year_id}",
            detail={"name": name},
        )
    return {"year": {"id": year_id, "name": name, "archived": False}}


async def archive_year(hub: Hub, user_id: int, year_id: int) -> dict[str, Any]:
    """The year and its classes become read-only history."""
    async with hub.store.transaction() as conn:
        school_id = await _admin_school(conn, user_id)
        year = (
            await conn.execute(
                select(school_years).where(
                    school_years.c.id == year_id, school_years.c.school_id == school_id
                )
            )
        ).first()
        if year is None:
            raise not_found("no such school year")
        if year.archived_at is not None:
            raise HomeroomError("conflict", "the school year is archived", reason="archived")
        now = hub.now()
        await conn.execute(
            update(school_years).where(school_years.c.id == year_id).values(archived_at=now)
        )
        await conn.execute(
            update(classes)
            .where(classes.c.school_year_id == year_id, classes.c.archived_at.is_(None))
            .values(archived_at=now)
        )
        await audit.record(
            conn,
            actor_id=user_id,
            action="year.archive",
            now=now,
            school_id=school_id,
            target=f"year:{year_id}",
        )
    return {"year": {"id": year_id, "name": year.name, "archived": True}}


async def create_class(hub: Hub, user_id: int, req: ClassCreate) -> dict[str, Any]:
    name = req.name.strip()
    if not name:
        raise bad_request("a class needs a name")
    async with hub.store.transaction() as conn:
        school_id = await _admin_school(conn, user_id)
        if req.school_year_id is not None:
            year = (
                await conn.execute(
                    select(school_years).where(
                        school_years.c.id == req.school_year_id,
                        school_years.c.school_id == school_id,
                    )
                )
            ).first()
            if year is None:
                raise not_found("no such school year")
            if year.archived_at is not None:
                raise HomeroomError("conflict", "the school year is archived", reason="archived")
        taken = (
            await conn.execute(
                select(classes.c.id).where(
                    classes.c.school_id == school_id,
                    classes.c.name == name,
                    classes.c.archived_at.is_(None),
                )
            )
        ).first()
        if taken is not None:
            raise HomeroomError("conflict", "a class of that name exists", reason="already_exists")
        code = new_join_code()
        class_id = inserted_id(
            await conn.execute(
                classes.insert().values(
                    school_id=school_id,
                    name=name,
                    join_code=code,
                    school_year_id=req.school_year_id,
                )
            )
        )
        await audit.record(
            conn,
            actor_id=user_id,
            action="class.create",
            now=hub.now(),
            class_id=class_id,
            target=f"class:{class_id}",
            detail={"name": name},
        )
    return {"class": {"id": class_id, "name": name, "join_code": code, "archived": False}}


async def archive_class(hub: Hub, user_id: int, class_id: int) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        school_id = await _admin_school(conn, user_id)
        row = await _open_class(conn, school_id, class_id)
        await conn.execute(
            update(classes).where(classes.c.id == class_id).values(archived_at=hub.now())
        )
        await audit.record(
            conn,
            actor_id=user_id,
            action="class.archive",
            now=hub.now(),
            class_id=class_id,
            target=f"class:{class_id}",
        )
    return {"class": {"id": class_id, "name": row.name, "archived": True}}


async def assign_teacher(
    hub: Hub, user_id: int, class_id: int, req: TeacherAssign
) -> dict[str, Any]:
    """A head teacher (one per class: the previous one stays as a teacher), a subject teacher
    or an assistant; ``remove`` takes the role away."""
    role = Role(req.role)
    async with hub.store.transaction() as conn:
        school_id = await _admin_school(conn, user_id)
        await _open_class(conn, school_id, class_id)
        person = (
            await conn.execute(
                select(users.c.id).where(users.c.id == req.user_id, users.c.school_id == school_id)
            )
        ).first()
        if person is None:
            raise not_found("no such person in this school")
        # A student or guardian of the class cannot also teach it.
        other = await class_access(conn, req.user_id, class_id)
        if other.is_student or Role.GUARDIAN in other.roles:
            raise bad_request("a student or guardian of the class cannot teach it")
        if req.remove:
            await conn.execute(
                delete(memberships).where(
                    memberships.c.class_id == class_id,
                    memberships.c.user_id == req.user_id,
                    memberships.c.role == role.value,
                )
            )
        else:
            if role is Role.HEAD_TEACHER:
                for prev in await conn.execute(
                    select(memberships.c.user_id).where(
                        memberships.c.class_id == class_id,
                        memberships.c.role == Role.HEAD_TEACHER.value,
                        memberships.c.user_id != req.user_id,
                    )
                ):
                    await add_member(conn, class_id, prev.user_id, Role.TEACHER)
                await conn.execute(
                    delete(memberships).where(
                        memberships.c.class_id == class_id,
                        memberships.c.role == Role.HEAD_TEACHER.value,
                        memberships.c.user_id != req.user_id,
                    )
                )
            await add_member(conn, class_id, req.user_id, role)
        await audit.record(
            conn,
            actor_id=user_id,
            action="teacher.remove" if req.remove else "teacher.assign",
            now=hub.now(),
            class_id=class_id,
            target=f"user:{req.user_id}",
            detail={"role": role.value},
        )
    return {"class_id": class_id, "user_id": req.user_id, "role": role.value, "removed": req.remove}


async def move_student(hub: Hub, user_id: int, class_id: int, req: StudentMove) -> dict[str, Any]:
    """A student moves from ``class_id`` to another class of the school (the start of a year):
    their approved guardians follow; guardians of no other child of the old class leave it."""
    async with hub.store.transaction() as conn:
        school_id = await _admin_school(conn, user_id)
        await _class(conn, school_id, class_id)
        if req.to_class_id == class_id:
            raise bad_request("the student is already in that class")
        await _open_class(conn, school_id, req.to_class_id)
        enrolled = (
            await conn.execute(
                select(memberships.c.user_id).where(
                    memberships.c.class_id == class_id,
                    memberships.c.user_id == req.student_id,
                    memberships.c.role == Role.STUDENT.value,
                )
            )
        ).first()
        if enrolled is None:
            raise not_found("no such student in this class")
        await conn.execute(
            delete(memberships).where(
                memberships.c.class_id == class_id,
                memberships.c.user_id == req.student_id,
                memberships.c.role == Role.STUDENT.value,
            )
        )
        await add_member(conn, req.to_class_id, req.student_id, Role.STUDENT)
        links = list(
            await conn.execute(
                select(guardian_links.c.guardian_id, guardian_links.c.status).where(
                    guardian_links.c.class_id == class_id,
                    guardian_links.c.student_id == req.student_id,
                )
            )
        )
        await conn.execute(
            update(guardian_links)
            .where(
                guardian_links.c.class_id == class_id,
                guardian_links.c.student_id == req.student_id,
            )
            .values(class_id=req.to_class_id)
        )
        for link in links:
            if link.status == "approved":
                await add_member(conn, req.to_class_id, link.guardian_id, Role.GUARDIAN)
            left = (
                await conn.execute(
                    select(func.count())
                    .select_from(guardian_links)
                    .where(
                        guardian_links.c.class_id == class_id,
                        guardian_links.c.guardian_id == link.guardian_id,
                    )
                )
            ).scalar_one()
            if not left:
                await conn.execute(
                    delete(memberships).where(
                        and_(
                            memberships.c.class_id == class_id,
                            memberships.c.user_id == link.guardian_id,
                            memberships.c.role == Role.GUARDIAN.value,
                        )
                    )
                )
        await audit.record(
            conn,
            actor_id=user_id,
            action="student.move",
            now=hub.now(),
            class_id=class_id,
            target=f"user:{req.student_id}",
            detail={"to_class_id": req.to_class_id, "guardians": len(links)},
        )
    return {"student_id": req.student_id, "from_class_id": class_id, "to_class_id": req.to_class_id}


async def pending_links(hub: Hub, user_id: int) -> dict[str, Any]:
    """Every pending link request of the school, oldest first, with what vets it."""
    async with hub.store.read() as conn:
        school_id = await _admin_school(conn, user_id)
        guardian = users.alias("guardian")
        student = users.alias("student")
        rows = list(
            await conn.execute(
                select(
                    guardian_links.c.id,
                    guardian_links.c.class_id,
                    classes.c.name.label("class_name"),
                    guardian_links.c.relationship,
                    guardian_links.c.phone.label("given_phone"),
                    guardian_links.c.requested_at,
                    guardian.c.id.label("guardian_id"),
                    guardian.c.display_name.label("guardian_name"),
                    guardian.c.phone,
                    student.c.id.label("student_id"),
                    student.c.display_name.label("student_name"),
                )
                .join(classes, classes.c.id == guardian_links.c.class_id)
                .join(guardian, guardian.c.id == guardian_links.c.guardian_id)
                .join(student, student.c.id == guardian_links.c.student_id)
                .where(classes.c.school_id == school_id, guardian_links.c.status == "pending")
                .order_by(guardian_links.c.requested_at, guardian_links.c.id)
            )
        )
    return {
        "links": [
            {
                "id": r.id,
                "class_id": r.class_id,
                "class_name": r.class_name,
                "guardian": {
                    "id": r.guardian_id,
                    "name": r.guardian_name,
                    "phone": r.given_phone or r.phone,
                },
                "student": {"id": r.student_id, "name": r.student_name},
                "relationship": r.relationship,
                "requested_at": r.requested_at,
            }
            for r in rows
        ]
    }


async def set_settings(hub: Hub, user_id: int, req: SchoolSettings) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if req.time_zone is not None:
        if not valid_time_zone(req.time_zone):
            raise bad_request("time_zone must be an IANA time zone such as Asia/Shanghai")
        values["time_zone"] = req.time_zone
    if req.guardian_chat_history is not None:
        values["guardian_chat_history"] = req.guardian_chat_history
    if not values:
        raise bad_request("nothing to change: give time_zone or guardian_chat_history")
    guardians: list[int] = []
    async with hub.store.transaction() as conn:
        school_id = await _admin_school(conn, user_id)
        before = (await conn.execute(select(schools).where(schools.c.id == school_id))).one()
        await conn.execute(update(schools).where(schools.c.id == school_id).values(**values))
        await audit.record(
            conn,
            actor_id=user_id,
            action="school.settings",
            now=hub.now(),
            school_id=school_id,
            detail=values,
        )
        row = (await conn.execute(select(schools).where(schools.c.id == school_id))).one()
        if bool(row.guardian_chat_history) != bool(before.guardian_chat_history):
            guardians = await _school_guardians(conn, school_id)
    # What the school's guardians see of their guardians' chats changed: each node takes their
    # connections' new history floors, and their apps catch up.
    for guardian_id in guardians:
        await hub.resync_user(guardian_id)
    return _settings_view(row)


async def _school_guardians(conn: DbConnection, school_id: int) -> list[int]:
    found = await conn.execute(
        select(guardian_links.c.guardian_id)
        .distinct()
        .select_from(guardian_links.join(classes, classes.c.id == guardian_links.c.class_id))
        .where(classes.c.school_id == school_id, guardian_links.c.status == "approved")
    )
    return sorted(r.guardian_id for r in found)


def _settings_view(school: Any) -> dict[str, Any]:
    return {
        "time_zone": school.time_zone,
        "guardian_chat_history": bool(school.guardian_chat_history),
    }


async def join_code_of(hub: Hub, user_id: int, class_id: int) -> str:
    """A class's join code, for its teachers and the school's admins (to print or share)."""
    async with hub.store.read() as conn:
        access = await class_access(conn, user_id, class_id)
        require(policy.may_share_join_code(access), "only the class's teachers share its code")
        row = (
            await conn.execute(select(classes.c.join_code).where(classes.c.id == class_id))
        ).first()
    if row is None:
        raise not_found("no such class")
    return str(row.join_code)
