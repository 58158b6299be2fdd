"""The S3 blob store against a real S3-compatible server (SeaweedFS), alone and under a server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from clients import files
from realtime.storage import blob_key
from realtime.storage.s3 import PART_BYTES, S3Store
from tests.attachment_files import jpeg_with_gps, pdf_bytes
from tests.conftest import make_settings, start_server, stop_server
from tests.seaweed import ready_bucket, seaweed_s3


async def test_s3_backend_against_seaweedfs(tmp_path: Path) -> None:
    with seaweed_s3(tmp_path / "weed") as s3:
        store = S3Store(s3.endpoint, "homeroom-blobs", s3.access_key, s3.secret_key)
        await ready_bucket(store)
        try:
            # Small and multipart objects, ranges, no duplicates, delete.
            for n in (1000, PART_BYTES + 123_456):
                data = os.urandom(n)
                src = tmp_path / f"in-{n}"
                src.write_bytes(data)
                key = blob_key(hashlib.sha256(data).hexdigest())
                assert await store.put_file(key, src) is True and not src.exists()
                assert await store.size(key) == n
                assert b"".join([c async for c in store.read(key)]) == data
                assert b"".join([c async for c in store.read(key, 7, 4000)]) == data[7:4000]
                src.write_bytes(data)
                assert await store.put_file(key, src) is False  # already there
                await store.delete(key)
                assert await store.size(key) is None

            # A whole server on it: upload, attach, download, delete the message.
            settings = make_settings(
                tmp_path,
                storage_backend="s3",
                s3_endpoint=s3.endpoint,
                s3_bucket="homeroom-blobs",
                s3_access_key=s3.access_key,
                s3_secret_key=s3.secret_key,
            )
            srv = await start_server(settings)
            try:
                wang = await srv.client("wanghao")
                doc = pdf_bytes(pad=50_000)
                att = await wang.upload(doc, "作业.pdf")
                photo = await wang.upload(jpeg_with_gps(), "p.jpg")
                stream = f"class:{srv.class_id}:students"
                msg = await wang.send_chat(stream, "看", attachments=[att["id"], photo["id"]])
                links = await files.links(wang, [att["id"], photo["id"]], "original")
                status, _h, body = await files.download(links[att["id"]])
                assert status == 200 and body == doc
                status, headers, body = await files.download(links[photo["id"]])
                assert status == 200 and headers["Content-Type"] == "image/jpeg"
                key = blob_key(hashlib.sha256(doc).hexdigest())
                assert await store.size(key) == len(doc)
                await wang.request("chat.delete", {"message_id": msg["id"]})
                assert await store.size(key) is None
            finally:
                await stop_server(srv)
        finally:
            await store.close()
