"""Bytes shared by files with the same content, stored by one and removed by another.

A stored file's bytes are a blob named by their SHA-256 (realtime/storage/base.py), so the same
photo sent twice is stored once. The collector (realtime/actions/upload_cleanup.py) removes a
blob once no file that is not deleted uses it; a file being finished stores its bytes first
(finding the blob there, it writes nothing) and commits the row that names it after. Left alone
the two race (issue #15): the collector finds no file using the key, an identical file stores
(skipped: present) and commits, then the delete lands, and the acknowledged file is gone.

Closed thus, on both databases and both blob stores:

- The collector, per key, in one transaction: takes the key's lock, checks that no file uses
  it, removes the bytes, and counts the removal in ``blob_removals`` (``gen`` + 1); then
  commits, releasing the lock.
- A file stores its bytes keeping its own file (a hard link is handed to the store), then
  commits in a transaction that takes its keys' locks and reads their removal count. A count
  it has not seen means the bytes may have gone after it stored them: the transaction is rolled
  back, the bytes stored again from the kept file, and the commit tried again (it stands only
  if the count has not moved since). Nothing is ever committed naming bytes that are not there.

Why that holds: once the file's transaction holds the lock, a collector of the key has either
finished (bytes removed *and* removal counted, committed, seen by the next statement) or will
check after the file's commit and find it. PostgreSQL: the lock is
``pg_advisory_xact_lock`` on the key's first 64 bits, taken in the ``RETURNING`` of the
file's ``UPDATE`` and the count read as a column of the statement after it, so the common path
costs no round trip more. SQLite: one writer, and every transaction and read on the node runs
in turn (store/groupcommit.py), so the collector's transaction holds the others off while it
removes the bytes; no lock is needed.

Removal rows are pruned after ``KEEP_S``: a file whose bytes were stored more than that before
its commit (both happen within one request or one photo's finishing) would not see one.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from realtime.errors import HomeroomError
from realtime.hub import Hub
from realtime.storage import BlobStore, blob_key
from realtime.storage.base import sha256_file
from realtime.storage.staging import Staging
from realtime.store import Store
from realtime.store.db import DbConnection
from realtime.store.schema import blob_removals

T = TypeVar("T")

# How long a removal is remembered (see the module docstring).
KEEP_S = 24 * 3600.0

# Commits tried before giving up (each retry means the same bytes were removed once more
# meanwhile: a file deleted and sent again, over and over).
TRIES = 5


def lock_id(key: str) -> int:
    """The advisory lock of a content key: its first 64 bits, as PostgreSQL's signed bigint."""
    return int.from_bytes(bytes.fromhex(key[:16]), "big", signed=True)


def locks(dialect: str, keys: list[str]) -> list[ColumnElement[Any]]:
    """Expressions taking the keys' locks (in one order: no deadlock between two files), to
    put in the ``RETURNING`` of the statement that commits the file. None on SQLite."""
    if dialect != "postgresql":
        return []
    return [
        func.pg_advisory_xact_lock(lock_id(k)).label(f"lock_{i}")
        for i, k in enumerate(sorted(set(keys)))
    ]


async def lock(conn: DbConnection, key: str) -> None:
    """Take the key's lock until the transaction ends (PostgreSQL; SQLite has one writer)."""
    if conn.dialect_name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(lock_id(key))))


def removals(keys: list[str]) -> ColumnElement[Any]:
    """How many times the keys' bytes have been removed (a sum of counts that only grow: it
    moves whenever one does); 0 for never. A column for a statement after the locks."""
    if not keys:
        return literal(0)
    return (
        select(func.coalesce(func.sum(blob_removals.c.gen), 0))
        .where(blob_removals.c.key.in_(sorted(set(keys))))
        .scalar_subquery()
    )


async def record_removal(conn: DbConnection, key: str, now: float) -> None:
    """Count a removal of the key's bytes (in the collector's transaction, holding the lock)."""
    insert = postgresql.insert if conn.dialect_name == "postgresql" else sqlite.insert
    await conn.execute(
        insert(blob_removals)
        .values(key=key, gen=1, removed_at=now)
        .on_conflict_do_update(
            index_elements=[blob_removals.c.key],
            set_={"gen": blob_removals.c.gen + 1, "removed_at": now},
        )
    )


async def prune(store: Store, now: float) -> int:
    """Forget removals older than ``KEEP_S``; returns how many."""
    async with store.transaction() as conn:
        res = await conn.execute(
            delete(blob_removals).where(blob_removals.c.removed_at < now - KEEP_S)
        )
    return int(res.rowcount or 0)


class _Removed(Exception):
    def __init__(self, count: int) -> None:
        super().__init__("bytes of this file were removed after they were stored")
        self.count = count


# What a commit attempt runs in its transaction, given the lock expressions and the removal
# count column: its result, and the count it read (None if it committed nothing naming the
# keys, e.g. another node had finished the same upload).
Attempt = Callable[
    [DbConnection, list[ColumnElement[Any]], ColumnElement[Any]], Awaitable[tuple[T, int | None]]
]


class Claim:
    """The bytes one commit will name: stored by content, each from a file kept until
    :meth:`release`, so that they can be stored again if removed meanwhile."""

    def __init__(self, blobs: BlobStore, staging: Staging) -> None:
        self.blobs = blobs
        self.staging = staging
        self.kept: dict[str, Path] = {}

    async def store(self, path: Path, linked: Path | None = None) -> str:
        """Store the file at ``path`` (kept) under its SHA-256; returns the digest.

        ``linked``: a hard link to it made already, handed to the store (made before the file
        was flushed, the link costs the flush nothing: the store's own sync finds it clean)."""
        if linked is None:
            linked = self.staging.temp(".blob")
            digest = await asyncio.to_thread(_digest_and_link, path, linked)
        else:
            digest = await asyncio.to_thread(sha256_file, path)
        self.kept[digest] = path
        await self._put(digest, linked)
        return digest

    async def _put(self, digest: str, tmp: Path) -> None:
        # The store takes a hard link (moves or uploads it, then removes it): no copy, and the
        # kept file stays.
        try:
            await self.blobs.put_file(blob_key(digest), tmp)
        except BaseException:
            await asyncio.to_thread(tmp.unlink, True)
            raise

    async def _put_again(self, digest: str) -> None:
        tmp = self.staging.temp(".blob")
        await asyncio.to_thread(os.link, self.kept[digest], tmp)
        await self._put(digest, tmp)

    async def commit(self, hub: Hub, attempt: Attempt[T]) -> T:
        """Run ``attempt`` in a transaction until it stands with every kept key's bytes there."""
        keys = sorted(self.kept)
        seen = 0
        for _ in range(TRIES):
            try:
                async with hub.store.transaction() as conn:
                    result, count = await attempt(
                        conn, locks(conn.dialect_name, keys), removals(keys)
                    )
                    if count is not None and int(count) != seen:
                        raise _Removed(int(count))
                return result
            except _Removed as removed:  # rolled back: store the bytes again, then retry
                seen = removed.count
                for digest in keys:
                    await self._put_again(digest)
        raise HomeroomError(
            "unavailable", "the file's bytes kept being removed while it was stored; send it again"
        )

    async def release(self) -> None:
        """Remove the kept files."""
        await asyncio.to_thread(_unlink_all, list(self.kept.values()))
        self.kept.clear()


def _digest_and_link(path: Path, tmp: Path) -> str:
    """The file's SHA-256, and a hard link to it at ``tmp`` to hand to the store."""
    digest = sha256_file(path)
    os.link(path, tmp)
    return digest


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
