"""Upload rules without I/O: an upload's states, what a chunk may bring, and the parts in the
blob store that belong to no upload any more.

An upload is ``uploading`` (chunks appended at the offset committed in the database), then
``ready`` (checked and stored; a photo stays ``pending`` until its stripped original and preview
are made) or ``deleted``. The received bytes of an unfinished upload are kept as *parts* in the
blob store (realtime/actions/upload_parts.py), listed in ``uploads.meta["parts"]``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from realtime.domain import attachments as rules
from realtime.domain.attachments import Kind, Limits
from realtime.errors import HomeroomError, conflict, too_large

# Statuses of an upload.
UPLOADING, READY, DELETED = "uploading", "ready", "deleted"

# A part as recorded in uploads.meta["parts"]: [start byte, token]; it ends where the next
# part starts (the last one at uploads.stored_bytes, or the file's size once complete).
Part = tuple[int, str]
PARTS_PREFIX = "parts/"
# A part that no upload lists is removed once it is this old (seconds). A part is stored just
# before the transaction that lists it: younger than this, it may be a live upload's part about
# to be committed (the gap is milliseconds; an hour leaves room for a database that stalls).
PART_GRACE_S = 3600.0


class OffsetMismatch(HomeroomError):
    """A chunk sent at another offset than the one committed (the client continues there)."""

    def __init__(self, offset: int) -> None:
        super().__init__("conflict", f"this upload continues at byte {offset}")
        self.offset = offset


def offset(status: str, size: int, committed: int) -> int:
    """The offset a client continues from (all of it once ready)."""
    return size if status == READY else committed


def check_chunk(
    status: str, at: int, committed: int, length: int | None, size: int, chunk_max: int
) -> None:
    """May a chunk of ``length`` bytes (None: not declared) be appended at offset ``at``?"""
    if status != UPLOADING:
        raise conflict("this upload is complete")
    if at != committed:
        raise OffsetMismatch(committed)
    if length is not None and length > chunk_max:
        raise too_large(f"a chunk has at most {chunk_max} bytes")
    if length is not None and committed + length > size:
        raise too_large("more bytes than the upload declared")


def check_head(head: bytes, size: int, limits: Limits) -> None:
    """Refuse at the first chunk what no file type matches, before the rest is sent."""
    ftype = rules.sniff(head)
    if ftype is None:
        raise rules.unsupported()
    if ftype.kind is not Kind.DOCUMENT and ftype.mime != "audio/webm":
        rules.check_kind_size(ftype, size, limits)


# --- parts --------------------------------------------------------------------------------------


def part_key(upload_id: str, part: Part) -> str:
    """``parts/<upload id>/<start>-<token>``: never a SHA-256 key, so a part is never taken for
    (or removed as) a stored file."""
    return f"{PARTS_PREFIX}{upload_id}/{part[0]}-{part[1]}"


def parse_part_key(key: str) -> tuple[str, Part] | None:
    """The upload and the part a key names, or None if it is not a part's key."""
    if not key.startswith(PARTS_PREFIX):
        return None
    upload_id, sep, name = key[len(PARTS_PREFIX) :].partition("/")
    start, dash, token = name.partition("-")
    if not (upload_id and sep and dash and token and start.isdigit()) or "/" in name:
        return None
    return upload_id, (int(start), token)


def parts_of(meta: dict[str, Any] | None) -> list[Part]:
    return [(int(p[0]), str(p[1])) for p in (meta or {}).get("parts", [])]


def new_part(start: int) -> Part:
    """A part starting at byte ``start``; its random token makes two nodes writing the same
    range at once write two objects (the one whose offset is not committed removes its own)."""
    return (start, secrets.token_hex(8))


def live_parts(status: str, pending: bool, meta: dict[str, Any] | None) -> list[Part]:
    """The parts an upload's row still needs: an unfinished upload's received bytes, a pending
    photo's source. A deleted upload's list may name parts whose removal failed: none live."""
    if status == UPLOADING or (status == READY and pending):
        return parts_of(meta)
    return []


def orphan_parts(
    listed: Iterable[tuple[str, float]],
    live: Mapping[str, Sequence[Part]],
    now: float,
    grace_s: float = PART_GRACE_S,
) -> list[str]:
    """The keys among ``listed`` (key, last modified) that are parts no upload needs (``live``:
    each upload's live parts; an upload not in it needs none) and older than ``grace_s``.

    Left alone: anything younger (perhaps stored by a live upload whose commit is under way),
    and keys under ``parts/`` that this code never writes."""
    out = []
    for key, modified in listed:
        named = parse_part_key(key)
        if named is None or modified > now - grace_s:
            continue
        upload_id, part = named
        if part not in live.get(upload_id, ()):
            out.append(key)
    return out
