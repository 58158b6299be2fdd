"""Attachment rules without I/O: what a file is (by its bytes), its limits, download links.

A file's type is decided by its first bytes (:func:`sniff`), never by its name; a name whose
extension says something else is refused too, so ``homework.pdf`` holding a program is not
passed around as a PDF. Download links are signed with HMAC-SHA256 and expire
(:func:`sign_link`), so a link forwarded to someone else stops working.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

from realtime.errors import HomeroomError, bad_request, too_large

# Bytes of a file's start that :func:`sniff` needs.
SNIFF_BYTES = 4096
MAX_NAME_CHARS = 200


class Kind(StrEnum):
    IMAGE = "image"
    DOCUMENT = "document"
    AUDIO = "audio"
    VIDEO = "video"


@dataclass(frozen=True)
class FileType:
    kind: Kind
    mime: str
    # Extensions a name may carry for this type (lower case, without the dot).
    extensions: frozenset[str]


JPEG = FileType(Kind.IMAGE, "image/jpeg", frozenset({"jpg", "jpeg", "jfif"}))
PNG = FileType(Kind.IMAGE, "image/png", frozenset({"png"}))
GIF = FileType(Kind.IMAGE, "image/gif", frozenset({"gif"}))
WEBP = FileType(Kind.IMAGE, "image/webp", frozenset({"webp"}))
HEIC = FileType(Kind.IMAGE, "image/heic", frozenset({"heic", "heif"}))
PDF = FileType(Kind.DOCUMENT, "application/pdf", frozenset({"pdf"}))
DOCX = FileType(
    Kind.DOCUMENT,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    frozenset({"docx"}),
)
XLSX = FileType(
    Kind.DOCUMENT,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    frozenset({"xlsx"}),
)
PPTX = FileType(
    Kind.DOCUMENT,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    frozenset({"pptx"}),
)
OGG_OPUS = FileType(Kind.AUDIO, "audio/ogg", frozenset({"ogg", "opus", "oga"}))
WEBM_AUDIO = FileType(Kind.AUDIO, "audio/webm", frozenset({"webm", "weba"}))
MP4 = FileType(Kind.VIDEO, "video/mp4", frozenset({"mp4", "m4v", "mov"}))
WEBM_VIDEO = FileType(Kind.VIDEO, "video/webm", frozenset({"webm"}))

_OOXML = {"word/": DOCX, "xl/": XLSX, "ppt/": PPTX}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_MP4_BRANDS = {b"isom", b"iso2", b"mp41", b"mp42", b"avc1", b"M4V ", b"qt  ", b"dash", b"mp71"}


def sniff(head: bytes) -> FileType | None:
    """The type of a file from its first bytes, or None if it is no type Homeroom takes.

    WebM (audio or video) and OOXML (which of docx, xlsx, pptx) need more than the head: the
    caller settles them with :func:`settle_webm` and :func:`settle_zip`.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIC_BRANDS:
            return HEIC
        if brand in _MP4_BRANDS:
            return MP4
        return None
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"PK\x03\x04"):
        return DOCX  # provisional: settle_zip decides which
    if head.startswith(b"OggS") and b"OpusHead" in head[:100]:
        return OGG_OPUS
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head[:64]:
        return WEBM_AUDIO  # provisional: settle_webm decides audio or video
    return None


def settled_by_head(ftype: FileType) -> bool:
    """Whether :func:`sniff`'s answer is final: no container needs reading (images, PDF, MP4).

    Such a file needs no worker process to be identified; the others (OOXML, WebM, Ogg) are
    parsed in one (realtime/attachments/identify.py)."""
    return ftype not in (DOCX, WEBM_AUDIO, OGG_OPUS)


def settle_zip(names: list[str]) -> FileType | None:
    """Which Office document a ZIP is, from its member names (None: just a ZIP, refused)."""
    if "[Content_Types].xml" not in names:
        return None
    for prefix, ftype in _OOXML.items():
        if any(n.startswith(prefix) for n in names):
            return ftype
    return None


