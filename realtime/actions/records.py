"""Learning records: a student's figures over a period, a class's, and the guardians' digest.

A record is computed from what is stored (attendance, questions, poll answers, homework, notice
coverage) in a fixed handful of queries whatever the number of lessons.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from realtime.actions.access import class_access, display_names, guardians_of, members_with_role
from realtime.domain import attendance as att
from realtime.domain import homework as hw_rules
from realtime.domain import policy
from realtime.domain import records as rules
from realtime.domain.policy import require
from realtime.domain.records import StudentRecord
from realtime.domain.roles import Role
from realtime.domain.streams import user_stream
from realtime.errors import bad_request, forbidden
from realtime.hub import Hub
from realtime.schemas import ClassRecordQuery, ClassRef, StudentRecordQuery
from realtime.store.db import DbConnection, StoredEvent
from realtime.store.schema import (
    attendance,
    homework,
    homework_submissions,
    live_sessions,
    notice_coverage,
    notices,
    poll_answers,
    polls,
    questions,
)

LESSON_KINDS = ("lesson", "dual_lesson")


async def compute(
    conn: DbConnection, class_id: int, students: list[int], start: float, end: float, now: float
) -> dict[int, StudentRecord]:
    records = {s: StudentRecord(s) for s in students}
    if not students:
        return records
    wanted = set(students)
    # Lessons of the class (as the host class or a linked classroom) started in the period.
    lessons = {
        r.id: r
        for r in await conn.execute(
            select(
                live_sessions.c.id,
                live_sessions.c.class_id,
                live_sessions.c.linked,
                live_sessions.c.started_at,
                live_sessions.c.ended_at,
            ).where(
                live_sessions.c.started_at >= start,
                live_sessions.c.started_at < end,
                live_sessions.c.kind.in_(LESSON_KINDS),
            )
        )
        if r.class_id == class_id or class_id in (r.linked or [])
    }
    rows: dict[tuple[int, int], Any] = {}
    if lessons:
        for r in await conn.execute(
            select(
                attendance.c.session_id,
                attendance.c.user_id,
                attendance.c.intervals,
                attendance.c.first_join,
                attendance.c.hands,
                attendance.c.stage_s,
                attendance.c.correction,
            ).where(
                attendance.c.class_id == class_id,
                attendance.c.session_id.in_(list(lessons)),
            )
        ):
            if r.user_id in wanted:
                rows[(r.session_id, r.user_id)] = r
    for lid, lesson in lessons.items():
        until = lesson.ended_at or now
        for s in students:
            r = rows.get((lid, s))
            status = att.status_of(
                r.first_join if r else None, lesson.started_at, r.correction if r else None
            )
            seconds = att.present_seconds(r.intervals, until) if r else 0.0
            records[s].add_lesson(status, seconds, r.hands if r else 0, r.stage_s if r else 0.0)
    for r in await conn.execute(
        select(questions.c.asker_id, func.count().label("n"))
        .where(
            questions.c.class_id == class_id,
            questions.c.created_at >= start,
            questions.c.created_at < end,
        )
        .group_by(questions.c.asker_id)
    ):
        if r.asker_id in wanted:
            records[r.asker_id].questions = r.n
    # Students' polls of the class and of its lessons (a dual lesson's polls belong to the host).
    poll_rows = [
        p
        for p in await conn.execute(
            select(
                polls.c.id,
                polls.c.class_id,
                polls.c.session_id,
                polls.c.correct,
                polls.c.anonymous,
                polls.c.answer_by,
            ).where(
                polls.c.created_at >= start,
                polls.c.created_at < end,
                polls.c.audience == "students",
                polls.c.answer_by == "person",
            )
        )
        if p.class_id == class_id or p.session_id in lessons
    ]
    quizzes = {p.id for p in poll_rows if p.correct and not p.anonymous}
    for rec in records.values():
        rec.polls = len(poll_rows)
        rec.quiz_questions = len(quizzes)
    if poll_rows:
        for a in await conn.execute(
            select(poll_answers.c.user_id, poll_answers.c.poll_id, poll_answers.c.correct).where(
                poll_answers.c.poll_id.in_([p.id for p in poll_rows])
            )
        ):
            if a.user_id in wanted:
                records[a.user_id].polls_answered += 1
                if a.poll_id in quizzes and a.correct:
                    records[a.user_id].quiz_correct += 1
    # Homework due in the period.
    hws = list(
        await conn.execute(
            select(homework.c.id, homework.c.due_at).where(
                homework.c.class_id == class_id,
                homework.c.due_at >= start,
                homework.c.due_at < end,
            )
        )
    )
    if hws:
        subs = {
            (r.homework_id, r.student_id): r
            for r in await conn.execute(
                select(
                    homework_submissions.c.homework_id,
                    homework_submissions.c.student_id,
                    homework_submissions.c.status,
                    homework_submissions.c.late,
                ).where(homework_submissions.c.homework_id.in_([h.id for h in hws]))
            )
        }
        for s in students:
            states = []
            for h in hws:
                sub = subs.get((h.id, s))
                states.append(
                    hw_rules.state_of(
                        sub.status if sub else None, bool(sub and sub.late), h.due_at, now
                    )
                )
            records[s].add_homework(states)
    # Notices that asked guardians for something, and how many were done for this child.
    asked = [
        n.id
        for n in await conn.execute(
            select(notices.c.id).where(
                notices.c.class_id == class_id,
                notices.c.created_at >= start,
                notices.c.created_at < end,
                notices.c.kind != "info",
            )
        )
    ]
    if asked:
        for rec in records.values():
            rec.notices = len(asked)
        for r in await conn.execute(
            select(notice_coverage.c.student_id, func.count().label("n"))
            .where(notice_coverage.c.notice_id.in_(asked))
            .group_by(notice_coverage.c.student_id)
        ):
            if r.student_id in wanted:
                records[r.student_id].notices_confirmed = r.n
    return records


async def student_record(hub: Hub, user_id: int, req: StudentRecordQuery) -> dict[str, Any]:
    """One student's record: for the student, their approved guardians and the class's staff."""
    now = hub.now()
    start, end = rules.bounds(req.period, now, req.since, req.until)
    async with hub.store.read() as conn:
        access = await class_access(conn, user_id, req.class_id)
        if not policy.may_view_student(access, req.student_id):
            raise forbidden("you may see only your own child's record")
        if req.student_id not in await members_with_role(conn, req.class_id, Role.STUDENT):
            raise bad_request("that person is not a student of this class")
        rec = (await compute(conn, req.class_id, [req.student_id], start, end, now))[req.student_id]
        name = (await display_names(conn, [req.student_id])).get(req.student_id, "")
    return {
        "class_id": req.class_id,
        "period": req.period,
        "since": start,
        "until": end,
        "name": name,
        "record": rec.view(),
    }


async def class_record(hub: Hub, user_id: int, req: ClassRecordQuery) -> dict[str, Any]:
    """Every student's figures and the class's totals, for the class's staff."""
    now = hub.now()
    start, end = rules.bounds(req.period, now, req.since, req.until)
    async with hub.store.read() as conn:
        access = await class_access(conn, user_id, req.class_id)
        require(policy.may_view_attendance(access), "only the class's teachers see its records")
        students = await members_with_role(conn, req.class_id, Role.STUDENT)
        recs = await compute(conn, req.class_id, students, start, end, now)
        names = await display_names(conn, students)
    return {
        "class_id": req.class_id,
        "period": req.period,
        "since": start,
        "until": end,
        "summary": rules.class_summary(recs.values()),
        "students": [{**recs[s].view(), "name": names.get(s, "")} for s in students],
    }


