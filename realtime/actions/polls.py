"""Poll actions: open a poll or quiz, answer it, close it, publish its results, read it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from realtime.actions.access import class_access, display_names
from realtime.actions.poll_counts import counts, results
from realtime.actions.poll_deadlines import deadlines
from realtime.actions.poll_store import POLL_SHARED, announce, load, poll_view
from realtime.domain import policy
from realtime.domain import polls as rules
from realtime.domain.policy import require
from realtime.domain.polls import AnswerBy, PollAudience, PollKind, PollStatus
from realtime.domain.roles import ClassAccess
from realtime.errors import bad_request, conflict, forbidden, not_found
from realtime.hub import Hub
from realtime.schemas import PollAnswer, PollCreate, PollList, PollRef
from realtime.store.db import DbConnection, inserted_id
from realtime.store.prepared import Prepared
from realtime.store.rows import PollAnswerRow, PollRow, typed_all, typed_or_none
from realtime.store.schema import live_sessions, poll_answers, polls

LIST_MAX = 50

# The answer path runs these for every answer (500 in a few seconds in a class): built once.
_BY_USER = Prepared(
    select(poll_answers.c.answer).where(
        poll_answers.c.poll_id == bindparam("poll_id"),
        poll_answers.c.user_id == bindparam("user_id"),
    )
)
_BY_CLASS = Prepared(
    select(poll_answers.c.answer).where(
        poll_answers.c.poll_id == bindparam("poll_id"),
        poll_answers.c.class_id == bindparam("class_id"),
    )
)
# Insert and update parameters are named v_<column>: SQLAlchemy reserves the column names.
_ANSWER_FIELDS = ("poll_id", "user_id", "class_id", "answer", "correct", "answered_at")
_SET: dict[str, Any] = {f: bindparam(f"v_{f}") for f in _ANSWER_FIELDS}
_INSERT = Prepared(poll_answers.insert().values(**_SET))
_UPDATE_BY_USER = Prepared(
    poll_answers.update()
    .where(
        poll_answers.c.poll_id == bindparam("key_poll"),
        poll_answers.c.user_id == bindparam("key_user"),
    )
    .values(**_SET)
)
_UPDATE_BY_CLASS = Prepared(
    poll_answers.update()
    .where(
        poll_answers.c.poll_id == bindparam("key_poll"),
        poll_answers.c.class_id == bindparam("key_class"),
    )
    .values(**_SET)
)


async def _staff_access(conn: DbConnection, user_id: int, poll: PollRow) -> ClassAccess:
    access = await class_access(conn, user_id, poll.class_id)
    require(policy.may_run_poll(access), "only the class's teachers run its polls")
    return access


async def _answerer(conn: DbConnection, user_id: int, poll: PollRow) -> ClassAccess | None:
    """The person's access to the classroom they answer for, or None."""
    for cid in poll.classrooms:
        access = await class_access(conn, user_id, cid)
        if poll.answer_by == AnswerBy.CLASSROOM and cid == poll.class_id:
            continue  # the master teacher's own classroom does not answer
        if policy.may_answer_poll(access, poll.audience, poll.answer_by):
            return access
    return None


async def create(hub: Hub, user_id: int, req: PollCreate) -> dict[str, Any]:
    kind = PollKind(req.kind)
    options = rules.validate_options(kind, req.options)
    correct = rules.validate_correct(kind, options, req.correct)
    limit = rules.validate_time_limit(req.time_limit_s)
    now = hub.now()
    try:
        async with hub.store.transaction() as conn:
            earlier = typed_or_none(
                PollRow,
                (
                    await conn.execute(
                        select(polls).where(
                            polls.c.author_id == user_id, polls.c.client_id == req.client_id
                        )
                    )
                ).first(),
            )
            if earlier is not None:
                return {"poll": poll_view(earlier, now, staff=True), "duplicate": True}
            access = await class_access(conn, user_id, req.class_id)
            require(policy.may_run_poll(access), "only the class's teachers run its polls")
            classrooms = [req.class_id]
            audience = req.audience
            if req.session_id is not None:
                session = (
                    await conn.execute(
                        select(live_sessions).where(live_sessions.c.id == req.session_id)
                    )
                ).first()
                if session is None or session.class_id != req.class_id:
                    raise not_found("no such live session in this class")
                if session.ended_at is not None:
                    raise conflict("this session has ended")
                classrooms = [session.class_id, *session.linked]
                audience = (
                    PollAudience.GUARDIANS if session.kind == "meeting" else PollAudience.STUDENTS
                )
                if req.answer_by == AnswerBy.CLASSROOM and session.kind != "dual_lesson":
                    raise bad_request("classrooms answer only in a dual-teacher lesson")
            elif req.answer_by == AnswerBy.CLASSROOM:
                raise bad_request("classrooms answer only in a dual-teacher lesson")
            res = await conn.execute(
                polls.insert().values(
                    class_id=req.class_id,
                    session_id=req.session_id,
                    classrooms=classrooms,
                    author_id=user_id,
                    client_id=req.client_id,
                    kind=kind.value,
                    question=req.question.strip(),
                    options=options,
                    correct=correct,
                    anonymous=req.anonymous,
                    audience=audience,
                    answer_by=req.answer_by,
                    closes_at=None if limit is None else now + limit,
                    status=PollStatus.OPEN.value,
                    created_at=now,
                )
            )
            poll = await load(conn, inserted_id(res))
            staff = poll_view(poll, now, staff=True)
            await announce(hub, conn, poll, "poll.opened", poll_view(poll, now, staff=False), staff)
    except IntegrityError:
        async with hub.store.read() as conn:
            earlier = typed_or_none(
                PollRow,
                (
                    await conn.execute(
                        select(polls).where(
                            polls.c.author_id == user_id, polls.c.client_id == req.client_id
                        )
                    )
                ).first(),
            )
            if earlier is None:
                raise
            return {"poll": poll_view(earlier, now, staff=True), "duplicate": True}
    if poll.closes_at is not None:
        deadlines(hub).at_deadline(poll.id, poll.closes_at)
    return {"poll": staff}


