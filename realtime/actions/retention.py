"""The retention sweep: files past their school's retention, uploads never finished or never
attached. Runs every ``sweep_interval_s``; tests call :func:`sweep` with a clock of their own."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import and_, or_, select

from realtime.actions import pending_photos, upload_cleanup
from realtime.actions.uploads import Files, used_bytes
from realtime.auth import Identity
from realtime.domain import policy
from realtime.domain.policy import require
from realtime.domain.uploads import DELETED, READY, UPLOADING
from realtime.hub import Hub
from realtime.schemas import SchoolStorage
from realtime.store.schema import schools, uploads, users

log = logging.getLogger(__name__)


async def sweep(hub: Hub, files: Files, now: float | None = None) -> dict[str, int]:
    """Delete what is due; returns how many files and blobs went. Also restarts photos left
    half-finished and removes what stopped processes left (upload_cleanup.tidy, on the real
    clock whatever ``now`` says: it decides by the age of files)."""
    now = hub.now() if now is None else now
    abandon_before = now - hub.settings.upload_abandon_s
    async with hub.store.transaction() as conn:
        school_rows = list(await conn.execute(select(schools.c.id, schools.c.retention_days)))
        due = [
            or_(
                and_(uploads.c.status == UPLOADING, uploads.c.created_at < abandon_before),
                and_(
                    uploads.c.status == READY,
                    uploads.c.carrier.is_(None),
                    uploads.c.completed_at < abandon_before,
                ),
            )
        ]
        for s in school_rows:
            days = (
                s.retention_days
                if s.retention_days is not None
                else (hub.settings.attachment_retention_days)
            )
            if days and days > 0:
                due.append(
                    and_(
                        uploads.c.school_id == s.id,
                        uploads.c.status == READY,
                        uploads.c.attached_at < now - days * 86400,
                    )
                )
        rows = list(
            await conn.execute(
                select(
                    uploads.c.id,
                    uploads.c.blob,
                    uploads.c.preview,
                    uploads.c.thumb,
                    uploads.c.meta,
                ).where(or_(*due))
            )
        )
        if rows:
            await conn.execute(
                uploads.update()
                .where(uploads.c.id.in_([r.id for r in rows]))
                .values(status=DELETED, deleted_at=now)
            )
    for r in rows:
        await upload_cleanup.discard(files, r.id, r.meta)
    keys = sorted({k for r in rows for k in (r.blob, r.preview, r.thumb) if k})
    blobs = await upload_cleanup.collect(hub, files, keys)
    await pending_photos.resume_pending(hub, files)
    left = await upload_cleanup.tidy(hub, files, hub.now())
    if any(left.values()):
        log.info("removed what uploads left behind: %s", left)
    return {"files": len(rows), "blobs": blobs}


async def _admin(hub: Hub, who: Identity) -> bool:
    async with hub.store.read() as conn:
        row = (
            await conn.execute(select(users.c.school_admin).where(users.c.id == who.user_id))
        ).first()
    return bool(row and row.school_admin)


async def storage_view(hub: Hub, school_id: int) -> dict[str, Any]:
    async with hub.store.read() as conn:
        s = (await conn.execute(select(schools).where(schools.c.id == school_id))).one()
        used = await used_bytes(conn, school_id)
    return {
        "used_bytes": used,
        "quota_bytes": s.storage_quota_bytes or hub.settings.school_quota_bytes,
        "retention_days": (
            s.retention_days
            if s.retention_days is not None
            else hub.settings.attachment_retention_days
        ),
    }


async def get_storage(hub: Hub, who: Identity) -> dict[str, Any]:
    require(policy.may_manage_school_storage(await _admin(hub, who)), "school admins only")
    return await storage_view(hub, who.school_id)


async def set_storage(hub: Hub, who: Identity, req: SchoolStorage) -> dict[str, Any]:
    require(policy.may_manage_school_storage(await _admin(hub, who)), "school admins only")
    values: dict[str, Any] = {}
    if req.quota_bytes is not None:
        values["storage_quota_bytes"] = req.quota_bytes
    if req.retention_days is not None:
        values["retention_days"] = req.retention_days
    if values:
        async with hub.store.transaction() as conn:
            await conn.execute(
                schools.update().where(schools.c.id == who.school_id).values(**values)
            )
    return await storage_view(hub, who.school_id)
