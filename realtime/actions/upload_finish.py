"""The last chunk of an upload: its content checked, a photo's thumbnail made, the file stored
and the upload committed ``ready`` before the request is answered.

A photo is acknowledged with its thumbnail; its stripped original and preview follow
(realtime/actions/pending_photos.py), and meanwhile its source stays in the blob store as a part
so that another node can finish it if this one stops.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select

from realtime.actions import blob_claims, upload_parts
from realtime.actions.uploads import Files, at_offset, upload_view
from realtime.domain import attachments as rules
from realtime.domain import uploads as states
from realtime.domain.attachments import Kind
from realtime.domain.uploads import READY, OffsetMismatch
from realtime.hub import Hub
from realtime.storage import staging
from realtime.storage.base import fsync_path
from realtime.store.db import DbConnection
from realtime.store.rows import UploadRow, typed
from realtime.store.schema import uploads


async def finish(hub: Hub, files: Files, row: UploadRow) -> dict[str, Any]:
    path = files.staging.path(row.id)
    # The file goes to disk while it is checked and its thumbnail made (50 photos at once
    # are 150 MB to flush); nothing is stored or committed before it is there. A hard link to
    # it, the one handed to the blob store, is made first: the flush then covers the link too
    # (made after, it would cost a journal commit of its own in the store's sync).
    linked = files.staging.temp(".blob")
    flushed = asyncio.ensure_future(asyncio.to_thread(_link_and_flush, path, linked))
    try:
        return await _finish_flushing(hub, files, row, flushed, linked)
    finally:
        await asyncio.gather(flushed, return_exceptions=True)
        await asyncio.to_thread(linked.unlink, True)


def _link_and_flush(path: Path, linked: Path) -> None:
    os.link(path, linked)
    fsync_path(path)


async def _finish_flushing(
    hub: Hub, files: Files, row: UploadRow, flushed: asyncio.Future[None], linked: Path
) -> dict[str, Any]:
    path = files.staging.path(row.id)
    ftype = rules.sniff(await asyncio.to_thread(staging.head, path, rules.SNIFF_BYTES))
    if ftype is None:
        raise rules.unsupported()
    meta: dict[str, Any] = {}
    if not rules.settled_by_head(ftype):  # a container to parse: in a worker process
        ftype, meta = await files.workers.identify(path, files.settings.voice_max_s)
    rules.check_matches_name(ftype, row.name)
    rules.check_kind_size(ftype, row.size, files.limits)
    values: dict[str, Any] = {"kind": ftype.kind.value, "mime": ftype.mime}
    # The stored bytes' files are kept until the commit stands: identical bytes removed by
    # the collector meanwhile are stored again from them (realtime/actions/blob_claims.py).
    # Then they go (the staging file too: the store may hold it as a hard link).
    claim = blob_claims.Claim(files.blobs, files.staging)
    try:
        if ftype.kind is Kind.IMAGE:
            thumb = files.staging.temp(".jpg")
            try:
                meta.update(await files.workers.thumbnail(path, thumb))
            except BaseException:
                thumb.unlink(missing_ok=True)
                raise
            values["thumb"] = await claim.store(thumb)
            await flushed
            # The photo's source stays in the shared store until its stripped original and
            # preview are made, by this node or (if this one stops) another.
            source = None
            if files.parts:
                source = await upload_parts.store_whole(
                    files.blobs, row.id, path, files.staging.temp(".src")
                )
            meta["parts"] = [source] if source else []
            values["stored_bytes"] = 0
            values["pending"] = True
        else:
            source = None
            await flushed
            values["blob"] = await claim.store(path, linked)
            values["stored_bytes"] = row.size
        values.update(meta=meta, status=READY, completed_at=hub.now())
        won, done = await claim.commit(hub, _committing(row, values))
    finally:
        await claim.release()
    if not won:
        if source is not None:
            await upload_parts.delete(files.blobs, row.id, [source])
        if done.status == READY:
            return upload_view(done)
        raise OffsetMismatch(done.stored_bytes)
    await upload_parts.delete(files.blobs, row.id, states.parts_of(row.meta))
    if values.get("pending"):
        files.photos.start(hub, files, row.id)
    return upload_view(done)


def _committing(
    row: UploadRow, values: dict[str, Any]
) -> blob_claims.Attempt[tuple[bool, UploadRow]]:
    async def attempt(
        conn: DbConnection, locks: list[Any], removals: Any
    ) -> tuple[tuple[bool, UploadRow], int | None]:
        # Only from the offset this request started at: another node may have finished
        # the same upload meanwhile (a client that sent its last chunk twice). Committing,
        # it takes its bytes' locks (PostgreSQL: in the RETURNING, no statement more).
        res = await conn.execute(
            uploads.update()
            .where(at_offset(row.id, row.stored_bytes))
            .values(**values)
            .returning(uploads.c.id, *locks)
        )
        won = res.first() is not None
        # After the locks: any removal of the bytes since they were stored is counted here.
        found = (await conn.execute(select(uploads, removals).where(uploads.c.id == row.id))).one()
        done = typed(UploadRow, found[:-1])
        return (won, done), (int(found[-1]) if won else None)

    return attempt
