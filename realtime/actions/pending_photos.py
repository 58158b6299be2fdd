"""Photos finished after their acknowledgement: the stripped original and the preview.

A photo is acknowledged with its thumbnail (realtime/actions/upload_finish.py) and stays
``pending`` until a worker has made its full-size stripped original and its preview; nobody
waits for those but a viewer who opens the photo (realtime/actions/downloads.py waits a
moment). The node that took the photo finishes it; if that node stops, its own restart or
another node's sweep (after ``ADOPT_AFTER_S``) does, from the source kept in the blob store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from realtime.actions import blob_claims, upload_cleanup, upload_parts
from realtime.domain import uploads as states
from realtime.domain.uploads import READY
from realtime.hub import Hub
from realtime.store.db import DbConnection
from realtime.store.rows import UploadRow, typed
from realtime.store.schema import uploads

if TYPE_CHECKING:
    from realtime.actions.uploads import Files

log = logging.getLogger(__name__)

# A photo acknowledged this long ago and still without its original and preview is finished
# by whichever node's sweep finds it (the node that took it is taken for stopped).
ADOPT_AFTER_S = 600.0


class PendingPhotos:
    """The photos this node is finishing, one task each."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, hub: Hub, files: Files, upload_id: str) -> None:
        if upload_id in self.tasks:
            return
        task = asyncio.get_running_loop().create_task(finish_photo(hub, files, upload_id))
        self.tasks[upload_id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(upload_id, None))

    async def wait(self, upload_id: str, timeout: float) -> None:
        """Wait (at most ``timeout``) for a photo this node is finishing."""
        task = self.tasks.get(upload_id)
        if task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout)

    async def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(BaseException):
                await task


async def finish_photo(hub: Hub, files: Files, upload_id: str) -> None:
    src = files.staging.path(upload_id)
    preview, original = files.staging.temp(".jpg"), files.staging.temp(".img")
    try:
        async with hub.store.read() as conn:
            row = typed(
                UploadRow,
                (await conn.execute(select(uploads).where(uploads.c.id == upload_id))).one(),
            )
        if not row.pending or row.status != READY:
            return
        parts = states.parts_of(row.meta)
        # The source is here if this node took the last chunk; else from the shared store.
        await upload_parts.fill(files.blobs, upload_id, parts, row.size, src)
        mime = await files.workers.preview_and_original(src, preview, original)
        sizes = preview.stat().st_size + original.stat().st_size
        # Kept until the commit stands (realtime/actions/blob_claims.py); removed below.
        claim = blob_claims.Claim(files.blobs, files.staging)
        preview_key = await claim.store(preview)
        blob = await claim.store(original)
        meta = {k: v for k, v in row.meta.items() if k != "parts"}

        async def attempt(
            conn: DbConnection, locks: list[Any], removals: Any
        ) -> tuple[bool, int | None]:
            # Once: another node may have adopted this photo too.
            res = await conn.execute(
                uploads.update()
                .where(
                    uploads.c.id == upload_id,
                    uploads.c.pending.is_(True),
                    uploads.c.status == READY,
                )
                .values(
                    blob=blob,
                    preview=preview_key,
                    mime=mime,
                    pending=False,
                    meta=meta,
                    stored_bytes=uploads.c.stored_bytes + sizes,
                )
                .returning(uploads.c.id, *locks)
            )
            if res.first() is None:
                return False, None
            return True, int((await conn.execute(select(removals))).scalar_one())

        won = await claim.commit(hub, attempt)
        if won:
            await upload_parts.delete(files.blobs, upload_id, parts)
        else:
            # Finished by another node, or deleted meanwhile (a photo sent by mistake and
            # deleted at once): what was stored here is nobody's unless another file uses it.
            await upload_cleanup.collect(hub, files, [preview_key, blob])
        await asyncio.to_thread(src.unlink, True)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("finishing photo %s failed", upload_id)
    finally:
        preview.unlink(missing_ok=True)
        original.unlink(missing_ok=True)


async def resume_pending(hub: Hub, files: Files, adopt_after_s: float = ADOPT_AFTER_S) -> int:
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
        if r.id in files.photos.tasks:
            continue
        mine = await asyncio.to_thread(files.staging.path(r.id).exists)
        if mine or (files.parts and (r.completed_at or 0) < hub.now() - adopt_after_s):
            files.photos.start(hub, files, r.id)
            n += 1
    return n
