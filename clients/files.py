"""Attachments for the Python client: resumable uploads, signed links, downloads.

An upload sends its bytes in chunks at ``Upload-Offset``; after an interruption it asks the
server for the offset reached and continues from there (``resume``), never from the start.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from clients.homeroom import HomeroomClient

CHUNK = 1024 * 1024


def _raise(body: Any) -> None:
    from clients.homeroom import RequestError

    if isinstance(body, dict) and body.get("ok") is False:
        err = body["error"]
        raise RequestError(err["code"], err["message"])


async def _chunks(data: bytes | Path, start: int, end: int) -> AsyncIterator[bytes]:
    if isinstance(data, bytes):
        for i in range(start, end, 64 * 1024):
            yield data[i : min(i + 64 * 1024, end)]
        return
    with open(data, "rb") as fh:  # noqa: ASYNC230 - a client helper, small reads
        fh.seek(start)
        left = end - start
        while left > 0:
            block = fh.read(min(64 * 1024, left))
            if not block:
                return
            left -= len(block)
            yield block


async def create(client: HomeroomClient, name: str, size: int) -> dict[str, Any]:
    body = await client.http("POST", "/api/v1/uploads", {"name": name, "size": size})
    return dict(body["upload"])


async def offset(client: HomeroomClient, upload_id: str) -> dict[str, Any]:
    return dict((await client.http("GET", f"/api/v1/uploads/{upload_id}"))["upload"])


async def send_chunk(
    client: HomeroomClient, upload_id: str, data: bytes | Path, start: int, end: int
) -> dict[str, Any]:
    headers = {
        "Authorization": f"Bearer {client.token}",
        "Upload-Offset": str(start),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(end - start),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            f"{client.base_url}/api/v1/uploads/{upload_id}",
            data=_chunks(data, start, end),
            headers=headers,
        ) as resp,
    ):
        body = await resp.json()
    _raise(body)
    return dict(body["upload"])


async def resume(
    client: HomeroomClient, upload_id: str, data: bytes | Path, chunk: int = CHUNK
) -> dict[str, Any]:
    """Send what the server does not have yet; returns the finished upload."""
    up = await offset(client, upload_id)
    total = up["size"]
    while up["status"] == "uploading":
        start = up["offset"]
        up = await send_chunk(client, upload_id, data, start, min(start + chunk, total))
    return up


async def upload(
    client: HomeroomClient, data: bytes | str | Path, name: str | None = None, chunk: int = CHUNK
) -> dict[str, Any]:
    """Upload bytes or a file; returns the attachment (its ``id`` goes in ``attachments``)."""
    if isinstance(data, str):
        data = Path(data)
    size = len(data) if isinstance(data, bytes) else os.stat(data).st_size
    if name is None:
        name = data.name if isinstance(data, Path) else "file"
    up = await create(client, name, size)
    done = await resume(client, up["id"], data, chunk)
    return dict(done["attachment"])


async def links(
    client: HomeroomClient, ids: list[str], variant: str = "original"
) -> dict[str, str]:
    body = await client.http("POST", "/api/v1/uploads/links", {"ids": ids, "variant": variant})
    return {k: client.base_url + v for k, v in body["links"].items()}


async def download(
    url: str, range_: tuple[int, int] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Fetch a signed link: (status, headers, bytes). No token needed: the link is the key."""
    headers = {"Range": f"bytes={range_[0]}-{range_[1]}"} if range_ else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()
