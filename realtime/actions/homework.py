"""Homework actions: assign, submit and resubmit, review or return for redo, roll-up, remind.

Events: ``homework.assigned`` in the class's students' and guardians' notice streams;
``homework.submission`` (each submission, for the live roll-up) in the staff stream;
``homework.reviewed`` / ``homework.reminder`` in the student's and their guardians' own streams.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from realtime import csvexport
from realtime.actions import attachments, upload_cleanup
from realtime.actions.access import class_access, display_names, guardians_of, members_with_role
from realtime.actions.schools import school_time_zone
from realtime.domain import homework as rules
from realtime.domain import notices as notice_rules
from realtime.domain import policy
from realtime.domain.exportlang import DEFAULT_LANG, Localiser
from realtime.domain.homework import HomeworkState, SubmissionStatus
from realtime.domain.policy import require
from realtime.domain.roles import ClassAccess, Role
from realtime.domain.streams import notice_stream, staff_stream, user_stream
from realtime.errors import HomeroomError, bad_request, forbidden, not_found
from realtime.hub import Hub
from realtime.schemas import (
    HomeworkAssign,
    HomeworkList,
    HomeworkRef,
    HomeworkReview,
    HomeworkSubmit,
)
from realtime.store.db import DbConnection, inserted_id
from realtime.store.schema import homework, homework_submissions

LIST_MAX = 100
REMIND_INTERVAL_S = 600.0


def homework_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "class_id": row.class_id,
        "author_id": row.author_id,
        "title": row.title,
        "instructions": row.instructions,
        "due_at": row.due_at,
        "attachments": list(row.attachments),
        "created_at": row.created_at,
    }


def submission_view(row: Any | None, due_at: float, now: float) -> dict[str, Any]:
    if row is None:
        return {"state": rules.state_of(None, False, due_at, now).value}
    return {
        "state": rules.state_of(row.status, row.late, due_at, now).value,
        "body": row.body,
        "attachments": list(row.attachments),
        "submitted_at": row.submitted_at,
        "times": row.times,
        "late": row.late,
        "comment": row.comment,
        "score": row.score,
        "grade": row.grade,
        "reviewed_at": row.reviewed_at,
    }


async def _load(conn: DbConnection, homework_id: int) -> Any:
    row = (await conn.execute(select(homework).where(homework.c.id == homework_id))).first()
    if row is None:
        raise not_found("no such homework")
    return row


async def _submission(conn: DbConnection, homework_id: int, student_id: int) -> Any:
    return (
        await conn.execute(
            select(homework_submissions).where(
                homework_submissions.c.homework_id == homework_id,
                homework_submissions.c.student_id == student_id,
            )
        )
    ).first()


async def assign(hub: Hub, user_id: int, req: HomeworkAssign) -> dict[str, Any]:
    rules.check_text(req.title, req.instructions)
    now = hub.now()
    if req.due_at <= now:
        raise bad_request("the due time is in the past")
    try:
        async with hub.store.transaction() as conn:
            earlier = (
                await conn.execute(
                    select(homework).where(
                        homework.c.author_id == user_id, homework.c.client_id == req.client_id
                    )
                )
            ).first()
            if earlier is not None:
                return {"homework": homework_view(earlier), "duplicate": True}
            access = await class_access(conn, user_id, req.class_id)
            require(policy.may_assign_homework(access), "only the class's teachers assign homework")
            res = await conn.execute(
                homework.insert().values(
                    class_id=req.class_id,
                    author_id=user_id,
                    client_id=req.client_id,
                    title=req.title.strip(),
                    instructions=req.instructions,
                    due_at=req.due_at,
                    attachments=[],
                    created_at=now,
                )
            )
            hw_id = inserted_id(res)
            files = await attachments.attach(
                conn, user_id, req.attachments, f"homework:{hw_id}", now
            )
            if files:
                await conn.execute(
                    homework.update().where(homework.c.id == hw_id).values(attachments=files)
                )
            view = homework_view(await _load(conn, hw_id))
            for part in ("students", "guardians"):
                await hub.store.append(
                    conn, str(notice_stream(req.class_id, part)), "homework.assigned", view
                )
    except IntegrityError:
        async with hub.store.read() as conn:
            earlier = (
                await conn.execute(
                    select(homework).where(
                        homework.c.author_id == user_id, homework.c.client_id == req.client_id
                    )
                )
            ).first()
            if earlier is None:
                raise
            return {"homework": homework_view(earlier), "duplicate": True}
    return {"homework": view}


async def submit(hub: Hub, user_id: int, req: HomeworkSubmit) -> dict[str, Any]:
    """Submit, or resubmit before the due time (or after a return for redo)."""
    hub.check_rate(user_id, "homework.submit")
    if not req.body.strip() and not req.attachments:
        raise bad_request("a submission needs some text or a file")
    rules.check_text("-", req.body)
    now = hub.now()
    released: list[str] = []
    async with hub.store.transaction() as conn:
        hw = await _load(conn, req.homework_id)
        access = await class_access(conn, user_id, hw.class_id)
        require(policy.may_submit_homework(access), "only the class's students submit homework")
        before = await _submission(conn, hw.id, user_id)
        late = rules.check_submit(None if before is None else before.status, hw.due_at, now)
        files, released = await attachments.replace(
            conn, user_id, req.attachments, f"submission:{hw.id}:{user_id}", now
        )
        values: dict[str, Any] = {
            "body": req.body,
            "attachments": files,
            "status": SubmissionStatus.SUBMITTED.value,
            "late": late,
            "submitted_at": now,
        }
        if before is None:
            await conn.execute(
                homework_submissions.insert().values(
                    homework_id=hw.id, student_id=user_id, times=1, **values
                )
            )
        else:
            await conn.execute(
                homework_submissions.update()
                .where(
                    homework_submissions.c.homework_id == hw.id,
                    homework_submissions.c.student_id == user_id,
                )
                .values(times=before.times + 1, **values)
            )
        row = await _submission(conn, hw.id, user_id)
        view = submission_view(row, hw.due_at, now)
        names = await display_names(conn, [user_id])
        staff = {
            "homework_id": hw.id,
            "student_id": user_id,
            "name": names.get(user_id, ""),
            **view,
        }
        await hub.store.append(conn, str(staff_stream(hw.class_id)), "homework.submission", staff)
    if released and hub.files is not None:
        # The files the resubmission dropped: their bytes go once nothing else refers to them.
        await upload_cleanup.collect(hub, hub.files, released)
    return {"homework_id": hw.id, "submission": view}


async def review(hub: Hub, user_id: int, req: HomeworkReview) -> dict[str, Any]:
    """Mark a submission reviewed (final) with a comment and score or grade, or return it."""
    rules.check_review(req.comment, req.score, req.grade)
    now = hub.now()
    async with hub.store.transaction() as conn:
        hw = await _load(conn, req.homework_id)
        access = await class_access(conn, user_id, hw.class_id)
        require(policy.may_review_homework(access), "only the class's teachers review homework")
        row = await _submission(conn, hw.id, req.student_id)
        if row is None:
            raise HomeroomError("conflict", "this student has not submitted yet")
        status = SubmissionStatus.RETURNED if req.redo else SubmissionStatus.REVIEWED
        await conn.execute(
            homework_submissions.update()
            .where(
                homework_submissions.c.homework_id == hw.id,
                homework_submissions.c.student_id == req.student_id,
            )
            .values(
                status=status.value,
                comment=req.comment,
                score=req.score,
                grade=req.grade,
                reviewed_by=user_id,
                reviewed_at=now,
            )
        )
        row = await _submission(conn, hw.id, req.student_id)
        view = submission_view(row, hw.due_at, now)
        data = {"homework_id": hw.id, "title": hw.title, "student_id": req.student_id, **view}
        guardians = (await guardians_of(conn, hw.class_id, [req.student_id])).get(
            req.student_id, []
        )
        events = [
            await hub.store.append(conn, str(user_stream(u)), "homework.reviewed", data)
            for u in [req.student_id, *guardians]
        ]
        events.append(
            await hub.store.append(
                conn, str(staff_stream(hw.class_id)), "homework.submission", data
            )
        )
    return {"homework_id": hw.id, "student_id": req.student_id, "submission": view}


async def _states(conn: DbConnection, hw: Any, now: float) -> tuple[list[int], dict[int, Any]]:
    students = await members_with_role(conn, hw.class_id, Role.STUDENT)
    subs = {
        r.student_id: r
        for r in await conn.execute(
            select(homework_submissions).where(homework_submissions.c.homework_id == hw.id)
        )
    }
    return students, subs


async def not_handed_in(conn: DbConnection, hw: Any, now: float) -> list[int]:
    """The class's students who still have to hand this homework in (pending, missing, or
    returned for redo): whom reminders are for."""
    students, subs = await _states(conn, hw, now)
    return [
        s
        for s in students
        if rules.needs_reminder(
            HomeworkState(submission_view(subs.get(s), hw.due_at, now)["state"])
        )
    ]


async def tell_families(
    hub: Hub, conn: DbConnection, hw: Any, students: list[int], event: str
) -> list[int]:
    """Record ``event`` about this homework in the own stream of each of these students and of
    their approved guardians (a reminder, "due soon"); returns whom it told."""
    guardians = await guardians_of(conn, hw.class_id, students)
    names = await display_names(conn, students)
    told: list[int] = []
    for s in students:
        data = {
            "homework_id": hw.id,
            "class_id": hw.class_id,
            "title": hw.title,
            "due_at": hw.due_at,
            "student_id": s,
            "student_name": names.get(s, ""),
        }
        for u in [s, *guardians.get(s, [])]:
            await hub.store.append(conn, str(user_stream(u)), event, data)
            told.append(u)
    return told


async def rollup(hub: Hub, user_id: int, req: HomeworkRef) -> dict[str, Any]:
    """Per student: submitted / late / missing / reviewed / returned, for the class's staff."""
    now = hub.now()
    async with hub.store.read() as conn:
        hw = await _load(conn, req.homework_id)
        access = await class_access(conn, user_id, hw.class_id)
        require(policy.may_review_homework(access), "only the class's teachers see the roll-up")
        students, subs = await _states(conn, hw, now)
        names = await display_names(conn, students)
    rows = [
        {"student_id": s, "name": names.get(s, ""), **submission_view(subs.get(s), hw.due_at, now)}
        for s in students
    ]
    last = hw.last_reminded_at
    return {
        "homework": homework_view(hw),
        "counts": rules.rollup(HomeworkState(r["state"]) for r in rows),
        "students": rows,
        # Whom homework.remind would tell, and when it is allowed again (null: now): the web
        # app names the number in its confirmation and disables its button until then.
        "to_remind": sum(rules.needs_reminder(HomeworkState(r["state"])) for r in rows),
        "last_reminded_at": last,
        "remind_again_at": last + REMIND_INTERVAL_S if last else None,
    }


