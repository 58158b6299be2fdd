"""Typed rows: each struct holds its table's columns, and reads the same on both databases,
through SQLAlchemy and through the prepared statements of the hot path."""

from __future__ import annotations

import msgspec
import pytest
from sqlalchemy import bindparam, select

from realtime.actions.roster import create_class
from realtime.store import Store
from realtime.store.db import insert_missing
from realtime.store.prepared import Prepared
from realtime.store.rows import TABLES, MessageRow, check_rows, typed, typed_or_none
from realtime.store.schema import messages, notice_coverage, notices, schools, users


def test_every_struct_names_its_tables_columns() -> None:
    check_rows()
    hot = {"messages", "notices", "receipts", "questions", "polls", "poll_answers", "uploads"}
    assert {table.name for table in TABLES.values()} == hot
    for kind, table in TABLES.items():
        assert [c.key for c in table.columns] == list(kind.__struct_fields__), kind


def test_a_struct_that_lost_a_column_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    class Short(msgspec.Struct, frozen=True):
        id: int

    monkeypatch.setitem(TABLES, Short, messages)
    with pytest.raises(AssertionError, match="Short"):
        check_rows()


async def test_rows_read_alike_on_both_paths(store: Store) -> None:
    async with store.transaction() as conn:
        school = (await conn.execute(schools.insert().values(name="s"))).inserted_primary_key[0]
        uid = (
            await conn.execute(
                users.insert().values(
                    school_id=school, username="u", display_name="U", created_at=1.0
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(
            messages.insert().values(
                stream="class:1:students",
                seq=1,
                sender_id=uid,
                client_id="c",
                body="你好",
                sent_at=2.5,
            )
        )
    by_core = select(messages).where(messages.c.client_id == "c")
    by_prepared = Prepared(select(messages).where(messages.c.client_id == bindparam("cid")))
    async with store.read() as conn:
        a = typed(MessageRow, (await conn.execute(by_core)).one())
        b = typed_or_none(MessageRow, (await conn.execute(by_prepared, {"cid": "c"})).first())
        none = typed_or_none(MessageRow, (await conn.execute(by_prepared, {"cid": "x"})).first())
    assert a == b and none is None
    assert (a.body, a.sent_at, a.edited_at, a.deleted_at) == ("你好", 2.5, None, None)
    assert isinstance(a.id, int) and isinstance(a.seq, int)


async def test_insert_missing_skips_existing_keys_on_both_databases(store: Store) -> None:
    async with store.transaction() as conn:
        school = (await conn.execute(schools.insert().values(name="s"))).inserted_primary_key[0]
        cid = await create_class(conn, school, "c")
        uid = (
            await conn.execute(
                users.insert().values(
                    school_id=school, username="u", display_name="U", created_at=1.0
                )
            )
        ).inserted_primary_key[0]
        nid = (
            await conn.execute(
                notices.insert().values(
                    class_id=cid,
                    author_id=uid,
                    client_id="n",
                    audience="both",
                    kind="info",
                    title="t",
                    body="",
                    choices=[],
                    created_at=1.0,
                )
            )
        ).inserted_primary_key[0]
        key = (notice_coverage.c.notice_id, notice_coverage.c.student_id)
        row = {"notice_id": nid, "student_id": uid, "covered_at": 1.0}
        first = await insert_missing(conn, notice_coverage, [row], *key)
        again = await insert_missing(conn, notice_coverage, [row], *key)
    assert [tuple(r) for r in first] == [(nid, uid)] and again == []
