"""The blob store interface: content-addressed objects, written whole, read by byte range.

Keys are the SHA-256 of the content (:func:`blob_key`), so the same photo sent twice is stored
once, and a stored object never changes. Callers hand over a finished local file; the store
makes it durable before ``put_file`` returns (a directory: fsync and rename; S3: the PUT's 200).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

# Bytes read from a file or an object at a time: the most a download holds in memory.
READ_CHUNK = 256 * 1024


class BlobStore(Protocol):
    async def put_file(self, key: str, path: Path) -> bool:
        """Store the file at ``path`` under ``key`` and remove ``path``.

        Returns False if an object with that key was already there (nothing written)."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size, or None if there is none."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes from ``start`` up to ``end`` (exclusive; None: to the end)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing one that is not there is not an error."""
        ...

    def scan(self, prefix: str) -> AsyncIterator[tuple[str, float]]:
        """Every object whose key starts with ``prefix``: its key and when it was written
        (epoch seconds), in no particular order."""
        ...

    async def close(self) -> None: ...


def blob_key(digest: str) -> str:
    """The object name of content whose SHA-256 hex digest is ``digest``."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("not a SHA-256 hex digest")
    return f"{digest[:2]}/{digest[2:4]}/{digest}"


def fsync_path(path: Path) -> None:
    """Flush a file or a directory (its entries) to disk (call it off the event loop)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in chunks (call it off the event loop)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()
