"""Uploads: created, sent in chunks (resumable at any byte), checked by content, processed.

The protocol is tus-like (docs/protocol.md, "Attachments"): ``POST`` declares the name and the
size, each ``PATCH`` appends bytes at ``Upload-Offset``, ``GET`` tells the offset reached so an
interrupted upload continues where it stopped. The bytes go to a staging file as they arrive
(never a whole file in memory); the last chunk's request checks the content, makes the
thumbnail and stores the file before it is answered.

This module holds what one node keeps for attachment bytes (:class:`Files`) and the upload's
creation, status and cancellation. The rest, one concept a module: ``upload_chunks`` (a chunk
appended), ``upload_parts`` (received bytes shared through the blob store), ``upload_finish``
(the last chunk: check, thumbnail, store), ``pending_photos`` (a photo's stripped original and
preview, after the acknowledgement), ``upload_cleanup`` (removing bytes); the rules without I/O
in ``realtime/domain/uploads.py`` and ``realtime/domain/attachments.py``.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select

from realtime.actions import attachments, upload_cleanup
from realtime.actions.pending_photos import PendingPhotos
from realtime.attachments.workers import MediaWorkers
from realtime.config import Settings
from realtime.domain import attachments as rules
from realtime.domain import uploads as states
from realtime.domain.attachments import Limits
from realtime.domain.uploads import DELETED, READY, UPLOADING
from realtime.errors import conflict, not_found
from realtime.hub import Hub
from realtime.schemas import UploadCreate
from realtime.storage import BlobStore, DirectoryStore, open_blob_store
from realtime.storage.staging import Staging
from realtime.store.rows import UploadRow, typed, typed_or_none
from realtime.store.schema import schools, uploads


class Files:
    """Everything about attachment bytes one node holds: the blob store, the staging directory,
    the image workers and the photos being finished in the background."""

    def __init__(self, settings: Settings, blobs: BlobStore | None = None) -> None:
        self.settings = settings
        self.blobs = blobs or open_blob_store(settings)
        root = Path(settings.storage_dir)
        self.staging = Staging(root)
        self.workers = MediaWorkers(settings.media_workers)
        self.limits = Limits(
            settings.upload_max_image_bytes,
            settings.upload_max_document_bytes,
            settings.upload_max_audio_bytes,
            settings.upload_max_video_bytes,
        )
        # Uploads a request of this node is appending to (one chunk at a time per upload).
        self.busy: set[str] = set()
        self.photos = PendingPhotos()
        # Whether received bytes are also kept as parts in the blob store (so that any node
        # can continue an upload, or finish a photo). Not when the store is a directory inside
        # storage_dir: the staging files are then exactly as shared and as durable as it, and
        # a part would be a second copy on the same disk.
        self.parts = not (
            isinstance(self.blobs, DirectoryStore) and self.blobs.root.resolve() == root.resolve()
        )

    async def close(self) -> None:
        await self.photos.close()
        await self.workers.close()
        await self.blobs.close()


def upload_view(row: UploadRow, offset: int | None = None) -> dict[str, Any]:
    view = {
        "id": row.id,
        "name": row.name,
        "size": row.size,
        "status": row.status,
        "offset": states.offset(row.status, row.size, offset or 0),
    }
    if row.status == READY:
        view["attachment"] = attachments.attachment_view(row)
    return view


async def create(
    hub: Hub, files: Files, user_id: int, school_id: int, req: UploadCreate
) -> dict[str, Any]:
    name = rules.check_name(req.name)
    rules.check_declared_size(req.size, files.limits)
    hub.check_rate(user_id, "upload")
    upload_id = secrets.token_urlsafe(16)
    async with hub.store.transaction() as conn:
        # The school's row is locked (PostgreSQL) so two uploads cannot both take the last
        # bytes of the quota.
        school = (
            await conn.execute(
                select(schools.c.storage_quota_bytes)
                .where(schools.c.id == school_id)
                .with_for_update()
            )
        ).one()
        quota = school.storage_quota_bytes or files.settings.school_quota_bytes
        used = await used_bytes(conn, school_id)
        rules.check_quota(used, req.size, quota)
        await conn.execute(
            uploads.insert().values(
                id=upload_id,
                school_id=school_id,
                owner_id=user_id,
                name=name,
                size=req.size,
                stored_bytes=0,
                status=UPLOADING,
                pending=False,
                meta={},
                created_at=hub.now(),
            )
        )
        row = typed(
            UploadRow,
            (await conn.execute(select(uploads).where(uploads.c.id == upload_id))).one(),
        )
    await asyncio.to_thread(files.staging.path(upload_id).touch)
    return {"upload": {**upload_view(row, 0), "chunk_max": files.settings.upload_chunk_max_bytes}}


async def own(hub: Hub, user_id: int, upload_id: str) -> UploadRow:
    """The actor's own upload (not deleted), or not_found."""
    async with hub.store.read() as conn:
        row = typed_or_none(
            UploadRow,
            (await conn.execute(select(uploads).where(uploads.c.id == upload_id))).first(),
        )
    if row is None or row.owner_id != user_id or row.status == DELETED:
        raise not_found("no such upload")
    return row


async def status(hub: Hub, user_id: int, upload_id: str) -> dict[str, Any]:
    row = await own(hub, user_id, upload_id)
    # While uploading, stored_bytes is the offset committed (every node agrees on it).
    return {"upload": upload_view(row, row.stored_bytes)}


async def cancel(hub: Hub, files: Files, user_id: int, upload_id: str) -> dict[str, Any]:
    row = await own(hub, user_id, upload_id)
    if row.carrier is not None:
        raise conflict("this file is attached; delete the message instead")
    async with hub.store.transaction() as conn:
        await conn.execute(
            uploads.update()
            .where(uploads.c.id == upload_id, uploads.c.carrier.is_(None))
            .values(status=DELETED, deleted_at=hub.now())
        )
    await upload_cleanup.discard(files, upload_id, row.meta)
    await upload_cleanup.collect(hub, files, [k for k in (row.blob, row.preview, row.thumb) if k])
    return {"cancelled": upload_id}


def at_offset(upload_id: str, committed: int) -> ColumnElement[bool]:
    """The compare-and-set of every change to an unfinished upload: still uploading, and still
    at the offset the request started from (another node may have moved it meanwhile)."""
    return and_(
        uploads.c.id == upload_id,
        uploads.c.status == UPLOADING,
        uploads.c.stored_bytes == committed,
    )


async def used_bytes(conn: Any, school_id: int) -> int:
    """Bytes of a school's quota taken: files kept plus uploads in progress (declared size)."""
    total = (
        await conn.execute(
            select(func.coalesce(func.sum(uploads.c.size), 0)).where(
                uploads.c.school_id == school_id, uploads.c.status != DELETED
            )
        )
    ).scalar_one()
    return int(total)
