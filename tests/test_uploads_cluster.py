"""Uploads in a cluster: two nodes, one PostgreSQL database, one Redis, one S3-compatible store
(a real SeaweedFS), and a storage directory of its own for each node (nothing on disk shared).

A parent's phone starts an upload through node A, loses the network, and the load balancer sends
the rest to node B: B continues from the offset A committed, not from zero. A photo acknowledged
by a node that then stops is finished (stripped original, preview) by the other.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from clients import files
from clients.homeroom import HomeroomClient, RequestError
from realtime.actions import pending_photos, retention
from realtime.storage.s3 import S3Store
from realtime.transport.rest import HUB
from realtime.transport.uploads import FILES
from tests.attachment_files import GPS_IFD, jpeg_with_gps, pdf_bytes
from tests.conftest import Server, make_settings, start_server, stop_server
from tests.seaweed import ready_bucket, seaweed_s3
from tests.services import drop_postgres_database, postgres_database, redis_url

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

BUCKET = "homeroom-cluster"


@dataclass
class Nodes:
    a: Server
    b: Server
    s3: S3Store


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nodes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Nodes]:
    tmp = tmp_path_factory.mktemp("uploads-cluster")
    db_url, db_name = postgres_database()
    servers: list[Server] = []
    with seaweed_s3(tmp / "weed") as weed:
        s3 = S3Store(weed.endpoint, BUCKET, weed.access_key, weed.secret_key)
        try:
            await ready_bucket(s3)

            def settings(name: str) -> Any:
                return make_settings(
                    tmp / name,  # its own storage_dir: staging files are per node
                    database_url=db_url,
                    redis_url=redis_url(),
                    bus_channel=f"homeroom-test-{uuid.uuid4().hex[:12]}",
                    storage_backend="s3",
                    s3_endpoint=weed.endpoint,
                    s3_bucket=BUCKET,
                    s3_access_key=weed.access_key,
                    s3_secret_key=weed.secret_key,
                )

            a = await start_server(settings("node-a"))
            servers.append(a)
            b = await start_server(settings("node-b"), seed=False)
            servers.append(b)
            b.demo = a.demo
            yield Nodes(a, b, s3)
        finally:
            for srv in reversed(servers):
                await stop_server(srv)
            await s3.close()
            drop_postgres_database(db_name)


async def _parts(s3: S3Store, upload_id: str) -> list[str]:
    """The parts of an upload in the bucket, listed with the S3 API itself."""
    c = await s3._c()
    res = await c.list_objects_v2(Bucket=BUCKET, Prefix=f"parts/{upload_id}/")
    return [o["Key"] for o in res.get("Contents", [])]


async def _send_cut_off(srv: Server, c: HomeroomClient, upload_id: str, data: bytes, start: int,
                        end: int, cut: int) -> None:  # fmt: skip
    """A PATCH of ``start``..``end`` whose connection drops after ``cut`` bytes of its body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.settings.port)
    writer.write(
        (
            f"PATCH /api/v1/uploads/{upload_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {c.token}\r\nUpload-Offset: {start}\r\n"
            f"Content-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {end - start}\r\n\r\n"
        ).encode()
        + data[start : start + cut]
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    del reader


async def test_an_upload_started_on_one_node_continues_on_another(nodes: Nodes) -> None:
    on_a = await nodes.a.client("wanghao", connect=False)
    on_b = await nodes.b.client("wanghao", connect=False)
    data = pdf_bytes(pad=900_000)
    third = len(data) // 3
    up = await files.create(on_a, "练习.pdf", len(data))
    await files.send_chunk(on_a, up["id"], data, 0, third)
    # The second third goes to A too, and the network drops half way through it.
    await _send_cut_off(nodes.a, on_a, up["id"], data, third, 2 * third, third // 2)
    state: dict[str, Any] = {}
    for _ in range(100):  # A stores what arrived, then commits the offset
        state = await files.offset(on_b, up["id"])  # asked of B
        if state["offset"] > third:
            break
        await asyncio.sleep(0.1)
    reached = state["offset"]
    assert state["status"] == "uploading" and third < reached <= third + third // 2
    assert len(await _parts(nodes.s3, up["id"])) == 2  # what A took is in the shared store
    # B refuses a chunk at a stale offset and names the one to continue from.
    with pytest.raises(RequestError) as err:
        await files.send_chunk(on_b, up["id"], data, third, third + 10)
    assert err.value.code == "conflict"
    assert (await files.offset(on_a, up["id"]))["offset"] == reached
    # The rest goes to B (its own disk has none of the bytes A took).
    done = await files.resume(on_b, up["id"], data, chunk=third)
    assert done["status"] == "ready" and done["attachment"]["size"] == len(data)
    # Byte for byte through either node; no part left behind.
    for c in (on_a, on_b):
        link = (await files.links(c, [up["id"]], "original"))[up["id"]]
        status, _headers, body = await files.download(link)
        assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert await _parts(nodes.s3, up["id"]) == []
    # A's staging copy of the first two thirds goes with its next sweep.
    staged = Path(nodes.a.settings.storage_dir) / "staging" / up["id"]
    assert staged.exists()
    await retention.sweep(nodes.a.app[HUB], nodes.a.app[FILES])
    assert not staged.exists()


async def test_a_photo_whose_node_stopped_is_finished_by_the_other(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_a = await nodes.a.client("wanghao", connect=False)
    on_b = await nodes.b.client("wanghao", connect=False)
    # Node A acknowledges the photo (its thumbnail made) and stops before the stripped original
    # and the preview, losing its disk: nothing of the photo is left on A.
    a_files = nodes.a.app[FILES]
    monkeypatch.setattr(a_files.photos, "start", lambda hub, files, upload_id: None)
    att = await files.upload(on_a, jpeg_with_gps(640, 320), "IMG_0042.jpg")
    (Path(nodes.a.settings.storage_dir) / "staging" / att["id"]).unlink()
    assert len(await _parts(nodes.s3, att["id"])) == 1  # the source, until it is finished
    links = await files.links(on_b, [att["id"]], "thumb")
    status, _h, _b = await files.download(links[att["id"]])
    assert status == 200  # the thumbnail was there at the acknowledgement
    link = (await files.links(on_b, [att["id"]], "original"))[att["id"]]
    status, _h, _b = await files.download(link)
    assert status == 409  # not yet: "the photo is still being prepared"
    # B's sweep adopts photos left pending too long (here: at once).
    b_files = nodes.b.app[FILES]
    assert await pending_photos.resume_pending(nodes.b.app[HUB], b_files, adopt_after_s=0) >= 1
    await b_files.photos.wait(att["id"], 60)
    for variant in ("original", "preview"):
        link = (await files.links(on_a, [att["id"]], variant))[att["id"]]
        status, headers, body = await files.download(link)
        assert status == 200 and headers["Content-Type"] == "image/jpeg", variant
        im = Image.open(io.BytesIO(body))
        assert not im.getexif().get_ifd(GPS_IFD) and im.height > im.width  # upright, no GPS
    assert await _parts(nodes.s3, att["id"]) == []