def zip_names(path: str) -> list[str]:
    """Member names of a ZIP file (blocking: call off the event loop)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()[:10_000]
    except Exception:
        # A damaged or hostile ZIP fails in many ways (BadZipFile, NotImplementedError for an
        # unknown version, UnicodeDecodeError for a name): all mean "not a document we take".
        return []


def extension(name: str) -> str:
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


def check_name(name: str) -> str:
    """A file name as shown and offered on download: no path, no control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip().strip(".")
    if not name:
        raise bad_request("the file needs a name")
    if len(name) > MAX_NAME_CHARS:
        raise bad_request(f"a file name has at most {MAX_NAME_CHARS} characters")
    return name


def check_matches_name(ftype: FileType, name: str) -> None:
    """Refuse a file whose name claims another type than its content."""
    ext = extension(name)
    if ext and ext not in ftype.extensions:
        raise HomeroomError(
            "unsupported_type",
            f"the file is {ftype.mime}, but its name ends in .{ext}: refused",
        )


def unsupported() -> HomeroomError:
    return HomeroomError(
        "unsupported_type",
        "this kind of file cannot be sent: photos (JPEG, PNG, GIF, WebP, HEIC), PDF and Office "
        "documents, Opus voice (Ogg, WebM) and video (MP4, WebM) can",
    )


@dataclass(frozen=True)
class Limits:
    """Largest file per kind, in bytes."""

    image: int
    document: int
    audio: int
    video: int

    @property
    def largest(self) -> int:
        return max(self.image, self.document, self.audio, self.video)

    def of(self, kind: Kind) -> int:
        return int(getattr(self, kind.value))


def check_declared_size(size: int, limits: Limits) -> None:
    if size > limits.largest:
        raise too_large(f"a file has at most {limits.largest // (1024 * 1024)} MiB")


def check_kind_size(ftype: FileType, size: int, limits: Limits) -> None:
    limit = limits.of(ftype.kind)
    if size > limit:
        raise too_large(f"a file of this kind ({ftype.kind}) has at most {limit // 1024} KiB")


def check_quota(used: int, size: int, quota: int) -> None:
    """``used`` bytes of the school's ``quota`` are taken; may ``size`` more be?"""
    if used + size > quota:
        raise HomeroomError(
            "quota_exceeded",
            f"the school's storage is full ({used // (1024 * 1024)} of "
            f"{quota // (1024 * 1024)} MiB used); ask the school's administrator",
        )


def check_duration(duration_s: float | None, max_s: int) -> None:
    if duration_s is None:
        raise HomeroomError("unsupported_type", "the voice message's length cannot be read")
    if duration_s > max_s:
        raise too_large(f"a voice message is at most {max_s} seconds")


# --- download links ----------------------------------------------------------------------------


class Variant(StrEnum):
    """What a download link serves: the file as sent, or a photo's JPEG preview or thumbnail."""

    ORIGINAL = "original"
    PREVIEW = "preview"
    THUMB = "thumb"


VARIANTS = tuple(v.value for v in Variant)


def _mac(secret: str, upload_id: str, variant: str, expires: int) -> str:
    msg = f"{upload_id}\n{variant}\n{expires}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()[:32]


def sign_link(secret: str, upload_id: str, variant: str, expires: int) -> str:
    """The path and query of a download link valid until ``expires`` (Unix seconds)."""
    sig = _mac(secret, upload_id, variant, expires)
    return f"/files/{upload_id}/{variant}?exp={expires}&sig={sig}"


def check_link(
    secret: str, upload_id: str, variant: str, expires: int, sig: str, now: float
) -> None:
    good = _mac(secret, upload_id, variant, expires)
    if not hmac.compare_digest(good, sig):
        raise HomeroomError("forbidden", "this download link is not valid")
    if now > expires:
        raise HomeroomError("link_expired", "this download link has expired; open the file again")


def content_disposition(name: str, inline: bool) -> str:
    """RFC 6266 with an RFC 5987 UTF-8 name (五年级二班作业.pdf) and an ASCII fallback."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in name)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The byte range ``[start, end)`` of a ``Range: bytes=`` header (one range), or None.

    Raises ValueError if the range cannot be satisfied."""
    if not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                raise ValueError("empty suffix range")
            return max(0, size - n), size
        start = int(first)
        end = size if last == "" else min(int(last) + 1, size)
    except ValueError:
        raise ValueError("bad range") from None
    if start >= size or start >= end:
        raise ValueError("range not satisfiable")
    return start, end
