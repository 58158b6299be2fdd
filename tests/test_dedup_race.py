"""The same bytes removed and sent again at once: the file sent is never lost (issue #15).

Files with the same content share one stored blob. Wang Hao deletes his chat message with a
PDF; its bytes go once no file uses them. At that moment Li Ming sends the very same PDF (the
class's worksheet, forwarded): his upload finds the bytes stored and does not write them again.
Whatever the order, Li Ming's file, once acknowledged, downloads byte for byte.

Both races are made to happen for real, on SQLite and PostgreSQL and on the directory and S3
(SeaweedFS) stores: the collector held between its check (no file uses the bytes) and its
delete, while Li Ming's upload finishes; and Li Ming's upload held between storing its bytes and
committing, while the collector checks and deletes; and the same with a photo, held while
storing its thumbnail (before the acknowledgement) or its preview (after). Without
realtime/actions/blob_claims.py the download answers ``internal`` (the bytes are gone).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from clients import files
from realtime.storage import blob_key
from realtime.store.schema import uploads
from realtime.transport.rest import HUB
from realtime.transport.uploads import FILES
from tests.attachment_files import jpeg_with_gps, pdf_bytes
from tests.conftest import DATABASES, Server, start_on, stop_server
from tests.seaweed import seaweed_s3
from tests.services import drop_postgres_database

pytestmark = pytest.mark.timeout(180)

# How long a step is given to go ahead of the one held (it cannot, with the fix, on SQLite: the
# collector's transaction holds the database while it removes the bytes).
AHEAD_S = 1.0


async def _posted(server: Server, data: bytes) -> int:
    """Wang Hao sends the PDF in the class chat; returns the message's id."""
    wang = await server.client("wanghao")
    att = await wang.upload(data, "练习卷.pdf")
    msg = await wang.send_chat(
        f"class:{server.class_id}:students", "练习卷", attachments=[att["id"]]
    )
    return int(msg["id"])


async def _downloads(server: Server, upload_id: str, data: bytes) -> None:
    """Li Ming sends his file to the class, and a classmate downloads it byte for byte."""
    liming = await server.client("liming")
    msg = await liming.send_chat(f"class:{server.class_id}:students", "", attachments=[upload_id])
    assert [a["id"] for a in msg["attachments"]] == [upload_id]
    wang = await server.client("wanghao")
    link = (await files.links(wang, [upload_id], "original"))[upload_id]
    status, _h, body = await files.download(link)
    assert status == 200, body[:200]
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


