"""Blobs in an S3-compatible object store (AWS S3, MinIO, SeaweedFS, Ceph RGW), via aiobotocore.

Content addressing makes every object write-once, so the usual S3 consistency questions do not
arise: a key either holds the one content it names or nothing. Files up to ``PART_BYTES`` go in
one PUT; larger ones as a multipart upload, ``PART_BYTES`` at a time, so one upload holds at
most one part in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from realtime.storage.base import READ_CHUNK

# Memory per upload in flight to S3 (S3's smallest allowed part is 5 MiB).
PART_BYTES = 8 * 1024 * 1024


def _read_part(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class S3Store:
    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        prefix: str = "",
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._args: dict[str, Any] = {
            "endpoint_url": endpoint or None,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "region_name": region,
            "config": AioConfig(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        }
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _c(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    session = get_session()
                    self._client = await self._stack.enter_async_context(
                        session.create_client("s3", **self._args)
                    )
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def ensure_bucket(self) -> None:
        c = await self._c()
        try:
            await c.head_bucket(Bucket=self.bucket)
        except ClientError:
            await c.create_bucket(Bucket=self.bucket)

    async def put_file(self, key: str, path: Path) -> bool:
        c = await self._c()
        try:
            if await self.size(key) is not None:
                return False
            total = os.stat(path).st_size
            if total <= PART_BYTES:
                body = await asyncio.to_thread(_read_part, path, 0, total)
                await c.put_object(Bucket=self.bucket, Key=self._key(key), Body=body)
                return True
            up = await c.create_multipart_upload(Bucket=self.bucket, Key=self._key(key))
            parts = []
            try:
                for n, offset in enumerate(range(0, total, PART_BYTES), start=1):
                    body = await asyncio.to_thread(_read_part, path, offset, PART_BYTES)
                    res = await c.upload_part(
                        Bucket=self.bucket,
                        Key=self._key(key),
                        UploadId=up["UploadId"],
                        PartNumber=n,
                        Body=body,
                    )
                    parts.append({"ETag": res["ETag"], "PartNumber": n})
                await c.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    UploadId=up["UploadId"],
                    MultipartUpload={"Parts": parts},
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    await c.abort_multipart_upload(
                        Bucket=self.bucket, Key=self._key(key), UploadId=up["UploadId"]
                    )
                raise
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def size(self, key: str) -> int | None:
        c = await self._c()
        try:
            res = await c.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(res["ContentLength"])

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        c = await self._c()
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        res = await c.get_object(**args)
        async with res["Body"] as body:
            while chunk := await body.read(READ_CHUNK):
                yield chunk

    async def delete(self, key: str) -> None:
        c = await self._c()
        await c.delete_object(Bucket=self.bucket, Key=self._key(key))

    async def scan(self, prefix: str) -> AsyncIterator[tuple[str, float]]:
        c = await self._c()
        pages = c.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        async for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix) :], obj["LastModified"].timestamp()

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None