async def rollup_csv(hub: Hub, user_id: int, homework_id: int, lang: str = DEFAULT_LANG) -> str:
    """The roll-up for a spreadsheet: headers and states in ``lang``, 是/否, times in the
    school's time zone, formulas neutralised (realtime/csvexport.py)."""
    data = await rollup(hub, user_id, HomeworkRef(homework_id=homework_id))
    async with hub.store.read() as conn:
        loc = Localiser(lang, await school_time_zone(conn, data["homework"]["class_id"]))
    cols = ["student_id", "student", "state", "submitted_at", "times", "late", "score", "grade",
            "comment"]  # fmt: skip
    table = csvexport.Table(loc.header(cols))
    for r in data["students"]:
        submitted = r.get("submitted_at") is not None
        table.row(
            [
                r["student_id"],
                r["name"],
                loc.word(r["state"], "homework"),
                loc.time(r.get("submitted_at")),
                r.get("times", 0),
                loc.yes_no(bool(r.get("late"))) if submitted else "",
                "" if r.get("score") is None else r["score"],
                r.get("grade") or "",
                r.get("comment") or "",
            ]
        )
    return table.text()


async def remind(hub: Hub, user_id: int, req: HomeworkRef) -> dict[str, Any]:
    """Remind the students who have not submitted (or must redo) and their guardians."""
    now = hub.now()
    async with hub.store.transaction() as conn:
        hw = await _load(conn, req.homework_id)
        access = await class_access(conn, user_id, hw.class_id)
        require(policy.may_assign_homework(access), "only the class's teachers send reminders")
        if not notice_rules.may_remind(hw.last_reminded_at, now, REMIND_INTERVAL_S):
            wait = max(1, math.ceil(hw.last_reminded_at + REMIND_INTERVAL_S - now))
            raise HomeroomError(
                "rate_limited",
                f"a reminder was sent recently; wait {wait} s",
                reason="reminder_cooldown",
                retry_after_s=wait,
            )
        todo = await not_handed_in(conn, hw, now)
        if not todo:
            raise HomeroomError(
                "conflict",
                "every student has submitted: nobody to remind",
                reason="nobody_to_remind",
            )
        targets = await tell_families(hub, conn, hw, todo, "homework.reminder")
        await conn.execute(
            homework.update().where(homework.c.id == hw.id).values(last_reminded_at=now)
        )
    return {"students": todo, "reminded": sorted(set(targets))}


