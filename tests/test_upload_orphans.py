"""Parts a crash left in the blob store are removed by the sweep; a live upload's never are.

A chunk is acknowledged after two steps: its bytes are stored as a part in the blob store, then
the new offset (with the part listed) is committed in the database. A node killed between the
two leaves a part nobody lists. Here that happens for real: a node (``homeroom serve``, its own
process, on PostgreSQL and SeaweedFS) stores the part while the test holds the upload's row
locked, so the commit waits; once the part is in the bucket the node gets SIGKILL. The sweep
(realtime/actions/upload_parts.py: ``sweep_orphans``) then removes that part and nothing else,
and the interrupted upload and another one in progress both finish byte for byte after the
restart. The same sweep on the directory store, on both databases, and its grace period: a part
younger than it is never removed (it may be a live upload's, committed an instant later).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from clients import files
from clients.homeroom import HomeroomClient
from realtime.actions import upload_parts
from realtime.actions.accounts import create_user
from realtime.demo import DEMO_PASSWORD
from realtime.domain.uploads import PART_GRACE_S, Part, part_key
from realtime.storage import DirectoryStore
from realtime.storage.s3 import S3Store
from realtime.storage.staging import Staging
from realtime.store import Store, open_store
from realtime.store.schema import schools, uploads, users
from tests.attachment_files import pdf_bytes
from tests.conftest import free_port
from tests.seaweed import ready_bucket, seaweed_s3
from tests.services import drop_postgres_database, postgres_database
from tests.test_restart import SECRET, ServerProcess, clean_env, homeroom

pytestmark = pytest.mark.timeout(240)

BUCKET = "homeroom-orphans"
LATER = PART_GRACE_S + 60  # a sweep this far ahead of the parts' times takes them for old


async def _keys(s3: S3Store, upload_id: str) -> list[str]:
    return sorted([key async for key, _t in s3.scan(f"parts/{upload_id}/")])


async def _committed(store: Store, upload_id: str) -> list[str]:
    """The keys of the parts the database lists for an upload."""
    async with store.read() as conn:
        meta = (
            await conn.execute(select(uploads.c.meta).where(uploads.c.id == upload_id))
        ).scalar_one()
    return sorted(part_key(upload_id, (int(p[0]), str(p[1]))) for p in meta.get("parts", []))


async def _sha_of_download(c: HomeroomClient, upload_id: str) -> bytes:
    link = (await files.links(c, [upload_id], "original"))[upload_id]
    status, _h, body = await files.download(link)
    assert status == 200
    return hashlib.sha256(body).digest()


async def test_a_part_left_by_a_killed_node_is_swept_and_live_uploads_finish(
    tmp_path: Path,
) -> None:
    db_url, db_name = postgres_database()
    store = open_store(db_url)
    with seaweed_s3(tmp_path / "weed") as weed:
        s3 = S3Store(weed.endpoint, BUCKET, weed.access_key, weed.secret_key)
        await ready_bucket(s3)
        port = free_port()
        config = tmp_path / "homeroom.toml"
        config.write_text(
            f'host = "127.0.0.1"\nport = {port}\ndatabase_url = "{db_url}"\n'
            f'secret = "{SECRET}"\nstorage_dir = "{tmp_path}/files"\n'
            "rate_burst = 1000\nrate_per_s = 1000.0\nmedia_warm_start = false\n"
            f'storage_backend = "s3"\ns3_endpoint = "{weed.endpoint}"\n'
            f's3_bucket = "{BUCKET}"\ns3_access_key = "{weed.access_key}"\n'
            f's3_secret_key = "{weed.secret_key}"\n'
        )
        seeded = homeroom("--config", str(config), "demo", env=clean_env())
        assert seeded.returncode == 0, seeded.stderr
        node = ServerProcess(config, port, tmp_path / "server.log")
        try:
            node.start()
            await node.wait_ready(60)
            c = HomeroomClient(node.url)
            await c.login("wanghao", DEMO_PASSWORD)
            # Another parent's upload in progress: one third sent and committed.
            other = pdf_bytes(pad=600_000)
            up2 = await files.create(c, "通知.pdf", len(other))
            await files.send_chunk(c, up2["id"], other, 0, len(other) // 3)
            live2 = await _committed(store, up2["id"])
            assert len(live2) == 1 and await _keys(s3, up2["id"]) == live2

            data = pdf_bytes(pad=900_000)
            third = len(data) // 3
            up = await files.create(c, "作业.pdf", len(data))
            await files.send_chunk(c, up["id"], data, 0, third)
            live = await _committed(store, up["id"])
            assert len(live) == 1
            # The second chunk: the node stores its part, then waits for the row to commit.
            async with store.transaction() as conn:
                await conn.execute(
                    select(uploads.c.id).where(uploads.c.id == up["id"]).with_for_update()
                )
                sending = asyncio.create_task(files.send_chunk(c, up["id"], data, third, 2 * third))
                for _ in range(600):
                    if len(await _keys(s3, up["id"])) == 2:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the node did not store the second part")
                node.crash()  # SIGKILL between storing the part and committing it
                with pytest.raises(aiohttp.ClientError):
                    await sending
            [orphan] = sorted(set(await _keys(s3, up["id"])) - set(live))
            assert await _committed(store, up["id"]) == live  # the offset never moved

            # Not yet: a part this young may be a live upload's about to be committed.
            assert await upload_parts.sweep_orphans(s3, store, time.time()) == 0
            assert orphan in await _keys(s3, up["id"])
            # Later: the orphan goes, whichever nodes sweep at once; the live parts stay.
            later = time.time() + LATER
            gone = await asyncio.gather(
                upload_parts.sweep_orphans(s3, store, later),
                upload_parts.sweep_orphans(s3, store, later),
            )
            assert sum(gone) >= 1
            assert await _keys(s3, up["id"]) == live and await _keys(s3, up2["id"]) == live2
            assert await upload_parts.sweep_orphans(s3, store, later) == 0  # idempotent

            # After the restart both uploads continue from their committed offsets.
            node.start()
            await node.wait_ready(60)
            await c.login("wanghao", DEMO_PASSWORD)
            assert (await files.offset(c, up["id"]))["offset"] == third
            done = await files.resume(c, up["id"], data, chunk=third)
            done2 = await files.resume(c, up2["id"], other, chunk=len(other) // 3)
            assert done["status"] == done2["status"] == "ready"
            assert await _sha_of_download(c, up["id"]) == hashlib.sha256(data).digest()
            assert await _sha_of_download(c, up2["id"]) == hashlib.sha256(other).digest()
            assert await _keys(s3, up["id"]) == [] and await _keys(s3, up2["id"]) == []
            await c.close()
        finally:
            node.stop()
            await s3.close()
            await store.close()
            drop_postgres_database(db_name)


async def _upload_row(
    store: Store, upload_id: str, status: str, parts: list[Part], pending: bool = False
) -> None:
    async with store.transaction() as conn:
        school = (await conn.execute(select(schools.c.id))).scalar()
        if school is None:
            res = await conn.execute(schools.insert().values(name="Orphans school"))
            school = int(res.inserted_primary_key[0])
            await create_user(conn, school, "owner", "Owner", None, now=time.time())
        owner = (await conn.execute(select(users.c.id))).scalar_one()
        await conn.execute(
            uploads.insert().values(
                id=upload_id,
                school_id=school,
                owner_id=owner,
                name="f.pdf",
                size=3000,
                stored_bytes=1000 * len(parts),
                status=status,
                pending=pending,
                meta={"parts": [list(p) for p in parts]},
                created_at=time.time(),
            )
        )


async def test_the_sweep_on_a_directory_store(store: Store, tmp_path: Path) -> None:
    """A shared directory as the blob store (parts written as files); both databases."""
    blobs = DirectoryStore(tmp_path / "shared")
    node = Staging(tmp_path / "node")
    staged = node.path("src")
    staged.write_bytes(os.urandom(3000))

    async def part(upload_id: str, start: int) -> Part:
        return await upload_parts.store_range(
            blobs, upload_id, staged, node.temp(".part"), start, start + 1000
        )

    kept = [await part("up", 0), await part("up", 1000)]
    crashed = await part("up", 2000)  # stored, never committed
    await _upload_row(store, "up", "uploading", kept)
    source = await part("photo", 0)
    await _upload_row(store, "photo", "ready", [source], pending=True)
    failed = await part("cancelled", 0)  # listed, but the upload was deleted
    await _upload_row(store, "cancelled", "deleted", [failed])
    unknown = await part("nobody", 0)
    foreign = blobs.path("parts/up/notes.txt")
    foreign.write_text("not a part")
    listed = {key: t async for key, t in blobs.scan("parts/")}
    assert len(listed) == 7
    # Young: nothing goes.
    assert await upload_parts.sweep_orphans(blobs, store, time.time()) == 0
    # Old: the three parts nobody needs go (and the directories they leave empty).
    assert await upload_parts.sweep_orphans(blobs, store, time.time() + LATER) == 3
    left = sorted([key async for key, _t in blobs.scan("parts/")])
    assert left == sorted(
        [part_key("up", p) for p in kept] + [part_key("photo", source), "parts/up/notes.txt"]
    )
    assert not blobs.path(part_key("up", crashed)).exists()
    assert not blobs.path("parts/cancelled").exists() and not blobs.path("parts/nobody").exists()
    assert unknown and failed
    assert await upload_parts.sweep_orphans(blobs, store, time.time() + LATER) == 0
    # Work files a stopped process left go once old; a fresh one (in use) stays.
    old, fresh = node.temp(".jpg"), node.temp(".jpg")
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(old, (time.time() - LATER, time.time() - LATER))
    assert node.drop_old_temps(time.time() - PART_GRACE_S) == 1
    assert fresh.exists() and not old.exists()
