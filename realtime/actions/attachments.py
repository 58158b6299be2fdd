"""Attachments of messages, notices, questions, answers, homework and homework submissions:
attach in the carrier's transaction, who may see a file, release on delete, and the retention
sweep."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select

from realtime.actions.access import class_access, require_visible
from realtime.domain import policy
from realtime.domain.streams import Visibility, qa_stream
from realtime.errors import HomeroomError, bad_request, conflict, forbidden, not_found
from realtime.store.db import DbConnection
from realtime.store.rows import UploadRow, typed_all
from realtime.store.schema import homework, messages, notices, questions, uploads

# The most files one message, notice, question or answer carries.
MAX_PER_ITEM = 9


def attachment_view(row: UploadRow) -> dict[str, Any]:
    """What every reader of the carrier sees of a file (links are asked for separately)."""
    meta = row.meta or {}
    return {
        "id": row.id,
        "kind": row.kind,
        "mime": row.mime,
        "name": row.name,
        "size": row.size,
        "width": meta.get("width"),
        "height": meta.get("height"),
        "duration_s": meta.get("duration_s"),
    }


async def attach(
    conn: DbConnection, user_id: int, ids: list[str], carrier: str, now: float
) -> list[dict[str, Any]] | None:
    """Attach the uploads ``ids`` (the actor's own, finished, attached nowhere) to ``carrier``.

    Runs inside the carrier's transaction: the file is attached if and only if the message is
    stored. Returns the views in the order given (None for no files).
    """
    if not ids:
        return None
    if len(ids) > MAX_PER_ITEM:
        raise bad_request(f"at most {MAX_PER_ITEM} files at a time")
    if len(set(ids)) != len(ids):
        raise bad_request("the same file is attached twice")
    found = await conn.execute(select(uploads).where(uploads.c.id.in_(ids)))
    rows = {r.id: r for r in typed_all(UploadRow, found)}
    for uid in ids:
        row = rows.get(uid)
        if row is None or row.owner_id != user_id or row.status == "deleted":
            raise not_found("no such upload (attach only files you uploaded)")
        if row.status != "ready":
            raise conflict("the file has not finished uploading")
        if row.carrier is not None:
            raise conflict("this file is already attached to something else; upload it again")
    res = await conn.execute(
        uploads.update()
        .where(uploads.c.id.in_(ids), uploads.c.carrier.is_(None), uploads.c.status == "ready")
        .values(carrier=carrier, attached_at=now)
    )
    if res.rowcount != len(ids):  # another request attached one meanwhile
        raise conflict("this file is already attached to something else; upload it again")
    return [attachment_view(rows[uid]) for uid in ids]


async def detach(conn: DbConnection, carrier: str, ids: list[str]) -> None:
    """Take the files ``ids`` off ``carrier`` (to attach them again to its replacement)."""
    if ids:
        await conn.execute(
            uploads.update()
            .where(uploads.c.carrier == carrier, uploads.c.id.in_(ids))
            .values(carrier=None)
        )


async def release(conn: DbConnection, carriers: list[str], now: float) -> list[str]:
    """Mark the files of deleted carriers deleted; returns the blob keys to collect."""
    rows = list(
        await conn.execute(
            select(uploads.c.blob, uploads.c.preview, uploads.c.thumb).where(
                uploads.c.carrier.in_(carriers), uploads.c.status != "deleted"
            )
        )
    )
    if not rows:
        return []
    await conn.execute(
        uploads.update()
        .where(uploads.c.carrier.in_(carriers), uploads.c.status != "deleted")
        .values(status="deleted", deleted_at=now)
    )
    return sorted({k for r in rows for k in (r.blob, r.preview, r.thumb) if k})


async def referenced(conn: DbConnection, key: str) -> bool:
    """Whether any file that is not deleted still uses the blob ``key``."""
    live = uploads.c.status != "deleted"
    for col in (uploads.c.blob, uploads.c.preview, uploads.c.thumb):
        found = await conn.execute(select(uploads.c.id).where(and_(col == key, live)).limit(1))
        if found.first() is not None:
            return True
    return False


async def carrier_visibility(conn: DbConnection, user_id: int, carrier: str) -> Visibility:
    """How much of the message, notice, question, answer, homework or submission carrying a file
    this person may see."""
    kind, _, raw = carrier.partition(":")
    try:
        if kind == "submission":  # "submission:<homework id>.<student id>"
            hw_raw, _, student_raw = raw.partition(".")
            return await _submission_visibility(conn, user_id, int(hw_raw), int(student_raw))
        cid = int(raw)
    except ValueError:
        return Visibility.NONE
    except HomeroomError:
        return Visibility.NONE
    try:
        if kind == "message":
            msg = (
                await conn.execute(
                    select(messages.c.stream, messages.c.deleted_at).where(messages.c.id == cid)
                )
            ).first()
            if msg is None or msg.deleted_at is not None:
                return Visibility.NONE
            _s, vis, _a, _p = await require_visible(conn, user_id, msg.stream)
            return vis
        if kind == "notice":
            n = (
                await conn.execute(
                    select(notices.c.class_id, notices.c.audience).where(notices.c.id == cid)
                )
            ).first()
            if n is None:
                return Visibility.NONE
            access = await class_access(conn, user_id, n.class_id)
            if policy.may_view_receipts(access):
                return Visibility.STAFF
            if policy.may_receive_notice(access, n.audience):
                return Visibility.MEMBER
            return Visibility.NONE
        if kind in ("question", "answer"):
            q = (
                await conn.execute(
                    select(questions.c.class_id, questions.c.session_id, questions.c.status).where(
                        questions.c.id == cid
                    )
                )
            ).first()
            if q is None:
                return Visibility.NONE
            key = str(qa_stream(q.class_id, q.session_id))
            _s, vis, _a, _p = await require_visible(conn, user_id, key)
            return vis
        if kind == "homework":
            class_id = (
                await conn.execute(select(homework.c.class_id).where(homework.c.id == cid))
            ).scalar_one_or_none()
            if class_id is None:
                return Visibility.NONE
            access = await class_access(conn, user_id, class_id)
            if not policy.may_see_homework(access):
                return Visibility.NONE
            return Visibility.STAFF if access.is_staff else Visibility.MEMBER
    except HomeroomError:
        return Visibility.NONE
    return Visibility.NONE


async def _submission_visibility(
    conn: DbConnection, user_id: int, homework_id: int, student_id: int
) -> Visibility:
    class_id = (
        await conn.execute(select(homework.c.class_id).where(homework.c.id == homework_id))
    ).scalar_one_or_none()
    if class_id is None:
        return Visibility.NONE
    access = await class_access(conn, user_id, class_id)
    if not policy.may_view_student(access, student_id):
        return Visibility.NONE
    return Visibility.STAFF if access.is_staff else Visibility.MEMBER


async def require_may_fetch(conn: DbConnection, user_id: int, row: UploadRow) -> None:
    """Refuse unless this person may fetch the file (the one policy module decides)."""
    vis = Visibility.NONE
    if row.carrier is not None:
        vis = await carrier_visibility(conn, user_id, row.carrier)
    if not policy.may_fetch_attachment(user_id, row.owner_id, vis):
        raise forbidden("you cannot see the message this file was sent with")
