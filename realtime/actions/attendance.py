"""Attendance actions: recorded from the live layer's changes, corrected by teachers, reported.

The live layer calls :func:`observe` whenever a session's state changes (it already broadcasts
it then) and :func:`session_ended` when it ends; nothing else of the live layer is touched.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import and_, func, or_, select

from realtime import csvexport
from realtime.actions.access import class_access, display_names, members_with_role
from realtime.actions.schools import school_time_zone
from realtime.domain import attendance as rules
from realtime.domain import policy
from realtime.domain.attendance import Change, ParticipationTracker, Presence
from realtime.domain.exportlang import DEFAULT_LANG, Localiser
from realtime.domain.live import LiveSession
from realtime.domain.policy import require
from realtime.domain.roles import Role
from realtime.domain.streams import staff_stream
from realtime.errors import bad_request, not_found
from realtime.hub import Hub
from realtime.schemas import AttendanceCorrect, LessonRef
from realtime.store.db import DbConnection, StoredEvent
from realtime.store.schema import attendance, live_sessions, poll_answers, polls, questions

log = logging.getLogger(__name__)


def _trackers(hub: Hub) -> dict[int, ParticipationTracker]:
    trackers: dict[int, ParticipationTracker] = hub.services.setdefault("attendance", {})
    return trackers


def snapshot(session: LiveSession) -> dict[int, Presence]:
    hands = set(session.hands)
    return {
        uid: Presence(
            p.class_id,
            str(getattr(p.role, "value", p.role)),
            p.connected and not p.in_lobby,
            p.on_stage,
            f"user:{uid}" in hands,
        )
        for uid, p in session.participants.items()
    }


async def observe(hub: Hub, session: LiveSession) -> None:
    """The session's state changed: record who joined, left, raised a hand, left the stage.

    Never raises: a failure to record attendance is logged and the lesson goes on."""
    tracker = _trackers(hub).setdefault(session.id, ParticipationTracker())
    changes = tracker.observe(hub.now(), snapshot(session))
    if changes:
        try:
            await _record(hub, session.id, changes)
        except Exception:
            log.exception("recording attendance of session %s failed", session.id)


async def resumed(hub: Hub, session: LiveSession) -> None:
    """A moved session runs on this node with what it kept (hands up, people on stage, away
    until they join again): that is where this node's record starts, so a hand raised before
    the move is not counted again.

    Every presence the old node left open ends at the move: that node saw those people last,
    and nobody is here yet (the caller holds the session's ``kept_lock``, which joins wait
    for). Whoever comes back starts a new interval when they join; whoever never does is not
    counted present until the lesson's end. Never raises."""
    _trackers(hub)[session.id] = ParticipationTracker(last=snapshot(session))
    now = hub.now()
    try:
        async with hub.store.transaction() as conn:
            left = [
                Change(r.user_id, r.class_id, r.role, "leave", now)
                for r in await conn.execute(
                    select(attendance.c.user_id, attendance.c.class_id, attendance.c.role).where(
                        attendance.c.session_id == session.id,
                        attendance.c.open_since.is_not(None),
                    )
                )
            ]
            await _apply(conn, session.id, left)
    except Exception:
        log.exception("closing the attendance of moved session %s failed", session.id)


async def session_ended(hub: Hub, session: LiveSession) -> None:
    """Close everyone's presence and stage time, and tell the staff the report is ready."""
    tracker = _trackers(hub).pop(session.id, None)
    now = hub.now()
    if tracker is not None:
        await _record(hub, session.id, tracker.end(now))
    async with hub.store.transaction() as conn:
        row = (
            await conn.execute(select(live_sessions).where(live_sessions.c.id == session.id))
        ).first()
        if row is None:
            return
        events: list[StoredEvent] = []
        for cid in [row.class_id, *row.linked]:
            present = (
                await conn.execute(
                    select(func.count()).where(
                        attendance.c.session_id == session.id,
                        attendance.c.class_id == cid,
                        attendance.c.role == "student",
                    )
                )
            ).scalar_one()
            events.append(
                await hub.store.append(
                    conn,
                    str(staff_stream(cid)),
                    "attendance.ready",
                    {
                        "session_id": session.id,
                        "class_id": cid,
                        "title": row.title,
                        "came": present,
                    },
                )
            )


async def _row(conn: DbConnection, session_id: int, user_id: int) -> Any:
    return (
        await conn.execute(
            select(attendance).where(
                attendance.c.session_id == session_id, attendance.c.user_id == user_id
            )
        )
    ).first()


