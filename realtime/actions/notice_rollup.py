"""A notice's roll-up for its teachers: counts kept as receipts change, lists one page at a time.

The counts come from the notice's tally row and the class's student count: two index look-ups,
whatever the size of the class. The tally and the coverage rows are written in the same
transaction as the receipt change that moves them (``record_change``), from the rules in
``domain/notices.py``. The lists are read one page at a time, by user or student id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, exists, func, select

from realtime import csvexport
from realtime.domain import notices as rules
from realtime.domain.exportlang import Localiser
from realtime.domain.notices import Audience, NoticeKind, Receipt, Tally
from realtime.domain.roles import ClassAccess, Role
from realtime.store.db import DbConnection, insert_missing
from realtime.store.rows import NoticeRow
from realtime.store.schema import (
    guardian_links,
    memberships,
    notice_coverage,
    notice_tallies,
    notices,
    receipts,
    users,
)

LISTS = tuple(r.value for r in rules.ReceiptList)


def receipt_of(row: Any) -> Receipt:
    return Receipt(
        row.user_id,
        row.delivered_at is not None,
        row.read_at is not None,
        row.confirmed_at is not None,
        row.reply,
    )


def receipt_view(row: Any) -> dict[str, Any]:
    return {
        "user_id": row.user_id,
        "state": receipt_of(row).state.value,
        "delivered_at": row.delivered_at,
        "read_at": row.read_at,
        "confirmed_at": row.confirmed_at,
        "reply": row.reply,
        "replied_at": row.replied_at,
    }


# --- keeping the counts ---------------------------------------------------------------------


async def start_tally(conn: DbConnection, notice_id: int, recipients: int) -> None:
    """A new notice: every recipient has a receipt, none past ``sent``."""
    await conn.execute(
        notice_tallies.insert().values(
            notice_id=notice_id,
            recipients=recipients,
            delivered=0,
            read=0,
            confirmed=0,
            replied=0,
            covered=0,
        )
    )


async def record_change(
    conn: DbConnection,
    notice: NoticeRow,
    access: ClassAccess,
    before: Receipt | None,
    after: Receipt,
    now: float,
) -> None:
    """Count a receipt change (``before`` None: the receipt is new) in the notice's tally."""
    t = notice_tallies.c
    values: dict[str, Any] = {
        step.value: t[step.value] + 1 for step in rules.steps_reached(before, after)
    }
    if before is None:
        values["recipients"] = t.recipients + 1
    kind = NoticeKind(notice.kind)
    if after.fulfils(kind) and not (before is not None and before.fulfils(kind)):
        students = rules.covers(
            Audience(notice.audience), access.user_id, access.children, access.is_student
        )
        newly = await _cover(conn, [(notice.id, s) for s in sorted(students)], now)
        if newly:
            values["covered"] = t.covered + len(newly)
    if values:
        await conn.execute(notice_tallies.update().where(t.notice_id == notice.id).values(**values))


async def cover_new_link(
    conn: DbConnection, class_id: int, guardian_id: int, student_id: int, now: float
) -> None:
    """A guardian approved for a child: the notices they already fulfilled cover the child too."""
    rows = await conn.execute(
        select(notices.c.id, notices.c.kind, notices.c.audience, receipts)
        .join(receipts, receipts.c.notice_id == notices.c.id)
        .where(notices.c.class_id == class_id, receipts.c.user_id == guardian_id)
    )
    pairs = [
        (r.id, student_id)
        for r in rows
        if Audience(r.audience).guardians_cover and receipt_of(r).fulfils(NoticeKind(r.kind))
    ]
    for notice_id, _ in await _cover(conn, pairs, now):
        await conn.execute(
            notice_tallies.update()
            .where(notice_tallies.c.notice_id == notice_id)
            .values(covered=notice_tallies.c.covered + 1)
        )


async def _cover(
    conn: DbConnection, pairs: list[tuple[int, int]], now: float
) -> list[tuple[int, int]]:
    """Add coverage rows; the (notice, student) pairs that were not covered yet."""
    if not pairs:
        return []
    # Two guardians of one child may fulfil at once: the second insert does nothing.
    added = await insert_missing(
        conn,
        notice_coverage,
        [{"notice_id": n, "student_id": s, "covered_at": now} for n, s in pairs],
        notice_coverage.c.notice_id,
        notice_coverage.c.student_id,
    )
    return [(r.notice_id, r.student_id) for r in added]


