"""The received bytes of an unfinished upload, kept as parts in the blob store.

A node writes an upload's chunks to a staging file of its own (``storage_dir/staging``), but a
chunk is acknowledged only once its bytes are also a *part* in the blob store, which every node
shares (S3, or a shared directory), and the offset reached is committed to the database
(``uploads.stored_bytes``, with the parts listed in ``uploads.meta["parts"]``). So an upload
started on one node continues on any other: that node rebuilds its staging file from the parts
(:func:`fill`) and appends the next chunk. A node's staging file is a cache of the committed
prefix; bytes beyond the committed offset (a request that lost the race, a crash before the
commit) are cut off before anything is appended.

A photo's whole source file is kept as one part from its acknowledgement until its stripped
original and preview are made, so another node can finish the photo if this one stops.

Part keys are ``parts/<upload id>/<start>-<token>`` (realtime/domain/uploads.py): never a SHA-256
key, so a part is never taken for (or removed as) a stored file. The random token makes two
nodes writing the same range at once write two objects; the one whose offset is not committed
removes its own. A part stored by a node that stopped before committing it is removed by the
sweep (:func:`sweep_orphans`, every node, after ``PART_GRACE_S``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from sqlalchemy import select

from realtime.domain.uploads import (
    PART_GRACE_S,
    PARTS_PREFIX,
    Part,
    live_parts,
    new_part,
    orphan_parts,
    parse_part_key,
    part_key,
)
from realtime.storage import BlobStore, staging
from realtime.store import Store
from realtime.store.schema import uploads

log = logging.getLogger(__name__)

COPY_BYTES = 1024 * 1024
# Uploads whose rows are read at once by the sweep.
SWEEP_BATCH = 500


def _copy_range(src: Path, dest: Path, start: int, end: int) -> None:
    with open(src, "rb") as fi, open(dest, "wb") as fo:
        fi.seek(start)
        left = end - start
        while left > 0:
            block = fi.read(min(COPY_BYTES, left))
            if not block:
                raise OSError(f"{src} ends before byte {end}")
            fo.write(block)
            left -= len(block)
        fo.flush()
        os.fsync(fo.fileno())


async def store_range(
    blobs: BlobStore, upload_id: str, staged: Path, tmp: Path, start: int, end: int
) -> Part:
    """Store bytes ``start``..``end`` of the staging file as a new part; returns it."""
    part = new_part(start)
    await asyncio.to_thread(_copy_range, staged, tmp, start, end)
    try:
        await blobs.put_file(part_key(upload_id, part), tmp)
    finally:
        await asyncio.to_thread(tmp.unlink, True)
    return part


async def store_whole(blobs: BlobStore, upload_id: str, staged: Path, tmp: Path) -> Part:
    """Store the whole staging file as one part (a hard link handed to the store, no copy)."""
    part = new_part(0)
    await asyncio.to_thread(os.link, staged, tmp)
    try:
        await blobs.put_file(part_key(upload_id, part), tmp)
    finally:
        await asyncio.to_thread(tmp.unlink, True)
    return part


async def fill(
    blobs: BlobStore, upload_id: str, parts: list[Part], committed: int, path: Path
) -> None:
    """Make the staging file at ``path`` hold exactly the committed ``committed`` bytes: cut what
    lies beyond, fetch from the parts what this node does not have."""
    have = await asyncio.to_thread(staging.size, path)
    if have > committed:
        await asyncio.to_thread(staging.cut, path, committed)
        return
    if have == committed:
        return
    ends = [p[0] for p in parts[1:]] + [committed]
    for (start, token), end in zip(parts, ends, strict=True):
        if end <= have:
            continue
        block: list[bytes] = []
        held = 0
        async for chunk in blobs.read(part_key(upload_id, (start, token)), have - start):
            block.append(chunk)
            held += len(chunk)
            if held >= COPY_BYTES:
                await asyncio.to_thread(staging.append, path, block, False)
                block, held = [], 0
        await asyncio.to_thread(staging.append, path, block, True)
        have = end
    if await asyncio.to_thread(staging.size, path) != committed:
        raise OSError(f"upload {upload_id}: its parts do not add up to {committed} bytes")


async def delete(blobs: BlobStore, upload_id: str, parts: list[Part]) -> None:
    """Remove parts (those already gone are no error). A part that cannot be removed now (the
    store is down) is logged and left: it is never read again, and the sweep removes it."""
    for part in parts:
        try:
            await blobs.delete(part_key(upload_id, part))
        except Exception:
            log.exception("removing part %s of upload %s failed", part, upload_id)


async def sweep_orphans(
    blobs: BlobStore, store: Store, now: float, grace_s: float = PART_GRACE_S
) -> int:
    """Remove the parts no upload needs that are older than ``grace_s``: stored by a node that
    stopped before committing them, or left by a removal that failed. Safe on every node at
    once and beside live uploads (a part is removed only if old *and* unlisted). Returns how
    many went."""
    listed = [item async for item in blobs.scan(PARTS_PREFIX)]
    old = [(key, t) for key, t in listed if t <= now - grace_s]
    ids = sorted({named[0] for key, _t in old if (named := parse_part_key(key))})
    live: dict[str, list[Part]] = {}
    for i in range(0, len(ids), SWEEP_BATCH):
        async with store.read() as conn:
            rows = await conn.execute(
                select(uploads.c.id, uploads.c.status, uploads.c.pending, uploads.c.meta).where(
                    uploads.c.id.in_(ids[i : i + SWEEP_BATCH])
                )
            )
            for r in rows:
                live[r.id] = live_parts(r.status, bool(r.pending), r.meta)
    gone = 0
    for key in orphan_parts(old, live, now, grace_s):
        try:
            await blobs.delete(key)
            gone += 1
        except Exception:
            log.exception("removing the orphan part %s failed", key)
    if gone:
        log.info("removed %d parts no upload needed", gone)
    return gone
