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

Part keys are ``parts/<upload id>/<start>-<token>``: never a SHA-256 key, so a part is never
taken for (or removed as) a stored file. The random token makes two nodes writing the same
range at once write two objects; the one whose offset is not committed removes its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from realtime.storage import BlobStore

log = logging.getLogger(__name__)

# A part as recorded in uploads.meta["parts"]: [start byte, token]; it ends where the next
# part starts (the last one at uploads.stored_bytes, or the file's size once complete).
Part = tuple[int, str]
COPY_BYTES = 1024 * 1024


def part_key(upload_id: str, part: Part) -> str:
    return f"parts/{upload_id}/{part[0]}-{part[1]}"


def parts_of(meta: dict[str, Any] | None) -> list[Part]:
    return [(int(p[0]), str(p[1])) for p in (meta or {}).get("parts", [])]


def new_part(start: int) -> Part:
    return (start, secrets.token_hex(8))


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
    blobs: BlobStore, upload_id: str, staging: Path, tmp: Path, start: int, end: int
) -> Part:
    """Store bytes ``start``..``end`` of the staging file as a new part; returns it."""
    part = new_part(start)
    await asyncio.to_thread(_copy_range, staging, tmp, start, end)
    try:
        await blobs.put_file(part_key(upload_id, part), tmp)
    finally:
        await asyncio.to_thread(tmp.unlink, True)
    return part


async def store_whole(blobs: BlobStore, upload_id: str, staging: Path, tmp: Path) -> Part:
    """Store the whole staging file as one part (a hard link handed to the store, no copy)."""
    part = new_part(0)
    await asyncio.to_thread(os.link, staging, tmp)
    try:
        await blobs.put_file(part_key(upload_id, part), tmp)
    finally:
        await asyncio.to_thread(tmp.unlink, True)
    return part


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def cut(path: Path, size: int) -> None:
    with open(path, "ab") as fh:
        fh.truncate(size)


def _append(path: Path, data: list[bytes], sync: bool) -> None:
    with open(path, "ab") as fh:
        for block in data:
            fh.write(block)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())


async def fill(
    blobs: BlobStore, upload_id: str, parts: list[Part], committed: int, path: Path
) -> None:
    """Make the staging file at ``path`` hold exactly the committed ``committed`` bytes: cut what
    lies beyond, fetch from the parts what this node does not have."""
    have = await asyncio.to_thread(_size, path)
    if have > committed:
        await asyncio.to_thread(cut, path, committed)
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
                await asyncio.to_thread(_append, path, block, False)
                block, held = [], 0
        await asyncio.to_thread(_append, path, block, True)
        have = end
    if await asyncio.to_thread(_size, path) != committed:
        raise OSError(f"upload {upload_id}: its parts do not add up to {committed} bytes")


async def delete(blobs: BlobStore, upload_id: str, parts: list[Part]) -> None:
    """Remove parts (those already gone are no error). A part that cannot be removed now (the
    store is down) is logged and left: it is never read again, only taking space."""
    for part in parts:
        try:
            await blobs.delete(part_key(upload_id, part))
        except Exception:
            log.exception("removing part %s of upload %s failed", part, upload_id)