async def collector_held_between_check_and_delete(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = server.app[FILES]
    data = pdf_bytes(pad=120_000)
    key = blob_key(hashlib.sha256(data).hexdigest())
    msg_id = await _posted(server, data)
    liming = await server.client("liming")
    up = await files.create(liming, "练习卷(1).pdf", len(data))
    entered, go_on, stored = asyncio.Event(), asyncio.Event(), asyncio.Event()
    delete, put = fs.blobs.delete, fs.blobs.put_file

    async def held_delete(k: str) -> None:
        if k == key:
            entered.set()
            await go_on.wait()
        await delete(k)

    async def seen_put(k: str, path: Path) -> bool:
        wrote = await put(k, path)
        if k == key:
            stored.set()
        return wrote

    monkeypatch.setattr(fs.blobs, "delete", held_delete)
    monkeypatch.setattr(fs.blobs, "put_file", seen_put)
    wang = server.clients[0]
    deleting = asyncio.ensure_future(wang.request("chat.delete", {"message_id": msg_id}))
    await asyncio.wait_for(entered.wait(), 10)  # checked: no file uses the bytes
    finishing = asyncio.ensure_future(files.send_chunk(liming, up["id"], data, 0, len(data)))
    # Li Ming's upload goes as far as it can: stores (finds the bytes there) and commits.
    await asyncio.wait(
        [finishing, asyncio.ensure_future(stored.wait())],
        timeout=AHEAD_S * 5,
        return_when=asyncio.FIRST_COMPLETED,
    )
    await asyncio.sleep(AHEAD_S)
    go_on.set()  # the delete lands
    deleted = await asyncio.wait_for(deleting, 30)
    assert deleted["deleted"]["message_id"] == msg_id
    done = await asyncio.wait_for(finishing, 30)
    assert done["status"] == "ready"
    await _downloads(server, up["id"], data)


async def upload_held_between_store_and_commit(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = server.app[FILES]
    data = pdf_bytes(pad=130_000)
    key = blob_key(hashlib.sha256(data).hexdigest())
    msg_id = await _posted(server, data)
    liming = await server.client("liming")
    up = await files.create(liming, "练习卷(1).pdf", len(data))
    entered, go_on = asyncio.Event(), asyncio.Event()
    put = fs.blobs.put_file

    async def held_put(k: str, path: Path) -> bool:
        wrote = await put(k, path)
        if k == key and not entered.is_set():
            entered.set()  # stored (found there): the commit waits
            await go_on.wait()
        return wrote

    monkeypatch.setattr(fs.blobs, "put_file", held_put)
    finishing = asyncio.ensure_future(files.send_chunk(liming, up["id"], data, 0, len(data)))
    await asyncio.wait_for(entered.wait(), 10)
    wang = server.clients[0]
    deleted = await wang.request("chat.delete", {"message_id": msg_id})
    assert deleted["deleted"]["message_id"] == msg_id
    assert await fs.blobs.size(key) is None  # the bytes went: no committed file used them
    go_on.set()
    done = await asyncio.wait_for(finishing, 30)
    assert done["status"] == "ready"
    await _downloads(server, up["id"], data)


async def photo_held_between_store_and_commit(
    server: Server, monkeypatch: pytest.MonkeyPatch, held: str
) -> None:
    """The same with a photo: its thumbnail is stored before the acknowledgement, its preview
    and stripped original after (realtime/actions/pending_photos.py). ``held``: which of Li
    Ming's stores waits while Wang Hao's message is deleted."""
    fs = server.app[FILES]
    photo = jpeg_with_gps(640, 480)
    wang = await server.client("wanghao")
    att = await wang.upload(photo, "黑板.jpg")
    msg = await wang.send_chat(f"class:{server.class_id}:students", "", attachments=[att["id"]])
    await fs.photos.wait(att["id"], 30)
    async with server.app[HUB].store.read() as conn:
        row = (await conn.execute(select(uploads).where(uploads.c.id == att["id"]))).one()
    key = blob_key({"thumb": row.thumb, "preview": row.preview}[held])
    entered, go_on = asyncio.Event(), asyncio.Event()
    put = fs.blobs.put_file

    async def held_put(k: str, path: Path) -> bool:
        wrote = await put(k, path)
        if k == key and not entered.is_set():
            entered.set()
            await go_on.wait()
        return wrote

    monkeypatch.setattr(fs.blobs, "put_file", held_put)
    liming = await server.client("liming")
    sending = asyncio.ensure_future(files.upload(liming, photo, "黑板(1).jpg"))
    await asyncio.wait_for(entered.wait(), 30)
    await wang.request("chat.delete", {"message_id": msg["id"]})
    go_on.set()
    mine = await asyncio.wait_for(sending, 30)
    await fs.photos.wait(mine["id"], 30)
    await liming.send_chat(f"class:{server.class_id}:students", "", attachments=[mine["id"]])
    for variant in ("thumb", "preview", "original"):
        link = (await files.links(wang, [mine["id"]], variant))[mine["id"]]
        status, headers, body = await files.download(link)
        assert status == 200, (variant, body[:200])
        assert headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"


@pytest.mark.parametrize("held", ["thumb", "preview"])
async def test_the_same_photo_removed_and_sent_at_once_shows(
    server: Server, monkeypatch: pytest.MonkeyPatch, held: str
) -> None:
    await photo_held_between_store_and_commit(server, monkeypatch, held)


RACES: dict[str, Callable[[Server, pytest.MonkeyPatch], Awaitable[None]]] = {
    "collector_held": collector_held_between_check_and_delete,
    "upload_held": upload_held_between_store_and_commit,
}


@pytest.mark.parametrize("race", list(RACES))
async def test_the_same_file_removed_and_sent_at_once_downloads(
    server: Server, monkeypatch: pytest.MonkeyPatch, race: str
) -> None:
    await RACES[race](server, monkeypatch)


@pytest.mark.parametrize("db", DATABASES)
async def test_the_same_file_removed_and_sent_at_once_downloads_on_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str
) -> None:
    with seaweed_s3(tmp_path / "weed") as s3:
        srv, name = await start_on(
            db,
            tmp_path,
            storage_backend="s3",
            s3_endpoint=s3.endpoint,
            s3_bucket="homeroom-dedup",
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
        )
        try:
            await srv.app[FILES].blobs.ensure_bucket()  # type: ignore[attr-defined]
            for race in RACES.values():
                with monkeypatch.context() as m:
                    await race(srv, m)
        finally:
            await stop_server(srv)
            if name:
                drop_postgres_database(name)
