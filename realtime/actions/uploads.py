"""Uploads: created, sent in chunks (resumable at any byte), checked by content, processed.

The protocol is tus-like (docs/protocol.md, "Attachments"): ``POST`` declares the name and the
size, each ``PATCH`` appends bytes at ``Upload-Offset``, ``GET`` tells the offset reached so an
interrupted upload continues where it stopped. The bytes go to a staging file as they arrive
(never a whole file in memory); the last chunk's request checks the content, makes the
thumbnail and stores the file before it is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, or_, select

from realtime.actions import attachments, upload_parts
from realtime.attachments.workers import MediaWorkers
from realtime.config import Settings
from realtime.domain import attachments as rules
from realtime.domain.attachments import Kind, Limits
from realtime.errors import HomeroomError, bad_request, conflict, not_found, too_large
from realtime.hub import Hub
from realtime.schemas import UploadCreate
from realtime.storage import BlobStore, DirectoryStore, blob_key, open_blob_store
from realtime.storage.base import sha256_file
from realtime.store.rows import UploadRow, typed, typed_or_none
from realtime.store.schema import schools, uploads

log = logging.getLogger(__name__)

# Statuses of an upload.
UPLOADING, READY, DELETED = "uploading", "ready", "deleted"


# Bytes of a chunk held in memory before they are written (per upload in flight).
WRITE_BYTES = 1024 * 1024
# A photo acknowledged this long ago and still without its original and preview is finished
# by whichever node's sweep finds it (the node that took it is taken for stopped).
ADOPT_AFTER_S = 600.0


def _write(fh: Any, parts: list[bytes], sync: bool = False) -> None:
    for part in parts:
        fh.write(part)
    if sync:
        fh.flush()
        os.fsync(fh.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(rules.SNIFF_BYTES)


def _truncate(fh: Any, size: int) -> None:
    fh.flush()
    fh.truncate(size)


class OffsetMismatch(HomeroomError):
    def __init__(self, offset: int) -> None:
        super().__init__("conflict", f"this upload continues at byte {offset}")
        self.offset = offset


def upload_view(row: UploadRow, offset: int | None = None) -> dict[str, Any]:
    view = {
        "id": row.id,
        "name": row.name,
        "size": row.size,
        "status": row.status,
        "offset": row.size if row.status == READY else (offset or 0),
    }
    if row.status == READY:
        view["attachment"] = attachments.attachment_view(row)
    return view


class Files:
    """Everything about attachment bytes one node holds: the blob store, the staging directory,
    the image workers and the photos being finished in the background."""

    def __init__(self, settings: Settings, blobs: BlobStore | None = None) -> None:
        self.settings = settings
        self.blobs = blobs or open_blob_store(settings)
        root = Path(settings.storage_dir)
        self.staging = root / "staging"
        self.tmp = root / "tmp"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.workers = MediaWorkers(settings.media_workers)
        self.limits = Limits(
            settings.upload_max_image_bytes,
            settings.upload_max_document_bytes,
            settings.upload_max_audio_bytes,
            settings.upload_max_video_bytes,
        )
        self._busy: set[str] = set()
        self.later: dict[str, asyncio.Task[None]] = {}
        # Whether received bytes are also kept as parts in the blob store (so that any node
        # can continue an upload, or finish a photo). Not when the store is a directory inside
        # storage_dir: the staging files are then exactly as shared and as durable as it, and
        # a part would be a second copy on the same disk.
        self.parts = not (
            isinstance(self.blobs, DirectoryStore) and self.blobs.root.resolve() == root.resolve()
        )

    async def close(self) -> None:
        for task in list(self.later.values()):
            task.cancel()
        for task in list(self.later.values()):
            with contextlib.suppress(BaseException):
                await task
        await self.workers.close()
        await self.blobs.close()

    def _temp(self, suffix: str) -> Path:
        return self.tmp / (secrets.token_hex(12) + suffix)

    # --- create, status, cancel ---------------------------------------------------------------

    async def create(
        self, hub: Hub, user_id: int, school_id: int, req: UploadCreate
    ) -> dict[str, Any]:
        name = rules.check_name(req.name)
        rules.check_declared_size(req.size, self.limits)
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
            quota = school.storage_quota_bytes or self.settings.school_quota_bytes
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
        await asyncio.to_thread((self.staging / upload_id).touch)
        return {
            "upload": {**upload_view(row, 0), "chunk_max": self.settings.upload_chunk_max_bytes}
        }

    async def _own(self, hub: Hub, user_id: int, upload_id: str) -> UploadRow:
        async with hub.store.read() as conn:
            row = typed_or_none(
                UploadRow,
                (await conn.execute(select(uploads).where(uploads.c.id == upload_id))).first(),
            )
        if row is None or row.owner_id != user_id or row.status == DELETED:
            raise not_found("no such upload")
        return row

    async def status(self, hub: Hub, user_id: int, upload_id: str) -> dict[str, Any]:
        row = await self._own(hub, user_id, upload_id)
        # While uploading, stored_bytes is the offset committed (every node agrees on it).
        return {"upload": upload_view(row, row.stored_bytes)}

    async def cancel(self, hub: Hub, user_id: int, upload_id: str) -> dict[str, Any]:
        row = await self._own(hub, user_id, upload_id)
        if row.carrier is not None:
            raise conflict("this file is attached; delete the message instead")
        async with hub.store.transaction() as conn:
            await conn.execute(
                uploads.update()
                .where(uploads.c.id == upload_id, uploads.c.carrier.is_(None))
                .values(status=DELETED, deleted_at=hub.now())
            )
        await self.discard(upload_id, row.meta)
        await self.collect(hub, [k for k in (row.blob, row.preview, row.thumb) if k])
        return {"cancelled": upload_id}

    # --- chunks ----------------------------------------------------------------------------

    async def append(
        self,
        hub: Hub,
        user_id: int,
        upload_id: str,
        offset: int,
        length: int | None,
        body: AsyncIterator[bytes],
    ) -> dict[str, Any]:
        """Append one chunk at ``offset``. An interrupted chunk keeps the bytes that arrived.

        Any node may take any chunk: the offset is the one committed in the database, and the
        bytes before it are fetched from the parts in the blob store if this node lacks them
        (realtime/actions/upload_parts.py)."""
        if upload_id in self._busy:
            raise conflict("another part of this upload is being sent")
        self._busy.add(upload_id)
        try:
            row = await self._own(hub, user_id, upload_id)
            if row.status != UPLOADING:
                raise conflict("this upload is complete")
            path = self.staging / upload_id
            have = row.stored_bytes
            if offset != have:
                raise OffsetMismatch(have)
            if length is not None and length > self.settings.upload_chunk_max_bytes:
                raise too_large(f"a chunk has at most {self.settings.upload_chunk_max_bytes} bytes")
            if length is not None and have + length > row.size:
                raise too_large("more bytes than the upload declared")
            await upload_parts.fill(
                self.blobs, upload_id, upload_parts.parts_of(row.meta), have, path
            )
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
                                self._check_head(head, row.size, upload_id)
                        if buffered >= WRITE_BYTES:
                            await asyncio.to_thread(_write, fh, pending)
                            pending, buffered = [], 0
                except (aiohttp.ClientPayloadError, ConnectionError, aiohttp.ClientConnectionError):
                    # The connection dropped mid-chunk: what arrived is kept, the client
                    # continues from there (GET tells it where).
                    cut = True
                except HomeroomError:
                    await asyncio.to_thread(_truncate, fh, have)
                    raise
                # The last chunk's flush to disk runs beside the file's checks (_finish).
                complete = not cut and written == row.size
                await asyncio.to_thread(_write, fh, pending, not complete)
            finally:
                await asyncio.to_thread(fh.close)
            if cut or written < row.size:
                if written > have:
                    await self._commit_part(hub, row, written)
                if cut:
                    raise bad_request(f"the chunk was cut off; continue at byte {written}")
                return {"upload": upload_view(row, written)}
            try:
                return {"upload": await self._finish(hub, row)}
            except HomeroomError as exc:
                if exc.code == "unavailable" and written > have:
                    # Processing failed, not the upload: keep the bytes, the client resends
                    # the (empty) end to try again.
                    await self._commit_part(hub, row, written)
                raise
        except HomeroomError as exc:
            if exc.code == "unsupported_type":
                await self._drop(hub, upload_id)
            raise
        finally:
            self._busy.discard(upload_id)

    async def _commit_part(self, hub: Hub, row: UploadRow, written: int) -> None:
        """Store what this request brought as a part and commit the new offset; a request that
        lost a race with another node's (same upload, same offset) takes its bytes back."""
        path = self.staging / row.id
        have = row.stored_bytes
        parts = upload_parts.parts_of(row.meta)
        part = None
        if self.parts:
            try:
                part = await upload_parts.store_range(
                    self.blobs, row.id, path, self._temp(".part"), have, written
                )
            except BaseException:
                await asyncio.to_thread(upload_parts.cut, path, have)
                raise
            parts.append(part)
        async with hub.store.transaction() as conn:
            res = await conn.execute(
                uploads.update()
                .where(
                    uploads.c.id == row.id,
                    uploads.c.status == UPLOADING,
                    uploads.c.stored_bytes == have,
                )
                .values(stored_bytes=written, meta={**row.meta, "parts": parts})
            )
            won = res.rowcount == 1
            now = (
                await conn.execute(select(uploads.c.stored_bytes).where(uploads.c.id == row.id))
            ).scalar_one()
        if not won:
            await upload_parts.delete(self.blobs, row.id, [part] if part else [])
            await asyncio.to_thread(upload_parts.cut, path, have)
            raise OffsetMismatch(int(now))

    def _check_head(self, head: bytes, size: int, upload_id: str) -> None:
        """Refuse at the first chunk what no file type matches, before the rest is sent."""
        ftype = rules.sniff(head)
        if ftype is None:
            raise rules.unsupported()
        if ftype.kind is not Kind.DOCUMENT and ftype.mime != "audio/webm":
            rules.check_kind_size(ftype, size, self.limits)

    async def _drop(self, hub: Hub, upload_id: str) -> None:
        async with hub.store.transaction() as conn:
            meta = (
                await conn.execute(select(uploads.c.meta).where(uploads.c.id == upload_id))
            ).scalar_one()
            await conn.execute(
                uploads.update()
                .where(uploads.c.id == upload_id)
                .values(status=DELETED, deleted_at=hub.now())
            )
        await self.discard(upload_id, meta)

    # --- the last chunk: check, process, store ----------------------------------------------

    async def _finish(self, hub: Hub, row: UploadRow) -> dict[str, Any]:
        path = self.staging / row.id
        # The file goes to disk while it is checked and its thumbnail made (50 photos at once
        # are 150 MB to flush); nothing is stored or committed before it is there.
        flushed = asyncio.ensure_future(asyncio.to_thread(_fsync, path))
        try:
            return await self._finish_flushing(hub, row, flushed)
        finally:
            await asyncio.gather(flushed, return_exceptions=True)

    async def _finish_flushing(
        self, hub: Hub, row: UploadRow, flushed: asyncio.Future[None]
    ) -> dict[str, Any]:
        path = self.staging / row.id
        ftype = rules.sniff(await asyncio.to_thread(_head, path))
        if ftype is None:
            raise rules.unsupported()
        meta: dict[str, Any] = {}
        if not rules.settled_by_head(ftype):  # a container to parse: in a worker process
            ftype, meta = await self.workers.identify(path, self.settings.voice_max_s)
        rules.check_matches_name(ftype, row.name)
        rules.check_kind_size(ftype, row.size, self.limits)
        values: dict[str, Any] = {"kind": ftype.kind.value, "mime": ftype.mime}
        if ftype.kind is Kind.IMAGE:
            thumb = self._temp(".jpg")
            try:
                meta.update(await self.workers.thumbnail(path, thumb))
            except BaseException:
                thumb.unlink(missing_ok=True)
                raise
            values["thumb"] = await self._store(thumb)
            await flushed
            # The photo's source stays in the shared store until its stripped original and
            # preview are made, by this node or (if this one stops) another.
            source = None
            if self.parts:
                source = await upload_parts.store_whole(
                    self.blobs, row.id, path, self._temp(".src")
                )
            meta["parts"] = [source] if source else []
            values["stored_bytes"] = 0
            values["pending"] = True
        else:
            source = None
            await flushed
            values["blob"] = await self._store(path)
            values["stored_bytes"] = row.size
        values.update(meta=meta, status=READY, completed_at=hub.now())
        async with hub.store.transaction() as conn:
            # Only from the offset this request started at: another node may have finished
            # the same upload meanwhile (a client that sent its last chunk twice).
            res = await conn.execute(
                uploads.update()
                .where(
                    uploads.c.id == row.id,
                    uploads.c.status == UPLOADING,
                    uploads.c.stored_bytes == row.stored_bytes,
                )
                .values(**values)
            )
            won = res.rowcount == 1
            done = typed(
                UploadRow,
                (await conn.execute(select(uploads).where(uploads.c.id == row.id))).one(),
            )
        if not won:
            if source is not None:
                await upload_parts.delete(self.blobs, row.id, [source])
            if done.status == READY:
                return upload_view(done)
            raise OffsetMismatch(done.stored_bytes)
        await upload_parts.delete(self.blobs, row.id, upload_parts.parts_of(row.meta))
        if values.get("pending"):
            self._start_later(hub, row.id)
        return upload_view(done)

    async def _store(self, path: Path) -> str:
        digest = await asyncio.to_thread(sha256_file, path)
        await self.blobs.put_file(blob_key(digest), path)
        return digest

    # --- photos finished in the background ---------------------------------------------------

    def _start_later(self, hub: Hub, upload_id: str) -> None:
        if upload_id in self.later:
            return
        task = asyncio.get_running_loop().create_task(self._finish_photo(hub, upload_id))
        self.later[upload_id] = task
        task.add_done_callback(lambda _t: self.later.pop(upload_id, None))

    async def _finish_photo(self, hub: Hub, upload_id: str) -> None:
        src = self.staging / upload_id
        preview, original = self._temp(".jpg"), self._temp(".img")
        try:
            async with hub.store.read() as conn:
                row = typed(
                    UploadRow,
                    (await conn.execute(select(uploads).where(uploads.c.id == upload_id))).one(),
                )
            if not row.pending or row.status != READY:
                return
            parts = upload_parts.parts_of(row.meta)
            # The source is here if this node took the last chunk; else from the shared store.
            await upload_parts.fill(self.blobs, upload_id, parts, row.size, src)
            mime = await self.workers.preview_and_original(src, preview, original)
            sizes = preview.stat().st_size + original.stat().st_size
            preview_key = await self._store(preview)
            blob = await self._store(original)
            meta = {k: v for k, v in row.meta.items() if k != "parts"}
            async with hub.store.transaction() as conn:
                # Once: another node may have adopted this photo too.
                res = await conn.execute(
                    uploads.update()
                    .where(uploads.c.id == upload_id, uploads.c.pending.is_(True))
                    .values(
                        blob=blob,
                        preview=preview_key,
                        mime=mime,
                        pending=False,
                        meta=meta,
                        stored_bytes=uploads.c.stored_bytes + sizes,
                    )
                )
            if res.rowcount == 1:
                await upload_parts.delete(self.blobs, upload_id, parts)
            await asyncio.to_thread(src.unlink, True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("finishing photo %s failed", upload_id)
        finally:
            preview.unlink(missing_ok=True)
            original.unlink(missing_ok=True)

    async def wait_finished(self, upload_id: str, timeout: float) -> None:
        task = self.later.get(upload_id)
        if task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout)

    async def resume_pending(self, hub: Hub, adopt_after_s: float = ADOPT_AFTER_S) -> int:
        """Restart photos left half-finished: this node's own (its staging file remains, after
        a restart) and any node's acknowledged more than ``adopt_after_s`` ago (that node
        stopped: the source is in the shared store)."""
        async with hub.store.read() as conn:
            rows = list(
                await conn.execute(
                    select(uploads.c.id, uploads.c.completed_at).where(
                        uploads.c.pending.is_(True), uploads.c.status == READY
                    )
                )
            )
        n = 0
        for r in rows:
            if r.id in self.later:
                continue
            mine = await asyncio.to_thread((self.staging / r.id).exists)
            if mine or (self.parts and (r.completed_at or 0) < hub.now() - adopt_after_s):
                self._start_later(hub, r.id)
                n += 1
        return n

    # --- removing bytes ----------------------------------------------------------------------

    async def collect(self, hub: Hub, keys: list[str]) -> int:
        """Delete the blobs among ``keys`` that no file refers to any more."""
        gone = 0
        for key in keys:
            async with hub.store.read() as conn:
                if await attachments.referenced(conn, key):
                    continue
            await self.blobs.delete(blob_key(key))
            gone += 1
        return gone

    async def tidy_staging(self, hub: Hub) -> int:
        """Remove this node's staging files of uploads finished or dropped (perhaps by another
        node: a node keeps the chunks it took until then); returns how many went."""
        names = await asyncio.to_thread(lambda: [p.name for p in self.staging.iterdir()])
        gone = 0
        for i in range(0, len(names), 500):
            batch = names[i : i + 500]
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
                    await asyncio.to_thread((self.staging / name).unlink, True)
                    gone += 1
        return gone

    async def discard(self, upload_id: str, meta: dict[str, Any] | None) -> None:
        """Remove what an unfinished or dropped upload left: its staging file here and its
        parts in the shared store."""
        await asyncio.to_thread((self.staging / upload_id).unlink, True)
        await upload_parts.delete(self.blobs, upload_id, upload_parts.parts_of(meta))

    def wipe_tmp(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, exist_ok=True)


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
