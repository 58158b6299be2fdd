"""A class's join link as a QR code (SVG), to print on a letter home or share in a chat.

``qrcode`` (pure Python, pinned in pyproject.toml) draws it as one SVG path: a few KB, scales to
any print size, and needs no image library."""

from __future__ import annotations

import io

import qrcode
import qrcode.constants
import qrcode.image.svg


def join_url(origin: str, join_code: str) -> str:
    """The web app's page for a guardian joining this class, the code filled in."""
    return f"{origin.rstrip('/')}/#/join/{join_code}"


def svg(text: str) -> bytes:
    qr = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        box_size=10,
        border=4,
        image_factory=qrcode.image.svg.SvgPathImage,
    )
    qr.add_data(text)
    qr.make(fit=True)
    out = io.BytesIO()
    qr.make_image().save(out)
    return out.getvalue()