# --- reading the counts -----------------------------------------------------------------------


async def student_count(conn: DbConnection, class_id: int) -> int:
    return int(
        (
            await conn.execute(
                select(func.count())
                .select_from(memberships)
                .where(
                    memberships.c.class_id == class_id,
                    memberships.c.role == Role.STUDENT.value,
                )
            )
        ).scalar_one()
    )


async def tallies(conn: DbConnection, notice_ids: list[int]) -> dict[int, Tally]:
    if not notice_ids:
        return {}
    rows = await conn.execute(
        select(notice_tallies).where(notice_tallies.c.notice_id.in_(notice_ids))
    )
    return {
        r.notice_id: Tally(r.recipients, r.delivered, r.read, r.confirmed, r.replied, r.covered)
        for r in rows
    }


async def counts(conn: DbConnection, notice: NoticeRow) -> dict[str, Any]:
    tally = (await tallies(conn, [notice.id])).get(notice.id) or Tally(0, 0, 0, 0, 0, 0)
    return tally.counts(await student_count(conn, notice.class_id))


async def reply_counts(conn: DbConnection, notice: NoticeRow) -> dict[str, int]:
    """How many chose each reply (every choice, zeros included). Replies can change, so they
    are counted here rather than kept."""
    rows = await conn.execute(
        select(receipts.c.reply, func.count())
        .where(receipts.c.notice_id == notice.id, receipts.c.reply.is_not(None))
        .group_by(receipts.c.reply)
    )
    found = {r[0]: int(r[1]) for r in rows}
    return {c: found.get(c, 0) for c in notice.choices or []}


# --- the lists, a page at a time --------------------------------------------------------------


def _is_covered(notice_id: int, student: Any) -> Any:
    return exists().where(
        notice_coverage.c.notice_id == notice_id, notice_coverage.c.student_id == student
    )


def _students(class_id: int) -> Select[Any]:
    return (
        select(memberships.c.user_id.label("student_id"), users.c.display_name)
        .join(users, users.c.id == memberships.c.user_id)
        .where(memberships.c.class_id == class_id, memberships.c.role == Role.STUDENT.value)
        .order_by(memberships.c.user_id)
    )


