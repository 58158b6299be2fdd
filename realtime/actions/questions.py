"""Q&A actions: ask, edit, withdraw, vote, answer, dismiss, reopen, list; session close."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from realtime.actions import attachments, audit
from realtime.actions.access import (
    class_access,
    display_names,
    session_classrooms,
    session_staff,
)
from realtime.actions.once import create_once
from realtime.domain import policy
from realtime.domain import questions as rules
from realtime.domain.policy import require
from realtime.domain.questions import QuestionStatus, QuestionView
from realtime.domain.roles import ClassAccess, Role
from realtime.domain.streams import qa_stream
from realtime.errors import HomeroomError, bad_request, not_found, too_large
from realtime.hub import Hub
from realtime.schemas import (
    QuestionAnswer,
    QuestionAsk,
    QuestionEdit,
    QuestionList,
    QuestionRef,
    QuestionVote,
)
from realtime.store.db import DbConnection, inserted_id
from realtime.store.rows import QuestionRow, typed, typed_all, typed_or_none
from realtime.store.schema import question_votes, questions


def question_views(
    row: QuestionRow, names: dict[int, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What classmates see, and what teachers see (always who asked)."""
    staff = {
        "id": row.id,
        "class_id": row.class_id,
        "session_id": row.session_id,
        "stream": str(qa_stream(row.class_id, row.session_id)),
        "body": row.body,
        "anonymous": row.anonymous,
        "asker_id": row.asker_id,
        "asker_name": names.get(row.asker_id, ""),
        "status": row.status,
        "answer": row.answer,
        "answered_by": row.answered_by,
        "answered_by_name": names.get(row.answered_by, "") if row.answered_by else None,
        "votes": row.votes,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "attachments": row.attachments or [],
        "answer_attachments": row.answer_attachments or [],
    }
    member = dict(staff)
    if row.anonymous:
        member["asker_id"] = None
        member["asker_name"] = ""
    return member, staff


async def _load(conn: DbConnection, question_id: int) -> QuestionRow:
    row = (await conn.execute(select(questions).where(questions.c.id == question_id))).first()
    if row is None:
        raise not_found("no such question")
    return typed(QuestionRow, row)


async def _names(conn: DbConnection, row: QuestionRow) -> dict[int, str]:
    return await display_names(conn, [u for u in (row.asker_id, row.answered_by) if u])


async def _access_for(conn: DbConnection, user_id: int, row: QuestionRow) -> ClassAccess:
    access = await class_access(conn, user_id, row.class_id)
    if not (access.is_staff or access.is_student):
        raise HomeroomError("forbidden", "you are not in this class's Q&A")
    return access


async def _publish_change(
    conn: DbConnection, hub: Hub, question_id: int, type: str = "question.updated"
) -> dict[str, Any]:
    """Append the question's present form to its stream; returns what teachers see."""
    row = await _load(conn, question_id)
    member, staff = question_views(row, await _names(conn, row))
    stream = str(qa_stream(row.class_id, row.session_id))
    await hub.store.append(conn, stream, type, member, staff)
    return staff


def _check_body(hub: Hub, body: str, has_files: bool = False) -> str:
    text = body.strip()
    if not text and not has_files:
        raise bad_request("a question cannot be empty")
    if len(text) > hub.settings.question_max_chars:
        raise too_large(f"a question has at most {hub.settings.question_max_chars} characters")
    return text


async def ask(hub: Hub, user_id: int, req: QuestionAsk) -> dict[str, Any]:
    body = _check_body(hub, req.body, bool(req.attachments))

    async def create(conn: DbConnection) -> dict[str, Any]:
        access = await class_access(conn, user_id, req.class_id)
        require(policy.may_ask(access), "only students of this class ask questions")
        if req.session_id is not None:
            rooms = await session_classrooms(conn, req.session_id)
            if rooms is None or req.class_id not in rooms:
                raise not_found("no such live session for this class")
        hub.check_rate(user_id, "question")
        now = hub.now()
        res = await conn.execute(
            questions.insert().values(
                class_id=req.class_id,
                session_id=req.session_id,
                asker_id=user_id,
                client_id=req.client_id,
                anonymous=req.anonymous,
                body=body,
                status=QuestionStatus.OPEN.value,
                votes=0,
                created_at=now,
                updated_at=now,
            )
        )
        if req.attachments:
            qid = inserted_id(res)
            files = await attachments.attach(conn, user_id, req.attachments, f"question:{qid}", now)
            await conn.execute(
                questions.update().where(questions.c.id == qid).values(attachments=files)
            )
        return {"question": await _publish_change(conn, hub, inserted_id(res), "question.asked")}

    async def original(conn: DbConnection) -> dict[str, Any] | None:
        earlier = typed_or_none(
            QuestionRow,
            (
                await conn.execute(
                    select(questions).where(
                        questions.c.asker_id == user_id, questions.c.client_id == req.client_id
                    )
                )
            ).first(),
        )
        if earlier is None:
            return None
        return {"question": question_views(earlier, await _names(conn, earlier))[1]}

    return await create_once(hub, create, original)