async def send_digest(hub: Hub, user_id: int | None, req: ClassRef) -> dict[str, Any]:
    """The weekly digest: each approved guardian gets their child's week in their own stream.

    ``user_id`` None: the scheduler (``homeroom digest``); otherwise a teacher of the class."""
    now = hub.now()
    start, end = rules.bounds("week", now, None, None)
    events: list[StoredEvent] = []
    async with hub.store.transaction() as conn:
        if user_id is not None:
            access = await class_access(conn, user_id, req.class_id)
            require(policy.may_assign_homework(access), "only the class's teachers send digests")
        students = await members_with_role(conn, req.class_id, Role.STUDENT)
        links = await guardians_of(conn, req.class_id, students)
        recs = await compute(conn, req.class_id, sorted(links), start, end, now)
        names = await display_names(conn, sorted(links))
        for student, guardians in sorted(links.items()):
            data = {
                "class_id": req.class_id,
                "student_id": student,
                "name": names.get(student, ""),
                "since": start,
                "until": end,
                "record": recs[student].view(),
            }
            for g in sorted(set(guardians)):
                events.append(
                    await hub.store.append(conn, str(user_stream(g)), "record.digest", data)
                )
    await hub.emit(events)
    return {"guardians": len({e.stream for e in events}), "students": len(links)}


async def digest_all(hub: Hub, class_ids: list[int]) -> int:
    """Send every listed class's digest (the scheduler's weekly run); the number of events."""
    n = 0
    for cid in class_ids:
        n += (await send_digest(hub, None, ClassRef(class_id=cid)))["guardians"]
    return n
