"""Removing attachment bytes: stored files nothing refers to any more, an unfinished upload's
staging file and parts, and what a node that stopped mid-way left behind.

Every node runs :func:`tidy` from the retention sweep (realtime/actions/retention.py); each
step is idempotent and safe beside other nodes doing the same and beside live uploads.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from realtime.actions import attachments, upload_parts
from realtime.domain import uploads as states
from realtime.domain.uploads import PART_GRACE_S, UPLOADING
from realtime.hub import Hub
from realtime.storage import blob_key
from realtime.store.schema import uploads

if TYPE_CHECKING:
    from realtime.actions.uploads import Files

# Staging files checked against the database at once.
BATCH = 500


async def collect(hub: Hub, files: Files, keys: list[str]) -> int:
    """Delete the blobs among ``keys`` that no file refers to any more."""
    gone = 0
    for key in keys:
        async with hub.store.read() as conn:
            if await attachments.referenced(conn, key):
                continue
        await files.blobs.delete(blob_key(key))
        gone += 1
    return gone


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
    """What this node's sweep removes besides expired files: staging files of uploads that
    ended, work files and parts a stopped process left (older than ``grace_s``)."""
    return {
        "staging": await tidy_staging(hub, files),
        "temps": await asyncio.to_thread(files.staging.drop_old_temps, now - grace_s),
        "parts": await upload_parts.sweep_orphans(files.blobs, hub.store, now, grace_s),
    }