async def _asker_change(
    hub: Hub, user_id: int, question_id: int, values: dict[str, Any]
) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        row = await _load(conn, question_id)
        await _access_for(conn, user_id, row)
        rules.check_asker_change(QuestionView(row.asker_id, QuestionStatus(row.status)), user_id)
        await conn.execute(
            questions.update()
            .where(questions.c.id == row.id)
            .values(updated_at=hub.now(), **values)
        )
        staff = await _publish_change(conn, hub, row.id)
    return {"question": staff}


async def edit(hub: Hub, user_id: int, req: QuestionEdit) -> dict[str, Any]:
    return await _asker_change(hub, user_id, req.question_id, {"body": _check_body(hub, req.body)})


async def withdraw(hub: Hub, user_id: int, req: QuestionRef) -> dict[str, Any]:
    return await _asker_change(
        hub, user_id, req.question_id, {"status": QuestionStatus.WITHDRAWN.value}
    )


async def vote(hub: Hub, user_id: int, req: QuestionVote) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        row = await _load(conn, req.question_id)
        access = await _access_for(conn, user_id, row)
        require(policy.may_vote(access), "only students vote")
        rules.check_vote(QuestionView(row.asker_id, QuestionStatus(row.status)), user_id)
        had = (
            await conn.execute(
                select(question_votes.c.user_id).where(
                    question_votes.c.question_id == row.id, question_votes.c.user_id == user_id
                )
            )
        ).first() is not None
        if had == req.up:
            return {"question_id": row.id, "votes": row.votes, "voted": had, "changed": False}
        if req.up:
            await conn.execute(question_votes.insert().values(question_id=row.id, user_id=user_id))
        else:
            await conn.execute(
                question_votes.delete().where(
                    question_votes.c.question_id == row.id, question_votes.c.user_id == user_id
                )
            )
        delta = 1 if req.up else -1
        await conn.execute(
            questions.update()
            .where(questions.c.id == row.id)
            .values(votes=questions.c.votes + delta)
        )
        data = {"question_id": row.id, "votes": row.votes + delta}
        await hub.store.append(
            conn, str(qa_stream(row.class_id, row.session_id)), "question.voted", data
        )
    return {**data, "voted": req.up, "changed": True}


async def _moderate(
    hub: Hub,
    user_id: int,
    question_id: int,
    to: QuestionStatus,
    answer: str | None = None,
    files: list[str] | None = None,
) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        row = await _load(conn, question_id)
        access = await class_access(conn, user_id, row.class_id)
        allowed = policy.may_moderate_questions(access) or (
            row.session_id is not None
            and await session_staff(conn, user_id, row.session_id, row.class_id)
        )
        require(allowed, "only teachers of this class moderate Q&A")
        rules.moderate(QuestionView(row.asker_id, QuestionStatus(row.status)), to)
        values: dict[str, Any] = {"status": to.value, "updated_at": hub.now()}
        if to in (QuestionStatus.ANSWERED, QuestionStatus.ANSWERED_LIVE):
            values["answered_by"] = user_id
            if answer is not None:
                values["answer"] = answer
            if files:
                if row.answer_attachments:
                    raise bad_request("this answer already has its files")
                values["answer_attachments"] = await attachments.attach(
                    conn, user_id, files, f"answer:{row.id}", values["updated_at"]
                )
        await conn.execute(questions.update().where(questions.c.id == row.id).values(**values))
        staff = await _publish_change(conn, hub, row.id)
        if to in (QuestionStatus.DISMISSED, QuestionStatus.OPEN):  # moderation, not answers
            await audit.record(
                conn,
                actor_id=user_id,
                action="question.dismiss" if to == QuestionStatus.DISMISSED else "question.reopen",
                now=values["updated_at"],
                class_id=row.class_id,
                target=f"question:{row.id}",
                # An anonymous asker stays anonymous to the log's readers too.
                detail={} if row.anonymous else {"asker_id": row.asker_id},
            )
    return {"question": staff}


