"""Download links: signed, short-lived, given only to people who may see the file's carrier."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from realtime.actions.attachments import require_may_fetch
from realtime.actions.uploads import Files
from realtime.domain import attachments as rules
from realtime.domain.uploads import READY
from realtime.errors import HomeroomError, bad_request, conflict, not_found
from realtime.hub import Hub
from realtime.schemas import UploadLinks
from realtime.storage import blob_key
from realtime.store.rows import UploadRow, typed, typed_all, typed_or_none
from realtime.store.schema import uploads

# How long a download waits for a photo's preview or original still being made on this node.
FINISH_WAIT_S = 30.0


def link_secret(hub: Hub) -> str:
    """A key for links only, derived from the server secret (never the token key itself)."""
    return hashlib.sha256(b"homeroom-files\n" + hub.settings.secret.encode()).hexdigest()


def _variant_for(row: UploadRow, variant: str) -> str:
    return variant if row.kind == "image" else "original"


async def links(hub: Hub, user_id: int, req: UploadLinks) -> dict[str, Any]:
    expires = int(hub.now()) + hub.settings.download_link_ttl_s
    out: dict[str, str] = {}
    secret = link_secret(hub)
    async with hub.store.read() as conn:
        found = await conn.execute(select(uploads).where(uploads.c.id.in_(req.ids)))
        rows = {r.id: r for r in typed_all(UploadRow, found)}
        for uid in req.ids:
            row = rows.get(uid)
            if row is None or row.status != READY:
                raise not_found("no such file (it may have been deleted)")
            await require_may_fetch(conn, user_id, row)
            out[uid] = rules.sign_link(secret, uid, _variant_for(row, req.variant), expires)
    return {"links": out, "expires": expires}


@dataclass(frozen=True)
class Download:
    key: str
    size: int
    mime: str
    name: str
    inline: bool


def _download_name(row: UploadRow, variant: str, mime: str) -> str:
    name: str = row.name
    if variant != "original" or (
        mime == "image/jpeg" and rules.extension(name) in ("heic", "heif")
    ):
        stem = name.rsplit(".", 1)[0] if "." in name else name
        return stem + ".jpg"
    return name


async def open_download(
    hub: Hub, files: Files, upload_id: str, variant: str, expires: str, sig: str
) -> Download:
    """Check a signed link and find what it serves."""
    if variant not in rules.VARIANTS:
        raise not_found("no such file")
    try:
        exp = int(expires)
    except ValueError:
        raise bad_request("this download link is not valid") from None
    rules.check_link(link_secret(hub), upload_id, variant, exp, sig, time.time())
    async with hub.store.read() as conn:
        row = typed_or_none(
            UploadRow,
            (await conn.execute(select(uploads).where(uploads.c.id == upload_id))).first(),
        )
    if row is None or row.status != READY:
        raise not_found("this file was deleted")
    if row.pending and variant != "thumb":
        await files.photos.wait(upload_id, FINISH_WAIT_S)
        async with hub.store.read() as conn:
            row = typed(
                UploadRow,
                (await conn.execute(select(uploads).where(uploads.c.id == upload_id))).one(),
            )
        if row.pending:
            raise conflict("the photo is still being prepared; try again in a moment")
    key = {"thumb": row.thumb, "preview": row.preview, "original": row.blob}[variant]
    if key is None:
        raise not_found("no such file")
    size = await files.blobs.size(blob_key(key))
    if size is None:
        raise HomeroomError("internal", "the file's bytes are missing from storage")
    # A ready upload has its type (set when it finished); bytes of no known type otherwise.
    mime = "image/jpeg" if variant != "original" else row.mime or "application/octet-stream"
    inline = row.kind in ("image", "audio", "video") or mime == "application/pdf"
    return Download(blob_key(key), size, mime, _download_name(row, variant, mime), inline)
