"""This node's staging files: the bytes of uploads in progress, and work files.

``storage_dir/staging/<upload id>`` holds what this node received of an upload: a cache of the
committed prefix (the parts in the blob store are what every node shares; bytes beyond the
committed offset are cut off before anything is appended). ``storage_dir/tmp`` holds work files
(thumbnails, previews, parts on their way to the store), each under a random name.

The functions here block on the disk: call them in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO


class Staging:
    def __init__(self, root: Path) -> None:
        self.dir = root / "staging"
        self.tmp = root / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, upload_id: str) -> Path:
        return self.dir / upload_id

    def temp(self, suffix: str) -> Path:
        """A new work file's name (nothing is created)."""
        return self.tmp / (secrets.token_hex(12) + suffix)

    def names(self) -> list[str]:
        """The uploads with a staging file here."""
        return [p.name for p in self.dir.iterdir()]

    def drop_old_temps(self, older_than: float) -> int:
        """Remove work files last changed before ``older_than`` (epoch seconds): left by a
        process that stopped mid-way. Younger ones may be in use (by another process sharing
        this directory, too). Returns how many went."""
        gone = 0
        for p in self.tmp.iterdir():
            try:
                if p.stat().st_mtime < older_than:
                    p.unlink()
                    gone += 1
            except FileNotFoundError:
                continue
        return gone


def write(fh: BinaryIO, blocks: list[bytes], sync: bool = False) -> None:
    for block in blocks:
        fh.write(block)
    if sync:
        fh.flush()
        os.fsync(fh.fileno())


def head(path: Path, n: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def truncate(fh: BinaryIO, size: int) -> None:
    fh.flush()
    fh.truncate(size)


def cut(path: Path, size: int) -> None:
    with open(path, "ab") as fh:
        fh.truncate(size)


def append(path: Path, blocks: list[bytes], sync: bool) -> None:
    with open(path, "ab") as fh:
        write(fh, blocks, sync)


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
