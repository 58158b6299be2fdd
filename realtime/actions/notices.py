"""Notice actions: publish, receipts (delivered, read, confirmed, replied), roll-up, reminders."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select

from realtime.actions import attachments, audit
from realtime.actions import notice_rollup as rollup
from realtime.actions.access import (
    class_access,
    display_names,
    guardians_of,
    members_with_role,
)
from realtime.actions.notice_rollup import receipt_of, receipt_view
from realtime.actions.once import create_once
from realtime.actions.schools import school_time_zone
from realtime.domain import notices as rules
from realtime.domain import policy
from realtime.domain.exportlang import DEFAULT_LANG, Localiser
from realtime.domain.notices import Audience, NoticeKind, Tally
from realtime.domain.policy import require
from realtime.domain.roles import Role
from realtime.domain.streams import notice_stream, staff_stream, user_stream
from realtime.errors import HomeroomError, bad_request, not_found, too_large
from realtime.hub import Hub
from realtime.schemas import (
    NoticeList,
    NoticePublish,
    NoticeReceipts,
    NoticeRef,
    NoticeReply,
    NoticesDelivered,
)
from realtime.store.db import DbConnection, inserted_id
from realtime.store.rows import NoticeRow, ReceiptRow, typed, typed_all, typed_or_none
from realtime.store.schema import notices, receipts


def notice_view(row: NoticeRow, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "class_id": row.class_id,
        "author_id": row.author_id,
        "author_name": names.get(row.author_id, ""),
        "audience": row.audience,
        "kind": row.kind,
        "title": row.title,
        "body": row.body,
        "choices": list(row.choices or []),
        "deadline": row.deadline,
        "created_at": row.created_at,
        "attachments": row.attachments or [],
    }


async def _recipients(conn: DbConnection, class_id: int, audience: Audience) -> list[int]:
    people: set[int] = set()
    if audience in (Audience.GUARDIANS, Audience.BOTH):
        for gs in (await guardians_of(conn, class_id)).values():
            people.update(gs)
    if audience in (Audience.STUDENTS, Audience.BOTH):
        people.update(await members_with_role(conn, class_id, Role.STUDENT))
    return sorted(people)


async def publish(hub: Hub, user_id: int, req: NoticePublish) -> dict[str, Any]:
    kind = NoticeKind(req.kind)
    audience = Audience(req.audience)
    choices = rules.validate_choices(kind, req.choices)
    if len(req.body) > hub.settings.notice_max_chars:
        raise too_large(f"a notice has at most {hub.settings.notice_max_chars} characters")
    if req.deadline is not None and req.deadline <= hub.now():
        raise bad_request("the deadline is in the past")

    async def create(conn: DbConnection) -> dict[str, Any]:
        access = await class_access(conn, user_id, req.class_id)
        require(policy.may_publish_notice(access), "only teachers of this class publish notices")
        now = hub.now()
        res = await conn.execute(
            notices.insert().values(
                class_id=req.class_id,
                author_id=user_id,
                client_id=req.client_id,
                audience=audience.value,
                kind=kind.value,
                title=req.title.strip(),
                body=req.body,
                choices=choices,
                deadline=req.deadline,
                created_at=now,
            )
        )
        notice_id = inserted_id(res)
        if req.attachments:
            files = await attachments.attach(
                conn, user_id, req.attachments, f"notice:{notice_id}", now
            )
            await conn.execute(
                notices.update().where(notices.c.id == notice_id).values(attachments=files)
            )
        people = await _recipients(conn, req.class_id, audience)
        if people:
            await conn.execute(
                receipts.insert(), [{"notice_id": notice_id, "user_id": u} for u in people]
            )
        await rollup.start_tally(conn, notice_id, len(people))
        row = await _load_notice(conn, notice_id)
        view = notice_view(row, await display_names(conn, [user_id]))
        for part in audience.streams:
            await hub.store.append(
                conn, str(notice_stream(req.class_id, part)), "notice.published", view
            )
        return {"notice": view, "recipients": len(people)}

    async def original(conn: DbConnection) -> dict[str, Any] | None:
        earlier = typed_or_none(
            NoticeRow,
            (
                await conn.execute(
                    select(notices).where(
                        notices.c.author_id == user_id, notices.c.client_id == req.client_id
                    )
                )
            ).first(),
        )
        if earlier is None:
            return None
        names = await display_names(conn, [earlier.author_id])
        return {"notice": notice_view(earlier, names)}

    return await create_once(hub, create, original)


async def _load_notice(conn: DbConnection, notice_id: int) -> NoticeRow:
    row = (await conn.execute(select(notices).where(notices.c.id == notice_id))).first()
    if row is None:
        raise not_found("no such notice")
    return typed(NoticeRow, row)


async def _load_receipt(conn: DbConnection, notice_id: int, user_id: int) -> ReceiptRow | None:
    row = (
        await conn.execute(
            select(receipts).where(receipts.c.notice_id == notice_id, receipts.c.user_id == user_id)
        )
    ).first()
    return typed_or_none(ReceiptRow, row)


async def _receipt_change(
    hub: Hub, user_id: int, notice_id: int, change: str, reply: str | None = None
) -> dict[str, Any]:
    """Move one recipient's receipt forward; doing it twice changes nothing."""
    changed = False
    async with hub.store.transaction() as conn:
        notice = await _load_notice(conn, notice_id)
        access = await class_access(conn, user_id, notice.class_id)
        audience = Audience(notice.audience)
        if not policy.may_receive_notice(access, audience.value):
            raise HomeroomError("forbidden", "this notice is not addressed to you")
        kind = NoticeKind(notice.kind)
        if change == "confirm":
            rules.check_confirm(kind)
        elif change == "reply":
            assert reply is not None
            rules.check_reply(kind, list(notice.choices or []), reply)
        found = await _load_receipt(conn, notice_id, user_id)
        before = None if found is None else receipt_of(found)
        if found is None:
            # Linked after the notice was published: the receipt starts now.
            await conn.execute(receipts.insert().values(notice_id=notice_id, user_id=user_id))
            found = await _load_receipt(conn, notice_id, user_id)
        row = found
        assert row is not None
        now = hub.now()
        values: dict[str, Any] = {}
        if row.delivered_at is None:
            values["delivered_at"] = now
        if change in ("read", "confirm", "reply") and row.read_at is None:
            values["read_at"] = now
        if change == "confirm" and row.confirmed_at is None:
            values["confirmed_at"] = now
        if change == "reply" and row.reply != reply:
            if row.reply is not None and notice.deadline is not None and now > notice.deadline:
                raise HomeroomError(
                    "conflict",
                    "the deadline has passed; the reply is final",
                    reason="deadline_passed",
                )
            values["reply"] = reply
            values["replied_at"] = now
        if values:
            await conn.execute(
                receipts.update()
                .where(receipts.c.notice_id == notice_id, receipts.c.user_id == user_id)
                .values(**values)
            )
            row = await _load_receipt(conn, notice_id, user_id)
            assert row is not None
            await rollup.record_change(conn, notice, access, before, receipt_of(row), now)
            names = await display_names(conn, [user_id])
            staff = {"notice_id": notice_id, "name": names.get(user_id, ""), **receipt_view(row)}
            stream = staff_stream(notice.class_id)
            await hub.store.append(conn, str(stream), "notice.receipt", staff)
            changed = True
        view = receipt_view(row)
    return {"receipt": {"notice_id": notice_id, **view}, "changed": changed}


