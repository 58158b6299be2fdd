"""A chunk of an upload appended at the committed offset (``PATCH /api/v1/uploads/{id}``).

Any node may take any chunk: the offset is the one committed in the database, and the bytes
before it are fetched from the parts in the blob store if this node lacks them
(realtime/actions/upload_parts.py). A chunk that is not the last is acknowledged once its bytes
are a part and the new offset is committed; the last one completes the upload
(realtime/actions/upload_finish.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from sqlalchemy import select

from realtime.actions import upload_cleanup, upload_finish, upload_parts
from realtime.actions.uploads import Files, at_offset, own, upload_view
from realtime.domain import attachments as rules
from realtime.domain import uploads as states
from realtime.domain.uploads import DELETED, OffsetMismatch
from realtime.errors import HomeroomError, bad_request, conflict, too_large
from realtime.hub import Hub
from realtime.storage import staging
from realtime.store.rows import UploadRow
from realtime.store.schema import uploads

# Bytes of a chunk held in memory before they are written (per upload in flight).
WRITE_BYTES = 1024 * 1024


async def append(
    hub: Hub,
    files: Files,
    user_id: int,
    upload_id: str,
    offset: int,
    length: int | None,
    body: AsyncIterator[bytes],
) -> dict[str, Any]:
    """Append one chunk at ``offset``. An interrupted chunk keeps the bytes that arrived."""
    if upload_id in files.busy:
        raise conflict("another part of this upload is being sent")
    files.busy.add(upload_id)
    try:
        row = await own(hub, user_id, upload_id)
        have = row.stored_bytes
        states.check_chunk(
            row.status, offset, have, length, row.size, files.settings.upload_chunk_max_bytes
        )
        path = files.staging.path(upload_id)
        await upload_parts.fill(files.blobs, upload_id, states.parts_of(row.meta), have, path)
        head_needed = min(rules.SNIFF_BYTES, row.size) if have == 0 else 0
        head = b""
        written = have
        cut = False
        # File writes go to a thread, a megabyte at a time: under write-back pressure the
        # kernel makes a writer wait (for a second, measured), and the loop must not.
        fh = await asyncio.to_thread(open, path, "ab")
        pending: list[bytes] = []
        buffered = 0
        try:
            try:
                async for chunk in body:
                    if written + len(chunk) > row.size:
                        raise too_large("more bytes than the upload declared")
                    pending.append(chunk)
                    buffered += len(chunk)
                    written += len(chunk)
                    if head_needed:
                        head += chunk[: head_needed - len(head)]
                        if len(head) >= head_needed:
                            head_needed = 0
                            states.check_head(head, row.size, files.limits)
                    if buffered >= WRITE_BYTES:
                        await asyncio.to_thread(staging.write, fh, pending)
                        pending, buffered = [], 0
            except (aiohttp.ClientPayloadError, ConnectionError, aiohttp.ClientConnectionError):
                # The connection dropped mid-chunk: what arrived is kept, the client
                # continues from there (GET tells it where).
                cut = True
            except HomeroomError:
                await asyncio.to_thread(staging.truncate, fh, have)
                raise
            # The last chunk's flush to disk runs beside the file's checks (upload_finish).
            complete = not cut and written == row.size
            await asyncio.to_thread(staging.write, fh, pending, not complete)
        finally:
            await asyncio.to_thread(fh.close)
        if cut or written < row.size:
            if written > have:
                await commit_part(hub, files, row, written)
            if cut:
                raise bad_request(f"the chunk was cut off; continue at byte {written}")
            return {"upload": upload_view(row, written)}
        try:
            return {"upload": await upload_finish.finish(hub, files, row)}
        except HomeroomError as exc:
            if exc.code == "unavailable" and written > have:
                # Processing failed, not the upload: keep the bytes, the client resends
                # the (empty) end to try again.
                await commit_part(hub, files, row, written)
            raise
    except HomeroomError as exc:
        if exc.code == "unsupported_type":
            await drop(hub, files, upload_id)
        raise
    finally:
        files.busy.discard(upload_id)


async def commit_part(hub: Hub, files: Files, row: UploadRow, written: int) -> None:
    """Store what this request brought as a part and commit the new offset; a request that
    lost a race with another node's (same upload, same offset) takes its bytes back."""
    path = files.staging.path(row.id)
    have = row.stored_bytes
    parts = states.parts_of(row.meta)
    part = None
    if files.parts:
        try:
            part = await upload_parts.store_range(
                files.blobs, row.id, path, files.staging.temp(".part"), have, written
            )
        except BaseException:
            await asyncio.to_thread(staging.cut, path, have)
            raise
        parts.append(part)
    # A crash here leaves the part stored and unlisted: upload_parts.sweep_orphans removes it.
    async with hub.store.transaction() as conn:
        res = await conn.execute(
            uploads.update()
            .where(at_offset(row.id, have))
            .values(stored_bytes=written, meta={**row.meta, "parts": parts})
        )
        won = res.rowcount == 1
        now = (
            await conn.execute(select(uploads.c.stored_bytes).where(uploads.c.id == row.id))
        ).scalar_one()
    if not won:
        await upload_parts.delete(files.blobs, row.id, [part] if part else [])
        await asyncio.to_thread(staging.cut, path, have)
        raise OffsetMismatch(int(now))


async def drop(hub: Hub, files: Files, upload_id: str) -> None:
    """An upload refused by its content: deleted, its bytes removed."""
    async with hub.store.transaction() as conn:
        meta = (
            await conn.execute(select(uploads.c.meta).where(uploads.c.id == upload_id))
        ).scalar_one()
        await conn.execute(
            uploads.update()
            .where(uploads.c.id == upload_id)
            .values(status=DELETED, deleted_at=hub.now())
        )
    await upload_cleanup.discard(files, upload_id, meta)