def _blank(session_id: int, user_id: int, class_id: int, role: str) -> dict[str, Any]:
    """A person's attendance row before anything is recorded."""
    return {
        "session_id": session_id,
        "user_id": user_id,
        "class_id": class_id,
        "role": role,
        "intervals": [],
        "first_join": None,
        "seconds": 0.0,
        "open_since": None,
        "hands": 0,
        "stage_s": 0.0,
    }


async def _record(hub: Hub, session_id: int, changes: list[Change]) -> None:
    async with hub.store.transaction() as conn:
        await _apply(conn, session_id, changes)


async def _apply(conn: DbConnection, session_id: int, changes: list[Change]) -> None:
    for ch in changes:
        row = await _row(conn, session_id, ch.user_id)
        if row is None:
            await conn.execute(
                attendance.insert().values(_blank(session_id, ch.user_id, ch.class_id, ch.role))
            )
            row = await _row(conn, session_id, ch.user_id)
        intervals = [list(i) for i in row.intervals]
        values: dict[str, Any] = {}
        if ch.kind == "join":
            values["intervals"] = rules.add_join(intervals, ch.at)
            if row.open_since is None:
                values["open_since"] = ch.at
            if row.first_join is None:
                values["first_join"] = ch.at
        elif ch.kind == "leave":
            values["intervals"] = rules.add_leave(intervals, ch.at)
            if row.open_since is not None:
                values["open_since"] = None
                values["seconds"] = row.seconds + max(0.0, ch.at - row.open_since)
        elif ch.kind == "hand":
            values["hands"] = row.hands + 1
        elif ch.kind == "stage":
            values["stage_s"] = row.stage_s + ch.seconds
        await conn.execute(
            attendance.update()
            .where(attendance.c.session_id == session_id, attendance.c.user_id == ch.user_id)
            .values(**values)
        )


# --- reports ----------------------------------------------------------------------------------


async def _session(conn: DbConnection, session_id: int) -> Any:
    row = (
        await conn.execute(select(live_sessions).where(live_sessions.c.id == session_id))
    ).first()
    if row is None:
        raise not_found("no such lesson")
    return row


async def _staff_classrooms(conn: DbConnection, user_id: int, session: Any) -> list[int]:
    """The classrooms of a session whose attendance this person sees (their own classes)."""
    mine = []
    for cid in [session.class_id, *session.linked]:
        if policy.may_view_attendance(await class_access(conn, user_id, cid)):
            mine.append(cid)
    require(bool(mine), "only the class's teachers see its attendance")
    return mine


async def lesson_rows(
    conn: DbConnection, session: Any, class_id: int, now: float
) -> list[dict[str, Any]]:
    """Every student of one classroom with their figures in this lesson, absent ones too."""
    students = await members_with_role(conn, class_id, Role.STUDENT)
    names = await display_names(conn, students)
    rows = {
        r.user_id: r
        for r in await conn.execute(
            select(attendance).where(
                attendance.c.session_id == session.id, attendance.c.class_id == class_id
            )
        )
    }
    asked = {
        r.asker_id: r.n
        for r in await conn.execute(
            select(questions.c.asker_id, func.count().label("n"))
            .where(
                # Unanswered questions move to the class board when the lesson ends.
                or_(
                    questions.c.session_id == session.id,
                    and_(
                        questions.c.session_id.is_(None),
                        questions.c.class_id == class_id,
                        questions.c.created_at >= session.started_at,
                        questions.c.created_at <= (session.ended_at or now),
                    ),
                )
            )
            .group_by(questions.c.asker_id)
        )
    }
    session_polls = list(
        await conn.execute(
            select(polls.c.id, polls.c.correct, polls.c.anonymous).where(
                polls.c.session_id == session.id
            )
        )
    )
    quiz_ids = {p.id for p in session_polls if p.correct and not p.anonymous}
    answered: dict[int, int] = {}
    right: dict[int, int] = {}
    if session_polls:
        for a in await conn.execute(
            select(poll_answers.c.user_id, poll_answers.c.poll_id, poll_answers.c.correct).where(
                poll_answers.c.poll_id.in_([p.id for p in session_polls])
            )
        ):
            answered[a.user_id] = answered.get(a.user_id, 0) + 1
            if a.poll_id in quiz_ids and a.correct:
                right[a.user_id] = right.get(a.user_id, 0) + 1
    until = session.ended_at or now
    out = []
    for sid in students:
        r = rows.get(sid)
        intervals = list(r.intervals) if r is not None else []
        merged = rules.merge_intervals(intervals, until)
        status = rules.status_of(
            r.first_join if r is not None else None,
            session.started_at,
            r.correction if r is not None else None,
        )
        out.append(
            {
                "student_id": sid,
                "name": names.get(sid, ""),
                "class_id": class_id,
                "status": status.value,
                "came": bool(merged),
                "first_join": merged[0][0] if merged else None,
                "last_leave": merged[-1][1] if merged else None,
                "joins": len(intervals),
                "minutes": round(sum(e - s for s, e in merged) / 60, 1),
                "seconds": round(sum(e - s for s, e in merged), 1),
                "hands": r.hands if r is not None else 0,
                "stage_minutes": round((r.stage_s if r is not None else 0.0) / 60, 1),
                "stage_seconds": round(r.stage_s if r is not None else 0.0, 1),
                "questions": asked.get(sid, 0),
                "polls_answered": answered.get(sid, 0),
                "polls": len(session_polls),
                "quiz_correct": right.get(sid, 0),
                "quizzes": len(quiz_ids),
                "note": (r.note or "") if r is not None else "",
                "corrected": bool(r is not None and r.correction),
            }
        )
    return out