def _student_for(access: ClassAccess, student_id: int | None) -> int | None:
    """Whose homework states to show: None for staff viewing the class."""
    if student_id is None:
        if access.is_student:
            return access.user_id
        if access.is_guardian and len(access.children) == 1:
            return next(iter(access.children))
        if access.is_staff:
            return None
        raise bad_request("student_id is needed: you have several children in this class")
    if not policy.may_view_student(access, student_id):
        raise forbidden("you may see only your own child's homework")
    return student_id


async def list_homework(hub: Hub, user_id: int, req: HomeworkList) -> dict[str, Any]:
    """The class's homework, newest due first: with one student's state and review (a student,
    a guardian's child), or with the class's counts (staff)."""
    now = hub.now()
    async with hub.store.read() as conn:
        access = await class_access(conn, user_id, req.class_id)
        if not access.is_member:
            raise forbidden("you are not a member of this class")
        student = _student_for(access, req.student_id)
        rows = list(
            await conn.execute(
                select(homework)
                .where(homework.c.class_id == req.class_id)
                .order_by(homework.c.due_at.desc())
                .limit(LIST_MAX)
            )
        )
        out = []
        if student is not None:
            subs = {
                r.homework_id: r
                for r in await conn.execute(
                    select(homework_submissions).where(
                        homework_submissions.c.student_id == student,
                        homework_submissions.c.homework_id.in_([r.id for r in rows]),
                    )
                )
            }
            for r in rows:
                out.append(
                    {
                        **homework_view(r),
                        "submission": submission_view(subs.get(r.id), r.due_at, now),
                    }
                )
        else:
            for r in rows:
                students, subs = await _states(conn, r, now)
                states = (
                    HomeworkState(submission_view(subs.get(s), r.due_at, now)["state"])
                    for s in students
                )
                out.append({**homework_view(r), "counts": rules.rollup(states)})
    return {"student_id": student, "homework": out}