async def answer(hub: Hub, user_id: int, req: PollAnswer) -> dict[str, Any]:
    hub.check_rate(user_id, "poll.answer")  # changing one's answer is free, hammering is not
    now = hub.now()
    async with hub.store.transaction() as conn:
        poll = typed_or_none(
            PollRow, (await conn.execute(POLL_SHARED, {"poll_id": req.poll_id})).first()
        )
        if poll is None:
            raise not_found("no such poll")
        access = await _answerer(conn, user_id, poll)
        if access is None:
            raise forbidden("this poll is not for you to answer")
        if rules.overdue(PollStatus(poll.status), poll.closes_at, now):
            deadlines(hub).overdue(poll.id)  # its own node may be gone: closed from here
        rules.check_open(PollStatus(poll.status), poll.closes_at, now)
        kind = PollKind(poll.kind)
        value = rules.normalize_answer(kind, list(poll.options), req.answer)
        values = {
            "v_poll_id": poll.id,
            "v_user_id": user_id,
            "v_class_id": access.class_id,
            "v_answer": value,
            "v_correct": rules.is_correct(kind, list(poll.correct), value),
            "v_answered_at": now,
        }
        by_class = poll.answer_by == AnswerBy.CLASSROOM
        if by_class:
            before = (
                await conn.execute(_BY_CLASS, {"poll_id": poll.id, "class_id": access.class_id})
            ).first()
        else:
            before = (
                await conn.execute(_BY_USER, {"poll_id": poll.id, "user_id": user_id})
            ).first()
        if before is None:
            await conn.execute(_INSERT, values)
        elif by_class:
            await conn.execute(
                _UPDATE_BY_CLASS, {**values, "key_poll": poll.id, "key_class": access.class_id}
            )
        else:
            await conn.execute(
                _UPDATE_BY_USER, {**values, "key_poll": poll.id, "key_user": user_id}
            )
    counts(hub).changed(poll.id)
    return {
        "poll_id": poll.id,
        "answer": value,
        "changed": before is not None and list(before.answer) != value,
    }


async def _finish(hub: Hub, user_id: int, poll_id: int, target: PollStatus) -> dict[str, Any]:
    now = hub.now()
    async with hub.store.transaction() as conn:
        # Locked: a deadline's close (poll_deadlines.close_due) waits, then finds it not open.
        poll = await load(conn, poll_id, lock=True)
        await _staff_access(conn, user_id, poll)
        # The stored status: closing a poll past its deadline that no node closed yet announces
        # the close (at its deadline) here.
        status = PollStatus(poll.status)
        if status is PollStatus.PUBLISHED or status is target:
            raise conflict(f"the poll is already {status.value}")
        closed_at = poll.closed_at or min(now, poll.closes_at or now)
        await conn.execute(
            polls.update()
            .where(polls.c.id == poll_id)
            .values(status=target.value, closed_at=closed_at)
        )
        poll = await load(conn, poll_id)
        staff = poll_view(poll, now, staff=True)
        if target is PollStatus.PUBLISHED:
            res = await results(conn, poll, text_limit=rules.MAX_PUBLISHED_TEXTS)
            data = {**poll_view(poll, now, staff=False), "results": res.view()}
            await announce(hub, conn, poll, "poll.results", data, {**staff, **data})
        else:
            data = poll_view(poll, now, staff=False)
            await announce(hub, conn, poll, "poll.closed", data, staff)
    return {"poll": staff}


