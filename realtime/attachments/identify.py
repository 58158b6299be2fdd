"""What an uploaded file is: its type by content, and for voice its duration (no decoding).

Runs in a worker process (realtime/attachments/workers.py): blocking file reads are fine here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from realtime.attachments import voice
from realtime.domain import attachments as rules
from realtime.domain.attachments import FileType, Kind
from realtime.errors import HomeroomError


def identify(path: Path, voice_max_s: int) -> tuple[FileType, dict[str, Any]]:
    """The file's type and facts (blocking; runs in a worker process)."""
    with open(path, "rb") as fh:
        head = fh.read(rules.SNIFF_BYTES)
    ftype = rules.sniff(head)
    meta: dict[str, Any] = {}
    if ftype is rules.DOCX:
        ftype = rules.settle_zip(rules.zip_names(str(path)))
    elif ftype is rules.WEBM_AUDIO:
        try:
            info = voice.probe_webm(path)
        except (ValueError, OSError):
            raise rules.unsupported() from None
        if info.has_video:
            ftype = rules.WEBM_VIDEO
        elif info.audio_codecs != ["A_OPUS"]:
            raise HomeroomError("unsupported_type", "voice messages are Opus audio")
        meta["duration_s"] = info.duration_s
    elif ftype is rules.OGG_OPUS:
        meta["duration_s"] = voice.ogg_opus_duration(path)
    if ftype is None:
        raise rules.unsupported()
    if ftype.kind is Kind.AUDIO:
        rules.check_duration(meta.get("duration_s"), voice_max_s)
        meta["duration_s"] = round(float(meta["duration_s"]), 2)
    return ftype, meta
