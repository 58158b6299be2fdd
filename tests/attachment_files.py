"""Small real files for attachment tests: a JPEG with GPS EXIF, a PDF, Opus voice in WebM, an
MP4 video."""

from __future__ import annotations

import io
from fractions import Fraction

from PIL import Image

GPS_IFD = 0x8825
ORIENTATION = 0x0112
SERIAL = 0xA431  # BodySerialNumber (Exif IFD)


def jpeg_with_gps(width: int = 64, height: int = 32, orientation: int = 6) -> bytes:
    """A photo as a phone takes it: GPS position, camera serial, turned by EXIF orientation."""
    im = Image.new("RGB", (width, height), (200, 30, 30))
    im.paste((30, 30, 200), (0, 0, width // 2, height))  # a left half of another colour
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(0x8769)[SERIAL] = "SN-123456789"
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (Fraction(39), Fraction(54), Fraction(2712, 100))
    gps[3] = "E"
    gps[4] = (Fraction(116), Fraction(23), Fraction(1788, 100))
    out = io.BytesIO()
    im.save(out, "JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 255, 0)).save(out, "PNG")
    return out.getvalue()


def pdf_bytes(pages: int = 1, pad: int = 0) -> bytes:
    body = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    body += b"2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
    body += b"%" + b"x" * pad + b"\n" if pad else b""
    return body + b"trailer<</Root 1 0 R>>\n%%EOF\n"


def webm_voice(seconds: float = 2.0) -> bytes:
    """Opus in WebM, as Chromium's MediaRecorder makes it (encoded here with PyAV)."""
    return _opus(seconds, "webm")


def ogg_voice(seconds: float = 2.0) -> bytes:
    """Opus in Ogg, as Firefox's MediaRecorder makes it."""
    return _opus(seconds, "ogg")


def _opus(seconds: float, container: str) -> bytes:
    import array
    import math

    import av

    out_buf = io.BytesIO()
    out = av.open(out_buf, "w", format=container)
    stream = out.add_stream("libopus", rate=48000)
    stream.layout = "mono"  # type: ignore[union-attr]
    tone = array.array("h", [int(3000 * math.sin(i / 10)) for i in range(960)]).tobytes()
    pts = 0
    for _ in range(int(seconds * 50)):
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(tone)
        frame.sample_rate = 48000
        frame.pts = pts
        pts += 960
        for p in stream.encode(frame):  # type: ignore[union-attr]
            out.mux(p)
    for p in stream.encode(None):  # type: ignore[union-attr]
        out.mux(p)
    out.close()
    return out_buf.getvalue()


def mp4_video(frames: int = 20) -> bytes:
    """A short MP4 (MPEG-4 Part 2 video, as PyAV's FFmpeg encodes it without extra codecs)."""
    import av

    out_buf = io.BytesIO()
    out = av.open(out_buf, "w", format="mp4")
    stream = out.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"  # type: ignore[union-attr]
    for i in range(frames):
        frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), (i * 10, 80, 160)))
        for p in stream.encode(frame):  # type: ignore[union-attr]
            out.mux(p)
    for p in stream.encode(None):  # type: ignore[union-attr]
        out.mux(p)
    out.close()
    return out_buf.getvalue()


def heic_bytes(width: int = 64, height: int = 32) -> bytes:
    """An iPhone-style HEIC photo (encoded with pillow-heif)."""
    from pillow_heif import register_heif_opener

    register_heif_opener()
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 10)).save(out, "HEIF", quality=80)
    return out.getvalue()


def docx_bytes(broken: bool = False) -> bytes:
    """A Word document's container (OOXML is a ZIP); ``broken``: its central directory claims a
    ZIP version no reader knows, as a file damaged in transit may."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    data = bytearray(out.getvalue())
    if broken:
        central = data.index(b"PK\x01\x02")
        data[central + 6 : central + 8] = (163).to_bytes(2, "little")  # version needed: 16.3
    return bytes(data)