async def close(hub: Hub, user_id: int, req: PollRef) -> dict[str, Any]:
    return await _finish(hub, user_id, req.poll_id, PollStatus.CLOSED)


async def publish(hub: Hub, user_id: int, req: PollRef) -> dict[str, Any]:
    """Close the poll if open and show everyone its results, with the correct answer."""
    return await _finish(hub, user_id, req.poll_id, PollStatus.PUBLISHED)


async def _mine(conn: DbConnection, user_id: int, poll_ids: list[int]) -> dict[int, list[str]]:
    if not poll_ids:
        return {}
    rows = await conn.execute(
        select(poll_answers.c.poll_id, poll_answers.c.answer).where(
            poll_answers.c.user_id == user_id, poll_answers.c.poll_id.in_(poll_ids)
        )
    )
    return {r.poll_id: list(r.answer) for r in rows}


async def get(hub: Hub, user_id: int, req: PollRef) -> dict[str, Any]:
    """A poll as this person may see it: staff get live results and named answers (unless
    anonymous); participants their own answer, and the results once published."""
    now = hub.now()
    async with hub.store.read() as conn:
        poll = await load(conn, req.poll_id)
        if rules.overdue(PollStatus(poll.status), poll.closes_at, now):
            deadlines(hub).overdue(poll.id)  # shown closed now; everyone told in a moment
        host = await class_access(conn, user_id, poll.class_id)
        if policy.may_run_poll(host):
            out: dict[str, Any] = {"poll": poll_view(poll, now, staff=True)}
            out["results"] = (await results(conn, poll)).view()
            if not poll.anonymous:
                rows = typed_all(
                    PollAnswerRow,
                    await conn.execute(
                        select(poll_answers).where(poll_answers.c.poll_id == poll.id)
                    ),
                )
                names = await display_names(conn, [r.user_id for r in rows])
                out["answers"] = [
                    {
                        "user_id": r.user_id,
                        "name": names.get(r.user_id, ""),
                        "class_id": r.class_id,
                        "answer": list(r.answer),
                        "correct": r.correct,
                        "answered_at": r.answered_at,
                    }
                    for r in sorted(rows, key=lambda r: r.answered_at)
                ]
            return out
        seen = False
        for cid in poll.classrooms:
            seen = seen or policy.may_see_poll(
                await class_access(conn, user_id, cid), poll.audience
            )
        if not seen:
            raise forbidden("this poll is not for you")
        out = {"poll": poll_view(poll, now, staff=False)}
        out["mine"] = (await _mine(conn, user_id, [poll.id])).get(poll.id)
        if poll.status == PollStatus.PUBLISHED:
            out["results"] = (
                await results(conn, poll, text_limit=rules.MAX_PUBLISHED_TEXTS)
            ).view()
        return out


async def list_polls(hub: Hub, user_id: int, req: PollList) -> dict[str, Any]:
    """The class's latest polls (a session's, with session_id) that this person may see."""
    now = hub.now()
    async with hub.store.read() as conn:
        access = await class_access(conn, user_id, req.class_id)
        if not access.is_member:
            raise forbidden("you are not a member of this class")
        staff = policy.may_run_poll(access)
        query = select(polls).order_by(polls.c.id.desc()).limit(LIST_MAX)
        # A session's polls include the linked classrooms of a dual lesson.
        if req.session_id is not None:
            query = query.where(polls.c.session_id == req.session_id)
        else:
            query = query.where(polls.c.class_id == req.class_id)
        rows = [
            r
            for r in typed_all(PollRow, await conn.execute(query))
            if req.class_id in r.classrooms and (staff or policy.may_see_poll(access, r.audience))
        ]
        mine = await _mine(conn, user_id, [r.id for r in rows])
        ours = [
            r.id for r in rows if r.answer_by == AnswerBy.CLASSROOM and r.class_id != req.class_id
        ]
        if ours:  # a linked classroom's answer, whichever of its teachers gave it
            answered = await conn.execute(
                select(poll_answers.c.poll_id, poll_answers.c.answer).where(
                    poll_answers.c.class_id == req.class_id, poll_answers.c.poll_id.in_(ours)
                )
            )
            mine.update({a.poll_id: list(a.answer) for a in answered})
    for r in rows:
        if rules.overdue(PollStatus(r.status), r.closes_at, now):
            deadlines(hub).overdue(r.id)
    # Staff of a linked classroom see a dual lesson's poll as its students do (they may answer).
    return {
        "polls": [
            {
                **poll_view(r, now, staff=staff and r.class_id == req.class_id),
                "mine": mine.get(r.id),
            }
            for r in rows
        ]
    }
