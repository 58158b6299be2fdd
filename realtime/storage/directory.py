"""Blobs as files in a directory: ``<root>/blobs/ab/cd/<sha256>``, written by rename.

A blob appears whole or not at all: the caller's file is fsync'd, renamed into place (the
temporary file lives in the same file system, so the rename is atomic) and the directory is
fsync'd, all before ``put_file`` returns. File work runs in a thread: an fsync can take tens of
milliseconds on a busy disk, which the event loop must not wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from realtime.storage.base import READ_CHUNK, fsync_path


class DirectoryStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        if ".." in key or key.startswith("/"):
            raise ValueError("bad blob key")
        return self.blobs / key

    def _put(self, key: str, path: Path) -> bool:
        dest = self.path(key)
        if dest.exists():
            path.unlink(missing_ok=True)
            return False
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
        for attempt in range(3):
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
                break
            except FileNotFoundError:
                # A delete removed the directory, empty, between the mkdir and the rename.
                if attempt == 2 or not path.exists():
                    raise
        fsync_path(dest.parent)
        return True

    async def put_file(self, key: str, path: Path) -> bool:
        return await asyncio.to_thread(self._put, key, path)

    async def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        # In a thread: a read that misses the page cache waits for the disk.
        fh = await asyncio.to_thread(open, self.path(key), "rb")
        try:
            await asyncio.to_thread(fh.seek, start)
            left = None if end is None else end - start
            while left is None or left > 0:
                n = READ_CHUNK if left is None else min(READ_CHUNK, left)
                chunk = await asyncio.to_thread(fh.read, n)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            fh.close()

    def _delete(self, key: str) -> None:
        path = self.path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # Its directory too once empty (an upload's parts have one each), up to blobs/.
        for parent in path.parents:
            if parent == self.blobs:
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (or already gone)
                break

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    def _scan(self, prefix: str) -> list[tuple[str, float]]:
        # Only the directory the prefix names is walked (``parts/`` rather than every blob).
        top = self.path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.blobs
        found = []
        for here, _dirs, names in os.walk(top):
            for name in names:
                path = Path(here) / name
                key = path.relative_to(self.blobs).as_posix()
                if key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        found.append((key, path.stat().st_mtime))
        return found

    async def scan(self, prefix: str) -> AsyncIterator[tuple[str, float]]:
        for item in await asyncio.to_thread(self._scan, prefix):
            yield item

    async def close(self) -> None:
        return None
