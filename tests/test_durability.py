"""Acknowledged means on disk: SQLite syncs every commit (synchronous=FULL), and concurrent
requests share a sync (group commit) without losing or mixing up anyone's work."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from clients.homeroom import RequestError
from realtime.config import ConfigError
from realtime.store import open_store
from realtime.transport.rest import HUB
from tests.conftest import Server, make_settings, start_on, stop_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """SQLite only: its synchronous pragma and the group commit are what is tested here
    (PostgreSQL keeps its default synchronous_commit=on)."""
    srv, _ = await start_on("sqlite", tmp_path)
    yield srv
    await stop_server(srv)


def chat_bodies(db: str) -> set[str]:
    """What another process reading the database file finds."""
    with contextlib.closing(sqlite3.connect(db)) as c:
        return {body for (body,) in c.execute("SELECT body FROM messages")}


async def test_sqlite_syncs_every_commit_by_default(server: Server) -> None:
    store = server.app[HUB].store
    async with store.read() as conn:
        level = (await conn.execute(text("PRAGMA synchronous"))).scalar()
        mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
    assert (level, mode) == (2, "wal")  # 2 is FULL


async def test_normal_is_a_setting_and_anything_else_is_refused(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/n.db", sqlite_synchronous="normal")
    try:
        async with store.read() as conn:
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1
    finally:
        await store.close()
    with pytest.raises(ConfigError):
        make_settings(tmp_path, sqlite_synchronous="off").validate()


async def test_concurrent_sends_are_all_acked_stored_and_share_syncs(server: Server) -> None:
    stream = f"class:{server.class_id}:students"
    group = server.app[HUB].store.group
    senders = [await server.client(u) for u in ("wanghao", "liming", "zhangwei")]
    commits0, txs0 = group.commits, group.transactions
    per = 40
    acks = await asyncio.gather(
        *(
            s.send_chat(stream, f"{i}-{n}", client_id=f"gc-{i}-{n}")
            for n in range(per)
            for i, s in enumerate(senders)
        )
    )
    assert len({a["id"] for a in acks}) == per * len(senders)
    assert sorted(a["seq"] for a in acks) == sorted({a["seq"] for a in acks})
    # Acknowledged means committed: read back through another connection of the file.
    db = server.settings.database_url.split(":///", 1)[1]
    stored = chat_bodies(db)
    assert {f"{i}-{n}" for n in range(per) for i in range(len(senders))} <= stored
    # And the 120 transactions took fewer syncs than transactions (they queued together).
    commits, txs = group.commits - commits0, group.transactions - txs0
    assert txs >= per * len(senders)
    assert 0 < commits < txs


async def test_a_refused_request_in_a_batch_undoes_only_itself(server: Server) -> None:
    stream = f"class:{server.class_id}:students"
    wang = await server.client("wanghao")
    mom = await server.client("wang_mom")  # a guardian may not write in the students' stream

    async def refused() -> str:
        with pytest.raises(RequestError) as err:
            await mom.send_chat(stream, "not mine to send")
        return err.value.code

    results = await asyncio.gather(
        *(wang.send_chat(stream, f"ok-{n}") for n in range(10)), refused(), refused()
    )
    assert results[-2:] == ["forbidden", "forbidden"]
    db = server.settings.database_url.split(":///", 1)[1]
    bodies = chat_bodies(db)
    assert {f"ok-{n}" for n in range(10)} <= bodies
    assert "not mine to send" not in bodies
