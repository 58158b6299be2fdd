"""Learning records: a student's figures over a period, a class's, and the guardians' digest.

A record is computed from what is stored (attendance, questions, poll answers, homework, notice
coverage) in a fixed handful of queries whatever the number of lessons.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, or_, select

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
# The latest lessons listed with a class record, each linking to its attendance report.
LESSONS_LISTED = 50


def _only(column: Any, students: list[int]) -> list[Any]:
    """A student's record filters in SQL; a class's takes every row of the class."""
    return [column == students[0]] if len(students) == 1 else []


def _count_if(cond: Any) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


async def compute(
    conn: DbConnection, class_id: int, students: list[int], start: float, end: float, now: float
) -> dict[int, StudentRecord]:
    """Every figure is summed by the database per student: one row per student and query, so a
    term of 90 lessons costs what a week does."""
    records = {s: StudentRecord(s) for s in students}
    if not students:
        return records
    wanted = set(students)
    # Lessons of the class (as the host class or a linked classroom) started in the period.
    lessons = [
        r.id
        for r in await conn.execute(
            select(live_sessions.c.id, live_sessions.c.class_id, live_sessions.c.linked).where(
                live_sessions.c.started_at >= start,
                live_sessions.c.started_at < end,
                live_sessions.c.kind.in_(LESSON_KINDS),
                # Only a dual lesson links other classes: the school's other lessons stay out.
                or_(live_sessions.c.class_id == class_id, live_sessions.c.kind == "dual_lesson"),
            )
        )
        if r.class_id == class_id or class_id in (r.linked or [])
    ]
    for rec in records.values():
        rec.lessons = len(lessons)
    # domain/attendance.py status_of, in SQL: a correction wins; else absent without a join,
    # late when the first join came more than LATE_AFTER_S after the start.
    a, s = attendance.c, live_sessions.c
    came = or_(
        a.correction.in_(("present", "late")),
        and_(a.correction.is_(None), a.first_join.isnot(None)),
    )
    late = or_(
        a.correction == "late",
        and_(a.correction.is_(None), a.first_join - s.started_at > att.LATE_AFTER_S),
    )
    open_s = case(
        (a.open_since.isnot(None), func.coalesce(s.ended_at, now) - a.open_since), else_=0.0
    )
    for r in await conn.execute(
        select(
            a.user_id,
            _count_if(came).label("attended"),
            _count_if(late).label("late"),
            _count_if(a.correction == "excused").label("excused"),
            func.sum(a.seconds + open_s).label("seconds"),
            func.sum(a.hands).label("hands"),
            func.sum(a.stage_s).label("stage_s"),
        )
        .join(live_sessions, s.id == a.session_id)
        .where(
            a.class_id == class_id,
            a.role == "student",
            s.started_at >= start,
            s.started_at < end,
            s.kind.in_(LESSON_KINDS),
            *_only(a.user_id, students),
        )
        .group_by(a.user_id)
    ):
        if r.user_id in wanted:
            rec = records[r.user_id]
            rec.attended, rec.late, rec.excused = int(r.attended), int(r.late), int(r.excused)
            rec.minutes_present = float(r.seconds or 0) / 60
            rec.hands = int(r.hands or 0)
            rec.stage_minutes = float(r.stage_s or 0) / 60
    for rec in records.values():
        rec.missed = rec.lessons - rec.attended - rec.excused
    q = questions.c
    for r in await conn.execute(
        select(q.asker_id, func.count().label("n"))
        .where(
            q.class_id == class_id,
            q.created_at >= start,
            q.created_at < end,
            *_only(q.asker_id, students),
        )
        .group_by(q.asker_id)
    ):
        if r.asker_id in wanted:
            records[r.asker_id].questions = r.n
    # Students' polls of the class and of its lessons (a dual lesson's polls belong to the
    # host class; the answer's class_id is the answerer's classroom).
    p, pa = polls.c, poll_answers.c
    in_period = and_(
        p.created_at >= start,
        p.created_at < end,
        p.audience == "students",
        p.answer_by == "person",
    )
    poll_rows = [
        r
        for r in await conn.execute(
            select(p.id, p.class_id, p.session_id, p.correct, p.anonymous).where(in_period)
        )
        if r.class_id == class_id or r.session_id in lessons
    ]
    quizzes = sum(1 for r in poll_rows if r.correct and not r.anonymous)
    for rec in records.values():
        rec.polls = len(poll_rows)
        rec.quiz_questions = quizzes
    if poll_rows:
        for r in await conn.execute(
            select(
                pa.user_id,
                func.count().label("answered"),
                _count_if(and_(pa.correct.is_(True), p.anonymous.is_(False))).label("right"),
            )
            .join(polls, p.id == pa.poll_id)
            .where(in_period, pa.class_id == class_id, *_only(pa.user_id, students))
            .group_by(pa.user_id)
        ):
            if r.user_id in wanted:
                records[r.user_id].polls_answered = int(r.answered)
                records[r.user_id].quiz_correct = int(r.right)
    # Homework due in the period: submissions counted per state; the rest pending or missing.
    h, hs = homework.c, homework_submissions.c
    due = and_(h.class_id == class_id, h.due_at >= start, h.due_at < end)
    dues = [r.due_at for r in await conn.execute(select(h.due_at).where(due))]
    if dues:
        overdue = h.due_at < now
        for r in await conn.execute(
            select(hs.student_id, hs.status, hs.late, func.count().label("n"))
            .join(homework, h.id == hs.homework_id)
            .where(due, *_only(hs.student_id, students))
            .group_by(hs.student_id, hs.status, hs.late)
        ):
            if r.student_id in wanted:
                state = hw_rules.state_of(r.status, bool(r.late), 0.0, now)
                records[r.student_id].homework[state.value] += int(r.n)
        missing_due = sum(1 for d in dues if d < now)
        done_overdue = {
            r.student_id: int(r.n)
            for r in await conn.execute(
                select(hs.student_id, func.count().label("n"))
                .join(homework, h.id == hs.homework_id)
                .where(due, overdue, *_only(hs.student_id, students))
                .group_by(hs.student_id)
            )
        }
        done_all: dict[int, int] = {}
        for rec in records.values():
            done_all[rec.student_id] = sum(
                rec.homework[k] for k in ("submitted", "late", "reviewed", "returned")
            )
        for sid, rec in records.items():
            rec.homework["missing"] = missing_due - done_overdue.get(sid, 0)
            rec.homework["pending"] = (
                len(dues) - missing_due - (done_all[sid] - done_overdue.get(sid, 0))
            )
    # Notices that asked guardians for something, and how many were done for this child.
    asked = select(notices.c.id).where(
        notices.c.class_id == class_id,
        notices.c.created_at >= start,
        notices.c.created_at < end,
        notices.c.kind != "info",
    )
    asked_ids = [r.id for r in await conn.execute(asked)]
    n_asked = len(asked_ids)
    if n_asked:
        for rec in records.values():
            rec.notices = n_asked
        for r in await conn.execute(
            select(notice_coverage.c.student_id, func.count().label("n"))
            .where(
                notice_coverage.c.notice_id.in_(asked_ids),
                *_only(notice_coverage.c.student_id, students),
            )
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
        lessons = [
            {
                "session_id": r.id,
                "title": r.title,
                "started_at": r.started_at,
                "ended_at": r.ended_at,
            }
            for r in await conn.execute(
                select(
                    live_sessions.c.id,
                    live_sessions.c.class_id,
                    live_sessions.c.linked,
                    live_sessions.c.title,
                    live_sessions.c.started_at,
                    live_sessions.c.ended_at,
                )
                .where(
                    live_sessions.c.started_at >= start,
                    live_sessions.c.started_at < end,
                    live_sessions.c.kind.in_(LESSON_KINDS),
                    or_(
                        live_sessions.c.class_id == req.class_id,
                        live_sessions.c.kind == "dual_lesson",
                    ),
                )
                .order_by(live_sessions.c.started_at.desc())
            )
            if r.class_id == req.class_id or req.class_id in (r.linked or [])
        ][:LESSONS_LISTED]
    return {
        "lessons": lessons,
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
    return {
        "guardians": len({e.stream for e in events}),
        "students": len(links),
        "digests": len(events),
    }


async def digest_all(hub: Hub, class_ids: list[int]) -> int:
    """Send every listed class's digest (the scheduler's weekly run); the number of digests."""
    n = 0
    for cid in class_ids:
        n += (await send_digest(hub, None, ClassRef(class_id=cid)))["digests"]
    return n