async def report(hub: Hub, user_id: int, req: LessonRef) -> dict[str, Any]:
    now = hub.now()
    async with hub.store.read() as conn:
        session = await _session(conn, req.session_id)
        classrooms = await _staff_classrooms(conn, user_id, session)
        students: list[dict[str, Any]] = []
        for cid in classrooms:
            students.extend(await lesson_rows(conn, session, cid, now))
    counts = {s.value: 0 for s in rules.AttendanceStatus}
    for s in students:
        counts[s["status"]] += 1
    return {
        "lesson": {
            "session_id": session.id,
            "class_id": session.class_id,
            "kind": session.kind,
            "title": session.title,
            "started_at": session.started_at,
            "ended_at": session.ended_at,
        },
        "counts": counts,
        "never_came": [s["student_id"] for s in students if not s["came"]],
        "students": students,
    }


CSV_COLUMNS = [
    "student_id", "student", "class_id", "attendance", "minutes", "first_join", "last_leave",
    "joins", "hands", "stage_minutes", "questions", "polls_answered", "polls", "quiz_correct",
    "quizzes", "corrected", "note",
]  # fmt: skip


async def report_csv(hub: Hub, user_id: int, session_id: int, lang: str = DEFAULT_LANG) -> str:
    """The report for a spreadsheet: headers and words in ``lang``, 是/否, times in the
    school's time zone, formulas neutralised (realtime/csvexport.py)."""
    data = await report(hub, user_id, LessonRef(session_id=session_id))
    async with hub.store.read() as conn:
        loc = Localiser(lang, await school_time_zone(conn, data["lesson"]["class_id"]))
    table = csvexport.Table(loc.header(CSV_COLUMNS))
    for s in data["students"]:
        table.row(
            [
                s["student_id"],
                s["name"],
                s["class_id"],
                loc.word(s["status"], "attendance"),
                s["minutes"],
                loc.time(s["first_join"]),
                loc.time(s["last_leave"]),
                s["joins"],
                s["hands"],
                s["stage_minutes"],
                s["questions"],
                s["polls_answered"],
                s["polls"],
                s["quiz_correct"],
                s["quizzes"],
                loc.yes_no(s["corrected"]),
                s["note"],
            ]
        )
    return table.text()


async def correct(hub: Hub, user_id: int, req: AttendanceCorrect) -> dict[str, Any]:
    """A teacher sets a student's attendance (excused, late, absent, present) with a note."""
    status = rules.parse_correction(req.status, req.note)
    now = hub.now()
    async with hub.store.transaction() as conn:
        session = await _session(conn, req.session_id)
        classrooms = await _staff_classrooms(conn, user_id, session)
        class_id = None
        for cid in classrooms:
            if req.student_id in await members_with_role(conn, cid, Role.STUDENT):
                class_id = cid
                break
        if class_id is None:
            raise bad_request("that person is not a student of your classes in this lesson")
        values = {
            "correction": status.value,
            "note": req.note,
            "corrected_by": user_id,
            "corrected_at": now,
        }
        if await _row(conn, session.id, req.student_id) is None:
            await conn.execute(
                attendance.insert().values(
                    {**_blank(session.id, req.student_id, class_id, "student"), **values}
                )
            )
        else:
            await conn.execute(
                attendance.update()
                .where(
                    attendance.c.session_id == session.id,
                    attendance.c.user_id == req.student_id,
                )
                .values(**values)
            )
        data = {
            "session_id": session.id,
            "student_id": req.student_id,
            "status": status.value,
            "note": req.note,
        }
        await hub.store.append(conn, str(staff_stream(class_id)), "attendance.corrected", data)
    return {"attendance": data}
