"""The upload rules without I/O (realtime/domain/uploads.py): what a chunk may bring, and which
parts in the blob store belong to no upload."""

from __future__ import annotations

import pytest

from realtime.domain import uploads as states
from realtime.domain.attachments import Limits
from realtime.domain.uploads import PART_GRACE_S, OffsetMismatch, part_key
from realtime.errors import HomeroomError

LIMITS = Limits(10_000, 10_000, 10_000, 10_000)


def test_a_chunk_goes_at_the_committed_offset_within_the_declared_size() -> None:
    states.check_chunk("uploading", 100, 100, 50, 200, 1000)
    states.check_chunk("uploading", 100, 100, None, 200, 1000)  # length not declared
    with pytest.raises(HomeroomError) as err:
        states.check_chunk("ready", 100, 100, 50, 200, 1000)
    assert err.value.code == "conflict"
    with pytest.raises(OffsetMismatch) as mismatch:
        states.check_chunk("uploading", 90, 100, 50, 200, 1000)
    assert mismatch.value.offset == 100 and mismatch.value.code == "conflict"
    for length, chunk_max in ((101, 1000), (50, 40)):
        with pytest.raises(HomeroomError) as err:
            states.check_chunk("uploading", 100, 100, length, 200, chunk_max)
        assert err.value.code == "too_large"


def test_the_head_of_a_file_is_checked_before_the_rest_comes() -> None:
    states.check_head(b"%PDF-1.7\n" + b"\0" * 100, 50_000, LIMITS)  # documents: size later
    with pytest.raises(HomeroomError) as err:
        states.check_head(b"MZ\x90\0" + b"\0" * 100, 500, LIMITS)
    assert err.value.code == "unsupported_type"
    with pytest.raises(HomeroomError) as err:
        states.check_head(b"\xff\xd8\xff\xe0" + b"\0" * 100, 50_000, LIMITS)  # a JPEG too big
    assert err.value.code == "too_large"


def test_offsets_and_part_keys() -> None:
    assert states.offset("uploading", 500, 120) == 120
    assert states.offset("ready", 500, 0) == 500
    part = states.new_part(4096)
    key = part_key("u1", part)
    assert key.startswith("parts/u1/4096-") and states.parse_part_key(key) == ("u1", part)
    for other in ("ab/cd/" + "0" * 64, "parts/u1", "parts/u1/x-1", "parts/u1/1-t/x", "parts//1-t"):
        assert states.parse_part_key(other) is None, other
    meta = {"parts": [[0, "aa"], [4096, "bb"]], "width": 3}
    assert states.parts_of(meta) == [(0, "aa"), (4096, "bb")] and states.parts_of(None) == []


def test_live_parts_are_those_of_unfinished_uploads_and_pending_photos() -> None:
    meta = {"parts": [[0, "aa"]]}
    assert states.live_parts("uploading", False, meta) == [(0, "aa")]
    assert states.live_parts("ready", True, meta) == [(0, "aa")]  # a photo's source
    assert states.live_parts("ready", False, meta) == []
    assert states.live_parts("deleted", False, meta) == []  # its removal failed: not live


def test_orphans_are_old_parts_no_upload_needs() -> None:
    now = 1_000_000.0
    old, young = now - PART_GRACE_S - 1, now - 10
    live = {"u1": [(0, "aa")], "photo": [(0, "src")]}
    listed = [
        (part_key("u1", (0, "aa")), old),  # u1's committed part
        (part_key("u1", (4096, "bb")), old),  # stored, never committed: a crash
        (part_key("u1", (4096, "cc")), young),  # perhaps being committed right now
        (part_key("photo", (0, "src")), old),  # a pending photo's source
        (part_key("gone", (0, "dd")), old),  # an upload deleted (or never known)
        ("parts/u1/README", old),  # not a key this code writes: left alone
    ]
    assert states.orphan_parts(listed, live, now) == [
        part_key("u1", (4096, "bb")),
        part_key("gone", (0, "dd")),
    ]
    assert states.orphan_parts(listed, live, now, grace_s=0.0) == [
        part_key("u1", (4096, "bb")),
        part_key("u1", (4096, "cc")),
        part_key("gone", (0, "dd")),
    ]
    assert states.orphan_parts([], live, now) == []