async def answer(hub: Hub, user_id: int, req: QuestionAnswer) -> dict[str, Any]:
    text = req.answer.strip()
    if len(text) > hub.settings.chat_max_chars:
        raise too_large(f"an answer has at most {hub.settings.chat_max_chars} characters")
    if req.live:
        return await _moderate(
            hub,
            user_id,
            req.question_id,
            QuestionStatus.ANSWERED_LIVE,
            text or None,
            req.attachments,
        )
    if not text and not req.attachments:
        raise bad_request("a written answer cannot be empty (or mark it answered live)")
    return await _moderate(
        hub, user_id, req.question_id, QuestionStatus.ANSWERED, text, req.attachments
    )


async def dismiss(hub: Hub, user_id: int, req: QuestionRef) -> dict[str, Any]:
    return await _moderate(hub, user_id, req.question_id, QuestionStatus.DISMISSED)


async def reopen(hub: Hub, user_id: int, req: QuestionRef) -> dict[str, Any]:
    return await _moderate(hub, user_id, req.question_id, QuestionStatus.OPEN)


async def list_questions(hub: Hub, user_id: int, req: QuestionList) -> dict[str, Any]:
    async with hub.store.read() as conn:
        access = await class_access(conn, user_id, req.class_id)
        if req.session_id is not None and await session_staff(
            conn, user_id, req.session_id, req.class_id
        ):
            access = ClassAccess(user_id, req.class_id, frozenset({Role.TEACHER}))
        if not (access.is_staff or access.is_student):
            raise HomeroomError("forbidden", "you are not in this class's Q&A")
        query = select(questions).where(questions.c.class_id == req.class_id)
        query = query.where(
            questions.c.session_id == req.session_id
            if req.session_id
            else questions.c.session_id.is_(None)
        )
        if req.status:
            query = query.where(questions.c.status == req.status.value)
        else:
            query = query.where(questions.c.status != QuestionStatus.WITHDRAWN.value)
        rows = typed_all(QuestionRow, await conn.execute(query))
        rows.sort(key=lambda r: rules.sort_key(r.votes, r.id))
        names = await display_names(
            conn, sorted({u for r in rows for u in (r.asker_id, r.answered_by) if u})
        )
        voted = {
            r.question_id
            for r in await conn.execute(
                select(question_votes.c.question_id).where(
                    question_votes.c.user_id == user_id,
                    question_votes.c.question_id.in_([r.id for r in rows]),
                )
            )
        }
    out = []
    for r in rows:
        member, staff = question_views(r, names)
        view = staff if access.is_staff else member
        out.append({**view, "voted": r.id in voted, "mine": r.asker_id == user_id})
    return {"questions": out}


async def close_session(hub: Hub, class_id: int, session_id: int) -> int:
    """A live session ended: its open and answered questions move to the class board (the
    answered ones with their answers, marked answered, so a student can look back at them);
    dismissed and withdrawn ones stay with the session."""
    async with hub.store.transaction() as conn:
        rows = list(
            await conn.execute(
                select(questions).where(
                    questions.c.class_id == class_id,
                    questions.c.session_id == session_id,
                    questions.c.status.in_([s.value for s in rules.KEPT_ON_THE_BOARD]),
                )
            )
        )
        for row in rows:
            await conn.execute(
                questions.update()
                .where(questions.c.id == row.id)
                .values(session_id=None, updated_at=hub.now())
            )
            await hub.store.append(
                conn,
                str(qa_stream(class_id, session_id)),
                "question.moved",
                {"question_id": row.id, "to": str(qa_stream(class_id))},
            )
            await _publish_change(conn, hub, row.id, "question.asked")
    return len(rows)
