"""Draw the app's icons (public/icons/icon-{192,512}.png): the favicon's white house on a blue
rounded square, as PNG with the standard library only. Run: python3 scripts/make_icons.py"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

BLUE = (0x1F, 0x6F, 0xEB, 255)
WHITE = (255, 255, 255, 255)
CLEAR = (0, 0, 0, 0)


def inside_house(x: float, y: float) -> bool:
    # The favicon's path on a 32-unit grid: M8 17 l8-7 8 7 v8 h-5 v-5 h-6 v5 H8 z
    if 17 <= y <= 25 and 8 <= x <= 24:
        return not (y >= 20 and 13 <= x <= 19)  # the door
    if 10 <= y < 17:  # the roof: from (8,17) up to (16,10) and down to (24,17)
        half = (y - 10) * 8 / 7
        return 16 - half <= x <= 16 + half
    return False


def pixel(x: float, y: float) -> tuple[int, int, int, int]:
    r = 7.0  # corner radius, like the favicon's rx=7
    cx = min(max(x, r), 32 - r)
    cy = min(max(y, r), 32 - r)
    if (x - cx) ** 2 + (y - cy) ** 2 > r * r:
        return CLEAR
    return WHITE if inside_house(x, y) else BLUE


def png(size: int) -> bytes:
    rows = bytearray()
    for j in range(size):
        rows.append(0)
        for i in range(size):
            rows.extend(pixel((i + 0.5) * 32 / size, (j + 0.5) * 32 / size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "public" / "icons"
    out.mkdir(parents=True, exist_ok=True)
    for size in (192, 512):
        (out / f"icon-{size}.png").write_bytes(png(size))