async def _page(
    conn: DbConnection, notice: NoticeRow, which: str, after: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of a list, and the cursor for the next (None: this was the last page)."""
    start = after or 0
    if which == "receipts":
        rows = list(
            await conn.execute(
                select(receipts, users.c.display_name)
                .join(users, users.c.id == receipts.c.user_id)
                .where(receipts.c.notice_id == notice.id, receipts.c.user_id > start)
                .order_by(receipts.c.user_id)
                .limit(limit + 1)
            )
        )
        page = [{**receipt_view(r), "name": r.display_name} for r in rows[:limit]]
        ids = [r.user_id for r in rows]
    else:
        covered = _is_covered(notice.id, memberships.c.user_id)
        query = _students(notice.class_id).where(
            memberships.c.user_id > start, covered if which == "covered" else ~covered
        )
        rows = list(await conn.execute(query.limit(limit + 1)))
        page = await _student_entries(conn, notice, rows[:limit])
        ids = [r.student_id for r in rows]
    return page, (ids[limit - 1] if len(ids) > limit else None)


async def _student_entries(
    conn: DbConnection, notice: NoticeRow, rows: list[Any]
) -> list[dict[str, Any]]:
    """Students with their guardians and each guardian's receipt state ("none": no receipt)."""
    ids = [r.student_id for r in rows]
    by_student: dict[int, list[dict[str, Any]]] = {}
    if ids:
        for g in await conn.execute(_guardians(notice).where(guardian_links.c.student_id.in_(ids))):
            by_student.setdefault(g.student_id, []).append(
                {"id": g.guardian_id, "name": g.display_name, "state": _state(g)}
            )
    return [
        {
            "student_id": r.student_id,
            "name": r.display_name,
            "guardians": by_student.get(r.student_id, []),
        }
        for r in rows
    ]


def _guardians(notice: NoticeRow) -> Select[Any]:
    """A class's approved guardian links with the guardian's name and receipt, if any."""
    return (
        select(
            guardian_links.c.student_id,
            guardian_links.c.guardian_id,
            users.c.display_name,
            receipts,
        )
        .join(users, users.c.id == guardian_links.c.guardian_id)
        .outerjoin(
            receipts,
            and_(
                receipts.c.notice_id == notice.id,
                receipts.c.user_id == guardian_links.c.guardian_id,
            ),
        )
        .where(guardian_links.c.class_id == notice.class_id, guardian_links.c.status == "approved")
        .order_by(guardian_links.c.student_id, guardian_links.c.id)
    )


def _state(row: Any) -> str:
    return "none" if row.notice_id is None else receipt_of(row).state.value


async def rollup(
    conn: DbConnection,
    notice: NoticeRow,
    which: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """The counts, and one page of one list (``which``) or the first page of every list."""
    out: dict[str, Any] = {"counts": await counts(conn, notice), "next": {}}
    if NoticeKind(notice.kind) is NoticeKind.REPLY_REQUIRED:
        out["counts"]["replies"] = await reply_counts(conn, notice)
    for name in (which,) if which else LISTS:
        out[name], out["next"][name] = await _page(conn, notice, name, after, limit)
    out["last_reminded_at"] = notice.last_reminded_at
    return out


# --- everything at once: reminders and the CSV export ----------------------------------------


async def not_covered_people(conn: DbConnection, notice: NoticeRow) -> tuple[list[int], list[int]]:
    """The students not covered, and the people to remind for them (guardians and/or students)."""
    audience = Audience(notice.audience)
    students = [
        r.student_id
        for r in await conn.execute(
            _students(notice.class_id).where(~_is_covered(notice.id, memberships.c.user_id))
        )
    ]
    targets: set[int] = set(students) if audience.students_cover else set()
    if audience.guardians_cover:
        targets.update(
            r.guardian_id
            for r in await conn.execute(
                select(guardian_links.c.guardian_id).where(
                    guardian_links.c.class_id == notice.class_id,
                    guardian_links.c.status == "approved",
                    ~_is_covered(notice.id, guardian_links.c.student_id),
                )
            )
        )
    return students, sorted(targets)


CSV_COLUMNS = [
    "student_id",
    "student",
    "covered",
    "recipient_id",
    "recipient",
    "state",
    "delivered_at",
    "read_at",
    "confirmed_at",
    "reply",
]


EMPTY4 = ("", "", "", "")


async def csv_report(conn: DbConnection, notice: NoticeRow, loc: Localiser) -> str:
    """Every student and recipient, covered students first: a handful of queries, no paging.
    Headers, yes/no and states in ``loc``'s language, times in its zone, formulas neutralised."""
    students = list(await conn.execute(_students(notice.class_id)))
    covered = {
        r.student_id
        for r in await conn.execute(
            select(notice_coverage.c.student_id).where(notice_coverage.c.notice_id == notice.id)
        )
    }
    guardians: dict[int, list[int]] = {}
    for g in await conn.execute(_guardians(notice)):
        guardians.setdefault(g.student_id, []).append(g.guardian_id)
    by_user = {
        r.user_id: r
        for r in await conn.execute(
            select(receipts, users.c.display_name)
            .join(users, users.c.id == receipts.c.user_id)
            .where(receipts.c.notice_id == notice.id)
        )
    }
    with_students = Audience(notice.audience).students_cover
    table = csvexport.Table(loc.header(CSV_COLUMNS))
    none = loc.word("none")
    for is_covered in (True, False):
        for s in students:
            if (s.student_id in covered) != is_covered:
                continue
            who = guardians.get(s.student_id, []) + ([s.student_id] if with_students else [])
            if not who:
                table.row(
                    [s.student_id, s.display_name, loc.yes_no(is_covered), "", "", none, *EMPTY4]
                )
            for uid in who:
                r = by_user.get(uid)
                table.row(
                    [s.student_id, s.display_name, loc.yes_no(is_covered), uid]
                    + (_csv_receipt(r, loc) if r is not None else ["", none, "", "", "", ""])
                )
    return table.text()


def _csv_receipt(r: Any, loc: Localiser) -> list[Any]:
    return [
        r.display_name,
        loc.word(receipt_of(r).state.value),
        loc.time(r.delivered_at),
        loc.time(r.read_at),
        loc.time(r.confirmed_at),
        r.reply or "",
    ]
