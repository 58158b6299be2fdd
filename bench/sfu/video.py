"""The publisher's video: a synthetic VP8 sequence encoded once, replayed at 30 fps.

Encoding 640x360 (or 1280x720) live with libvpx would cost the publisher 0.06 (0.25) of a core
on a 2-core machine that also runs the server and the subscribers, so the sequence is encoded
once with PyAV's libvpx (real-time, CBR at the target bitrate, the same settings aiortc uses)
and its encoded frames are replayed through aiortc's pre-encoded sender path (an ``av.Packet``
is packetized, never encoded).

Keyframes: the loop is LOOP_FRAMES long and starts with a keyframe (a natural keyframe every
LOOP_FRAMES / FPS seconds). A keyframe request (PLI) from the server must be answered, like a
browser does, or a joining viewer would wait for the next loop: for that, every KEY_STEP-th
frame of the loop is also encoded as a keyframe (a second encoder, every frame intra, budgeted
so its keyframes are about the size of the natural one), and on a PLI the next frame sent is
the keyframe version of the latest such frame. The deltas that follow were predicted from
other pixels, so a decoder would show a short glitch until the next natural keyframe; nothing
here decodes the forwarded stream except the MediaRelay baseline, which decodes it without
error either way (drift is invisible to the cost of decoding and encoding).

File format (``write``/``read``): a JSON header line, then the frames' bytes back to back.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import av
from aiortc.mediastreams import MediaStreamTrack

from clients.simulcast import LayerEncoding, vp8_encoder

FPS = 30
LOOP_FRAMES = 150  # 5 s
KEY_STEP = 5  # keyframe versions of every 5th frame (intra encoding at 720p is ~80 ms/frame)
WARM_FRAMES = 30  # rate control settles on these before the kept loop starts
MIN_KEYFRAME_INTERVAL_S = 0.3  # libwebrtc's kMinKeyframeSendIntervalMs
# A wait this long between two frames asked for is a gap (no sender), not lateness.
GAP_S = 1.0
VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)

# name -> (width, height, bitrate)
PROFILES: dict[str, tuple[int, int, int]] = {
    "360p": (640, 360, 1_000_000),
    "720p": (1280, 720, 2_500_000),
}


@dataclass
class EncodedSequence:
    name: str
    width: int
    height: int
    bitrate: int
    deltas: list[bytes]  # deltas[0] is the natural keyframe
    keys: list[bytes]  # keys[j]: frame j * KEY_STEP encoded as a keyframe

    @property
    def measured_bitrate(self) -> float:
        return sum(map(len, self.deltas)) * 8 * FPS / len(self.deltas)

    def write(self, path: Path) -> None:
        header = {
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "bitrate": self.bitrate,
            "deltas": [len(d) for d in self.deltas],
            "keys": [len(k) for k in self.keys],
        }
        with open(path, "wb") as fh:
            fh.write(json.dumps(header).encode() + b"\n")
            for chunk in (*self.deltas, *self.keys):
                fh.write(chunk)

    @classmethod
    def read(cls, path: Path) -> EncodedSequence:
        with open(path, "rb") as fh:
            header = json.loads(fh.readline())
            deltas = [fh.read(n) for n in header["deltas"]]
            keys = [fh.read(n) for n in header["keys"]]
        return cls(
            header["name"], header["width"], header["height"], header["bitrate"], deltas, keys
        )


def source_frames(width: int, height: int, count: int, seed: int = 7) -> list[av.VideoFrame]:
    """Moving, textured frames with some fresh detail each frame (so CBR spends its budget)."""
    rnd = random.Random(seed)
    step = 2  # pixels of pan per frame
    tex_w = width + step * count
    block = 4

    def upscaled_row(low: bytes) -> bytes:
        return bytes(itertools.chain.from_iterable(zip(*([low] * block), strict=True)))

    low_rows = [
        bytes(rnd.randrange(48, 208) for _ in range(tex_w // block + 1))
        for _ in range(height // block + 1)
    ]
    tex_rows = [upscaled_row(low_rows[r // block]) for r in range(height)]
    # Fresh detail: a band of low-amplitude noise that changes every frame.
    noise_table = bytes(112 + (b % 32) for b in range(256))
    band = height // 4
    frames = []
    for i in range(count):
        frame = av.VideoFrame(width, height, "yuv420p")
        y = frame.planes[0]
        pad = b"\x80" * (y.line_size - width)
        off = i * step
        band_top = (i * 3) % (height - band)
        noise = rnd.randbytes(width * band).translate(noise_table)
        rows = []
        for r in range(height):
            if band_top <= r < band_top + band:
                k = (r - band_top) * width
                rows.append(noise[k : k + width] + pad)
            else:
                rows.append(tex_rows[r][off : off + width] + pad)
        y.update(b"".join(rows))
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        frames.append(frame)
    return frames


def _encoder(width: int, height: int, bitrate: int, gop: int) -> av.VideoCodecContext:
    # aiortc's Vp8Encoder settings (aiortc/codecs/vpx.py), one thread: as a layer of
    # clients/simulcast.py, at FPS.
    codec = vp8_encoder(
        LayerEncoding(width, height, bitrate), time_base=fractions.Fraction(1, FPS), gop=gop
    )
    codec.framerate = fractions.Fraction(FPS)
    return codec


def _encode(
    codec: av.VideoCodecContext, frames: list[av.VideoFrame], pts0: int, force_first: bool
) -> list[bytes]:
    out = []
    for i, frame in enumerate(frames):
        frame.pts = pts0 + i
        frame.time_base = fractions.Fraction(1, FPS)
        frame.pict_type = (
            av.video.frame.PictureType.I
            if force_first and i == 0
            else av.video.frame.PictureType.NONE
        )
        out.append(b"".join(bytes(p) for p in codec.encode(frame)))
    return out


def encode_sequence(name: str, frames_count: int = LOOP_FRAMES) -> EncodedSequence:
    width, height, bitrate = PROFILES[name]
    frames = source_frames(width, height, frames_count)
    codec = _encoder(width, height, bitrate, gop=100000)
    _encode(codec, frames[-WARM_FRAMES:], 0, True)
    deltas = _encode(codec, frames, WARM_FRAMES, True)
    # gop 1: every frame intra; half the budget lands near the natural keyframe's size.
    key_budget = len(deltas[0]) * 8 * FPS // 2
    keys = _encode(_encoder(width, height, key_budget, gop=1), frames[::KEY_STEP], 0, True)
    return EncodedSequence(name, width, height, bitrate, deltas, keys)


def load_or_encode(name: str, cache_dir: Path) -> EncodedSequence:
    """The sequence for a profile, from ``cache_dir`` if it was encoded before."""
    path = sequence_path(name, cache_dir)
    if path.exists():
        return EncodedSequence.read(path)
    seq = encode_sequence(name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    seq.write(tmp)
    tmp.replace(path)
    return seq


def is_vp8_keyframe(data: bytes) -> bool:
    return bool(data) and not data[0] & 1


class ReplayTrack(MediaStreamTrack):
    """Replays an EncodedSequence as av.Packets at FPS; keyframe requests are answered.

    Like a browser, at most one keyframe per MIN_KEYFRAME_INTERVAL_S: libwebrtc ignores a
    request within 300 ms of its last keyframe (``kMinKeyframeSendIntervalMs``,
    video/encoder_rtcp_feedback.cc) and Chromium's receivers repeat theirs every ~200 ms until
    one arrives. aiortc's receivers do not repeat, so a request inside the interval is deferred
    to its end instead of dropped. Without this limit, a server that forwards every viewer's
    PLI (Janus 1.1) and viewers that lose packets feed each other: more keyframes, more loss.
    """

    kind = "video"

    def __init__(self, seq: EncodedSequence) -> None:
        super().__init__()
        self.seq = seq
        self.sent = 0
        self.keyframe_requests = 0
        self.keyframes_sent = 0
        self.bytes_sent = 0
        self.late_frames = 0
        self.deferred_requests = 0
        self._want_key = False
        self._last_key = -1.0
        self._start: float | None = None

    def stop(self) -> None:
        """Ignored: aiortc's sender stops its track when its connection goes, but a camera goes
        on (a moved lesson publishes the same track again); :meth:`end` stops it."""

    def end(self) -> None:
        super().stop()

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        if time.monotonic() - self._last_key < MIN_KEYFRAME_INTERVAL_S:
            self.deferred_requests += 1
        self._want_key = True

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            from aiortc.mediastreams import MediaStreamError

            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            due = self._start + self.sent / FPS
            if now - due > GAP_S:
                # Nobody asked for frames for a while (between two peer connections): go on
                # from now instead of sending the missed ones in a burst.
                self._start = now - self.sent / FPS
            elif due > now:
                await asyncio.sleep(due - now)
            elif now - due > 1 / FPS:
                self.late_frames += 1
        i = self.sent % len(self.seq.deltas)
        now = time.monotonic()
        keyed = self._want_key and i != 0 and now - self._last_key >= MIN_KEYFRAME_INTERVAL_S
        data = self.seq.keys[i // KEY_STEP] if keyed else self.seq.deltas[i]
        if is_vp8_keyframe(data):
            self.keyframes_sent += 1
            self._last_key = now
            self._want_key = False
        packet = av.Packet(data)
        packet.pts = self.sent * (VIDEO_CLOCK // FPS)
        packet.time_base = VIDEO_TIME_BASE
        self.sent += 1
        self.bytes_sent += len(data)
        return packet


def sequence_path(name: str, cache_dir: Path) -> Path:
    width, height, bitrate = PROFILES[name]
    return cache_dir / f"vp8-{name}-{width}x{height}-{bitrate}-{LOOP_FRAMES}-{KEY_STEP}-v1.bin"


if __name__ == "__main__":
    # python bench/sfu/video.py CACHE_DIR [360p 720p]: encode what is not cached yet.
    import sys

    cache = Path(sys.argv[1])
    for profile in sys.argv[2:] or list(PROFILES):
        t = time.perf_counter()
        s = load_or_encode(profile, cache)
        print(
            json.dumps(
                {
                    "profile": profile,
                    "path": str(sequence_path(profile, cache)),
                    "seconds": round(time.perf_counter() - t, 2),
                    "kbit_s": round(s.measured_bitrate / 1e3),
                    "keyframe_bytes": len(s.deltas[0]),
                    "delta_bytes_avg": sum(map(len, s.deltas[1:])) // (len(s.deltas) - 1),
                }
            ),
            flush=True,
        )