async def read(hub: Hub, user_id: int, req: NoticeRef) -> dict[str, Any]:
    return await _receipt_change(hub, user_id, req.notice_id, "read")


async def confirm(hub: Hub, user_id: int, req: NoticeRef) -> dict[str, Any]:
    return await _receipt_change(hub, user_id, req.notice_id, "confirm")


async def reply(hub: Hub, user_id: int, req: NoticeReply) -> dict[str, Any]:
    return await _receipt_change(hub, user_id, req.notice_id, "reply", req.reply)


async def delivered(hub: Hub, user_id: int, req: NoticesDelivered) -> dict[str, Any]:
    changed = []
    for notice_id in sorted(set(req.notice_ids)):
        try:
            result = await _receipt_change(hub, user_id, notice_id, "deliver")
        except HomeroomError:
            continue  # not addressed to this person: nothing to record
        if result["changed"]:
            changed.append(notice_id)
    return {"delivered": changed}


async def receipts_rollup(hub: Hub, user_id: int, req: NoticeReceipts) -> dict[str, Any]:
    async with hub.store.read() as conn:
        notice = await _load_notice(conn, req.notice_id)
        access = await class_access(conn, user_id, notice.class_id)
        require(policy.may_view_receipts(access), "only teachers of this class see receipts")
        names = await display_names(conn, [notice.author_id])
        which = req.list.value if req.list is not None else None
        report = await rollup.rollup(conn, notice, which, req.after, req.limit)
    # When the next reminder may go (the web app disables its button until then).
    last = notice.last_reminded_at
    again = last + hub.settings.notice_remind_interval_s if last else None
    return {"notice": notice_view(notice, names), **report, "remind_again_at": again}


