"""Attachments of messages, notices, questions, answers, homework and homework submissions:
attach in the carrier's transaction, who may see a file, release on delete, and the retention
sweep."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select

from realtime.actions.access import class_access, require_visible
from realtime.actions.guardian_history import history_floor
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


async def replace(
    conn: DbConnection, user_id: int, ids: list[str], carrier: str, now: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """The carrier's files become ``ids``: the ones it already carries stay, new uploads are
    attached, the rest are released. Returns the views in the order given and the blob keys to
    collect (a resubmitted homework: the student's files as they are now)."""
    if len(ids) > MAX_PER_ITEM:
        raise bad_request(f"at most {MAX_PER_ITEM} files at a time")
    held = {
        r.id: r
        for r in typed_all(
            UploadRow,
            await conn.execute(
                select(uploads).where(uploads.c.carrier == carrier, uploads.c.status != "deleted")
            ),
        )
    }
    new = await attach(conn, user_id, [i for i in ids if i not in held], carrier, now) or []
    views = {v["id"]: v for v in new} | {i: attachment_view(r) for i, r in held.items()}
    dropped = [i for i in held if i not in ids]
    keys: list[str] = []
    if dropped:
        rows = [held[i] for i in dropped]
        await conn.execute(
            uploads.update()
            .where(uploads.c.id.in_(dropped))
            .values(status="deleted", deleted_at=now)
        )
        keys = sorted({k for r in rows for k in (r.blob, r.preview, r.thumb) if k})
    return [views[i] for i in ids], keys


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
    if kind in ("homework", "submission"):
        return await _homework_visibility(conn, user_id, kind, raw)
    try:
        cid = int(raw)
    except ValueError:
        return Visibility.NONE
    try:
        if kind == "message":
            msg = (
                await conn.execute(
                    select(messages.c.stream, messages.c.seq, messages.c.deleted_at).where(
                        messages.c.id == cid
                    )
                )
            ).first()
            if msg is None or msg.deleted_at is not None:
                return Visibility.NONE
            stream, vis, access, _p = await require_visible(conn, user_id, msg.stream)
            # A guardian approved after the message was sent does not see it, nor its files.
            floor = await history_floor(conn, stream, access)
            if not policy.may_see_in_chat(msg.seq, None, floor):
                return Visibility.NONE
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
    except HomeroomError:
        return Visibility.NONE
    return Visibility.NONE


async def _homework_visibility(conn: DbConnection, user_id: int, kind: str, raw: str) -> Visibility:
    """``homework:{id}``: whom the homework is for; ``submission:{homework}:{student}``: the
    student, their approved guardians and the class's staff."""
    try:
        hw_id, *rest = (int(x) for x in raw.split(":"))
    except ValueError:
        return Visibility.NONE
    hw = (await conn.execute(select(homework.c.class_id).where(homework.c.id == hw_id))).first()
    if hw is None:
        return Visibility.NONE
    try:
        access = await class_access(conn, user_id, hw.class_id)
    except HomeroomError:
        return Visibility.NONE
    if policy.may_review_homework(access):
        return Visibility.STAFF
    student = rest[0] if kind == "submission" and len(rest) == 1 else None
    if (kind == "homework") == (student is None) and policy.may_see_homework(access, student):
        return Visibility.MEMBER
    return Visibility.NONE


async def require_may_fetch(conn: DbConnection, user_id: int, row: UploadRow) -> None:
    """Refuse unless this person may fetch the file (the one policy module decides)."""
    vis = Visibility.NONE
    if row.carrier is not None:
        vis = await carrier_visibility(conn, user_id, row.carrier)
    if not policy.may_fetch_attachment(user_id, row.owner_id, vis):
        raise forbidden("you cannot see the message this file was sent with")
