"""Photos: orientation applied, every piece of metadata removed, a thumbnail and a preview.

Each output is a new image made from the pixels alone: nothing of the original's EXIF (GPS
position, camera serial, date), XMP, IPTC, ICC or comments is copied. JPEG thumbnails and
previews are decoded at a reduced scale (``draft``), which makes them about ten times cheaper
than decoding the whole photo; the full-size stripped original is made later, at low priority.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF from iPhones, when pillow-heif is installed (it is pinned in pyproject.toml)
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIC = True
except ImportError:  # pragma: no cover - depends on the installation
    HEIC = False

# A decompression bomb is refused: 50 megapixels is more than any phone camera makes.
Image.MAX_IMAGE_PIXELS = 50_000_000
THUMB_PX = 320
PREVIEW_PX = 1280


# What decoding a damaged or hostile photo raises: Pillow's OSError ("Truncated File Read",
# "could not create decoder object"), SyntaxError and EOFError; pillow-heif's ValueError and
# RuntimeError ("Decoder plugin generated an error", "Security limit exceeded"). Each means
# "this photo cannot be read" (unsupported_type), never a server error.
DECODE_ERRORS = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    SyntaxError,
    EOFError,
    ValueError,
    RuntimeError,
)


class BadImage(Exception):
    pass


def _open(path: Path, box: int | None) -> Image.Image:
    try:
        im = Image.open(path)
        if box is not None and im.format == "JPEG":
            im.draft("RGB", (box, box))  # decode at 1/2, 1/4 or 1/8 scale
        im.load()
    except DECODE_ERRORS as exc:
        raise BadImage(str(exc)) from None
    return im


def _upright(im: Image.Image) -> Image.Image:
    with contextlib.suppress(Exception):  # a broken EXIF block: keep the pixels as they are
        im = ImageOps.exif_transpose(im)
    return im


def _rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        base = Image.new("RGB", im.size, (255, 255, 255))
        base.paste(im, mask=im.getchannel("A"))
        return base
    return im.convert("RGB") if im.mode != "RGB" else im


def _bare(im: Image.Image) -> Image.Image:
    """The pixels only: a new image without ``info`` (EXIF, ICC, XMP, comments)."""
    im.info = {}
    return im


def thumbnail(src: Path, dest: Path) -> dict[str, Any]:
    """Write the thumbnail; returns the photo's upright width and height."""
    try:
        with Image.open(src) as probe:
            width, height = probe.size
    except DECODE_ERRORS as exc:
        raise BadImage(str(exc)) from None
    im = _upright(_open(src, THUMB_PX))
    # The upright size of the full photo: swap when the orientation turned it a quarter.
    if (im.width > im.height) != (width > height):
        width, height = height, width
    im = _bare(_rgb(im))
    im.thumbnail((THUMB_PX, THUMB_PX))
    im.save(dest, "JPEG", quality=80, optimize=True)
    return {"width": width, "height": height}


def preview_and_original(src: Path, preview: Path, original: Path) -> str:
    """Write the preview (JPEG) and the stripped full-size original; returns its MIME type."""
    im = _upright(_open(src, None))
    fmt = im.format or "JPEG"
    if fmt == "GIF" and getattr(im, "is_animated", False):
        # An animation keeps its frames; GIF carries no EXIF, only comments, dropped here.
        frames = ImageOps.exif_transpose(im)  # no-op for GIF, keeps the type checker honest
        frames.info = {k: v for k, v in im.info.items() if k in ("duration", "loop")}
        frames.save(original, "GIF", save_all=True)
        mime = "image/gif"
    elif fmt == "PNG":
        _bare(im).save(original, "PNG", optimize=False)
        mime = "image/png"
    elif fmt == "WEBP":
        _bare(im).save(original, "WEBP", quality=90)
        mime = "image/webp"
    else:  # JPEG, and HEIC (served as JPEG: every browser shows it)
        _bare(_rgb(im)).save(original, "JPEG", quality=90)
        mime = "image/jpeg"
    small = _bare(_rgb(im))
    small.thumbnail((PREVIEW_PX, PREVIEW_PX))
    small.save(preview, "JPEG", quality=82, optimize=True)
    return mime