async def receipts_csv(hub: Hub, user_id: int, notice_id: int, lang: str = DEFAULT_LANG) -> str:
    """An export in ``lang`` and the school's time zone: recorded in the audit log in the
    transaction that reads it."""
    async with hub.store.transaction() as conn:
        notice = await _load_notice(conn, notice_id)
        access = await class_access(conn, user_id, notice.class_id)
        require(policy.may_view_receipts(access), "only teachers of this class see receipts")
        zone = await school_time_zone(conn, notice.class_id)
        text = await rollup.csv_report(conn, notice, Localiser(lang, zone))
        await audit.record(
            conn,
            actor_id=user_id,
            action="export.receipts",
            now=hub.now(),
            class_id=notice.class_id,
            target=f"notice:{notice.id}",
        )
        return text


async def remind(hub: Hub, user_id: int, req: NoticeRef) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        notice = await _load_notice(conn, req.notice_id)
        access = await class_access(conn, user_id, notice.class_id)
        require(policy.may_publish_notice(access), "only teachers of this class send reminders")
        now = hub.now()
        interval = hub.settings.notice_remind_interval_s
        if not rules.may_remind(notice.last_reminded_at, now, interval):
            assert notice.last_reminded_at is not None  # may_remind says when there is none
            wait = max(1, math.ceil(notice.last_reminded_at + interval - now))
            raise HomeroomError(
                "rate_limited",
                f"a reminder was sent recently; wait {wait} s",
                reason="reminder_cooldown",
                retry_after_s=wait,
            )
        students, targets = await rollup.not_covered_people(conn, notice)
        data = {
            "notice_id": notice.id,
            "class_id": notice.class_id,
            "title": notice.title,
            "deadline": notice.deadline,
        }
        if not targets:
            raise HomeroomError(
                "conflict", "every student is covered: nobody to remind", reason="nobody_to_remind"
            )
        for u in targets:
            await hub.store.append(conn, str(user_stream(u)), "notice.reminder", data)
        await conn.execute(
            notices.update().where(notices.c.id == notice.id).values(last_reminded_at=now)
        )
    return {"reminded": targets, "students": students}


async def list_notices(hub: Hub, user_id: int, req: NoticeList) -> dict[str, Any]:
    async with hub.store.read() as conn:
        access = await class_access(conn, user_id, req.class_id)
        if not access.is_member:
            raise HomeroomError(
                "forbidden", "you are not a member of this class", reason="not_member"
            )
        query = select(notices).where(notices.c.class_id == req.class_id)
        if not access.is_staff:
            allowed = [
                a for a in ("guardians", "students", "both") if policy.may_receive_notice(access, a)
            ]
            query = query.where(notices.c.audience.in_(allowed))
        rows = typed_all(
            NoticeRow, await conn.execute(query.order_by(notices.c.id.desc()).limit(200))
        )
        names = await display_names(conn, sorted({r.author_id for r in rows}))
        mine = {
            r.notice_id: receipt_view(r)
            for r in await conn.execute(
                select(receipts).where(
                    receipts.c.user_id == user_id,
                    receipts.c.notice_id.in_([r.id for r in rows]),
                )
            )
        }
        if access.is_staff:
            counted = await rollup.tallies(conn, [r.id for r in rows])
            students = await rollup.student_count(conn, req.class_id)
        out = []
        for r in rows:
            item = notice_view(r, names)
            if access.is_staff:
                item["counts"] = counted.get(r.id, Tally(0, 0, 0, 0, 0, 0)).counts(students)
            else:
                item["receipt"] = mine.get(r.id)
            out.append(item)
    return {"notices": out}
