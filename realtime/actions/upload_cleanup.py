"""Removing attachment bytes: stored files nothing refers to any more, an unfinished upload's
staging file and parts, and what a node that stopped mid-way left behind.

A deleted file's row keeps its blob keys until its bytes are removed (or found still used by
another file); only then are they cleared. So bytes whose removal failed (the store was down,
the node stopped between the commit and the removal) are not forgotten: the sweep finds every
deleted row that still names blobs and tries again (:func:`collect_released`).

Every node runs :func:`tidy` from the retention sweep (realtime/actions/retention.py); each
step is idempotent and safe beside other nodes doing the same and beside live uploads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from realtime.actions import attachments, blob_claims, upload_parts
from realtime.domain import uploads as states
from realtime.domain.uploads import DELETED, PART_GRACE_S, UPLOADING
from realtime.hub import Hub
from realtime.storage import blob_key
from realtime.store.schema import uploads

if TYPE_CHECKING:
    from realtime.actions.uploads import Files

log = logging.getLogger(__name__)

# Staging files (or deleted rows) checked against the database at once.
BATCH = 500


async def _collect(hub: Hub, files: Files, keys: list[str]) -> tuple[int, set[str]]:
    gone: int = 0
    failed: set[str] = set()
    for key in keys:
        try:
            # Check, remove and count the removal holding the key's lock: a file committing
            # the same bytes meanwhile either is seen here or sees the removal and stores them
            # again (realtime/actions/blob_claims.py).
            async with hub.store.transaction() as conn:
                await blob_claims.lock(conn, key)
                if await attachments.referenced(conn, key):
                    continue
                await files.blobs.delete(blob_key(key))
                await blob_claims.record_removal(conn, key, hub.now())
            gone += 1
        except Exception:
            log.exception("removing the blob %s failed; the sweep tries again", key)
            failed.add(key)
    return gone, failed


async def collect(hub: Hub, files: Files, keys: list[str]) -> int:
    """Delete the blobs among ``keys`` that no file refers to any more; returns how many went.

    Called once the files are committed deleted, so it never fails the request that deleted
    them: a removal that fails is logged and left to :func:`collect_released`."""
    return (await _collect(hub, files, keys))[0]


async def collect_released(hub: Hub, files: Files) -> int:
    """Remove the bytes of deleted files that are still there, and clear the rows' keys once
    that is done (or another file turns out to use them). Returns how many blobs went."""
    gone = 0
    while True:
        async with hub.store.read() as conn:
            rows = list(
                await conn.execute(
                    select(uploads.c.id, uploads.c.blob, uploads.c.preview, uploads.c.thumb)
                    .where(
                        uploads.c.status == DELETED,
                        or_(
                            uploads.c.blob.is_not(None),
                            uploads.c.preview.is_not(None),
                            uploads.c.thumb.is_not(None),
                        ),
                    )
                    .limit(BATCH)
                )
            )
        if not rows:
            return gone
        keys = sorted({k for r in rows for k in (r.blob, r.preview, r.thumb) if k})
        n, failed = await _collect(hub, files, keys)
        gone += n
        done = [r.id for r in rows if not {r.blob, r.preview, r.thumb} & failed]
        if done:
            async with hub.store.transaction() as conn:
                await conn.execute(
                    uploads.update()
                    .where(uploads.c.id.in_(done), uploads.c.status == DELETED)
                    .values(blob=None, preview=None, thumb=None)
                )
        if len(done) < len(rows) or len(rows) < BATCH:
            return gone  # the rest waits for the next sweep (the store is failing)


async def discard(files: Files, upload_id: str, meta: dict[str, Any] | None) -> None:
    """Remove what an unfinished or dropped upload left: its staging file here and its
    parts in the shared store."""
    await asyncio.to_thread(files.staging.path(upload_id).unlink, True)
    await upload_parts.delete(files.blobs, upload_id, states.parts_of(meta))


async def tidy_staging(hub: Hub, files: Files) -> int:
    """Remove this node's staging files of uploads finished or dropped (perhaps by another
    node: a node keeps the chunks it took until then); returns how many went."""
    names = await asyncio.to_thread(files.staging.names)
    gone = 0
    for i in range(0, len(names), BATCH):
        batch = names[i : i + BATCH]
        async with hub.store.read() as conn:
            live = {
                r.id
                for r in await conn.execute(
                    select(uploads.c.id).where(
                        uploads.c.id.in_(batch),
                        or_(uploads.c.status == UPLOADING, uploads.c.pending.is_(True)),
                    )
                )
            }
        for name in batch:
            if name not in live:
                await asyncio.to_thread(files.staging.path(name).unlink, True)
                gone += 1
    return gone


async def tidy(hub: Hub, files: Files, now: float, grace_s: float = PART_GRACE_S) -> dict[str, int]:
    """What this node's sweep removes besides expired files: bytes of deleted files whose
    removal failed, staging files of uploads that ended, work files and parts a stopped process
    left (older than ``grace_s``), and removals of bytes remembered long enough
    (realtime/actions/blob_claims.py)."""
    return {
        "released": await collect_released(hub, files),
        "staging": await tidy_staging(hub, files),
        "temps": await asyncio.to_thread(files.staging.drop_old_temps, now - grace_s),
        "parts": await upload_parts.sweep_orphans(files.blobs, hub.store, now, grace_s),
        "removals": await blob_claims.prune(hub.store, now),
    }
