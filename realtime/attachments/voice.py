"""Voice messages: Opus in Ogg or WebM, checked by reading the container, never transcoded.

Ogg Opus is read with mutagen (the last page's granule position gives the duration). WebM as
browsers' MediaRecorder writes it has no duration in its header (it is written live, with
segments and clusters of unknown size), so :func:`probe_webm` walks the EBML elements and takes
the last block's time: a few hundred bytes read per cluster, nothing decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SEGMENT = 0x18538067
INFO = 0x1549A966
TIMECODE_SCALE = 0x2AD7B1
DURATION = 0x4489
TRACKS = 0x1654AE6B
TRACK_ENTRY = 0xAE
TRACK_TYPE = 0x83
CODEC_ID = 0x86
CLUSTER = 0x1F43B675
TIMECODE = 0xE7
SIMPLE_BLOCK = 0xA3
BLOCK_GROUP = 0xA0
BLOCK = 0xA1
EBML = 0x1A45DFA3
DOCTYPE = 0x4282

# Elements whose children are read in line (they may have an unknown size).
_CONTAINERS = {SEGMENT, INFO, TRACKS, TRACK_ENTRY, CLUSTER, BLOCK_GROUP, EBML}
# An Opus frame lasts 20 ms by default: the last block's start plus one frame is the end.
LAST_FRAME_S = 0.02


@dataclass
class WebmInfo:
    doctype: str = ""
    audio_codecs: list[str] | None = None
    has_video: bool = False
    duration_s: float | None = None


def _vint(fh: BinaryIO, keep_marker: bool) -> tuple[int, int] | None:
    first = fh.read(1)
    if not first:
        return None
    b = first[0]
    length = 1
    mask = 0x80
    while length <= 8 and not b & mask:
        mask >>= 1
        length += 1
    if length > 8:
        raise ValueError("bad EBML variable-length integer")
    rest = fh.read(length - 1)
    if len(rest) != length - 1:
        return None
    value = b if keep_marker else b & (mask - 1)
    unknown = not keep_marker and value == mask - 1
    for x in rest:
        value = (value << 8) | x
        if x != 0xFF:
            unknown = False
    return (-1 if unknown else value), length


def probe_webm(path: Path) -> WebmInfo:
    """Tracks and duration of a WebM file. Raises ValueError if it is not one."""
    info = WebmInfo(audio_codecs=[])
    scale = 1_000_000  # ns per timecode unit
    header_duration: float | None = None
    cluster_tc = 0
    last_tc: int | None = None
    track: dict[str, int] = {}
    size_total = path.stat().st_size
    with open(path, "rb") as fh:
        while True:
            got = _vint(fh, keep_marker=True)
            if got is None:
                break
            eid = got[0]
            got = _vint(fh, keep_marker=False)
            if got is None:
                break
            size = got[0]
            if eid in _CONTAINERS:
                if eid == TRACK_ENTRY:
                    track = {}
                continue
            if size < 0:
                raise ValueError("unknown size on a leaf element")
            start = fh.tell()
            if start + size > size_total:
                break  # the file ends inside this element (it was cut): keep what was read
            if eid in (SIMPLE_BLOCK, BLOCK):
                head = fh.read(min(size, 12))
                n = _vint_bytes(head)
                if n is not None and len(head) >= n + 2:
                    rel = struct.unpack(">h", head[n : n + 2])[0]
                    tc = cluster_tc + rel
                    last_tc = tc if last_tc is None else max(last_tc, tc)
            elif eid == TIMECODE:
                cluster_tc = int.from_bytes(fh.read(size), "big")
            elif eid == TIMECODE_SCALE:
                scale = int.from_bytes(fh.read(size), "big") or scale
            elif eid == DURATION:
                raw = fh.read(size)
                if size in (4, 8):
                    header_duration = struct.unpack(">f" if size == 4 else ">d", raw)[0]
            elif eid == DOCTYPE:
                info.doctype = fh.read(size).decode("ascii", "replace")
            elif eid == TRACK_TYPE:
                kind = int.from_bytes(fh.read(size), "big")
                track["type"] = kind
                if kind == 1:
                    info.has_video = True
            elif eid == CODEC_ID:
                codec = fh.read(size).decode("ascii", "replace")
                if track.get("type", 2) != 1:
                    info.audio_codecs.append(codec)  # type: ignore[union-attr]
                if codec.startswith("V_"):
                    info.has_video = True
            fh.seek(start + size)
    if info.doctype != "webm":
        raise ValueError("not a WebM file")
    ends = []
    if header_duration is not None and header_duration > 0:
        ends.append(header_duration * scale / 1e9)
    if last_tc is not None:
        ends.append(last_tc * scale / 1e9 + LAST_FRAME_S)
    info.duration_s = max(ends) if ends else None
    return info


def _vint_bytes(data: bytes) -> int | None:
    """Length in bytes of the variable-length integer at the start of ``data``."""
    if not data:
        return None
    b = data[0]
    for n in range(1, 9):
        if b & (0x80 >> (n - 1)):
            return n
    return None


def ogg_opus_duration(path: Path) -> float | None:
    """Duration of an Ogg Opus file, or None if it is not a readable one."""
    from mutagen import MutagenError
    from mutagen.oggopus import OggOpus

    try:
        return float(OggOpus(path).info.length)  # type: ignore[attr-defined]
    except (MutagenError, ValueError, OSError):
        return None
    except Exception:  # a damaged file can break the parser in other ways (IndexError, ...)
        return None
