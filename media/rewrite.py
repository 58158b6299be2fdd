"""One viewer's stream across layer switches: RTP timestamps and VP8 picture ids rewritten so
the decoder sees one continuous stream. Pure logic, no I/O, the clock passed in.

Each layer of a camera arrives on its own publisher SSRC with its own timestamps (aiortc's
receiver maps each to start at 0) and is packetized by its own packetizer (its own VP8 picture
id sequence). A viewer forwarded one layer and then another would see timestamps and picture ids
jump; the sequence numbers are already the viewer's own (the forwarding sender numbers its
packets). At a switch (always on a keyframe of the new layer) the new layer's timestamps are
offset to continue from the last frame sent, advanced by the wall-clock time since it, and its
picture ids to continue at the next one. Memory: a few integers per viewer and track.
"""

from __future__ import annotations

from media.internals import RTCEncodedFrame

VIDEO_CLOCK = 90_000
_PICTURE_ID_MASK = 0x7FFF


def vp8_picture_id(payload: bytes) -> int | None:
    """The 15-bit picture id of a VP8 RTP payload descriptor (RFC 7741 4.2), or None.

    aiortc's packetizer always writes X=1, I=1 and the 15-bit form (M=1), so the id is at
    bytes 2-3 of every payload; H.264 payloads never match (their first bit is always 0).
    """
    if len(payload) < 4 or not payload[0] & 0x80 or not payload[1] & 0x80 or not payload[2] & 0x80:
        return None
    return ((payload[2] & 0x7F) << 8) | payload[3]


def with_picture_id(payloads: list[bytes], picture_id: int) -> list[bytes]:
    """Copies of ``payloads`` (one frame's) carrying ``picture_id``."""
    field = (0x8000 | picture_id).to_bytes(2, "big")
    return [p[:2] + field + p[4:] for p in payloads]


class StreamRewriter:
    """The offsets of one viewer's video: call :meth:`switch` before the first frame of a new
    layer (a keyframe), :meth:`apply` on every frame sent."""

    def __init__(self) -> None:
        self.timestamp_offset = 0
        self.picture_id_offset = 0
        self._last_timestamp: int | None = None
        self._last_picture_id: int | None = None
        self._last_at = 0.0

    def switch(self, first: RTCEncodedFrame, now: float) -> None:
        """``first`` (of another layer) continues the stream after the last frame applied."""
        if self._last_timestamp is None:
            return  # nothing sent yet: the stream may start anywhere
        ticks = max(1, round((now - self._last_at) * VIDEO_CLOCK))
        self.timestamp_offset = (self._last_timestamp + ticks - first.timestamp) & 0xFFFFFFFF
        picture_id = vp8_picture_id(first.payloads[0]) if first.payloads else None
        if picture_id is not None and self._last_picture_id is not None:
            self.picture_id_offset = (self._last_picture_id + 1 - picture_id) & _PICTURE_ID_MASK

    def apply(self, frame: RTCEncodedFrame, now: float) -> RTCEncodedFrame:
        """``frame`` as this viewer receives it: the shared object itself while no offset
        applies (nothing copied), else a new frame sharing what did not change."""
        timestamp = (frame.timestamp + self.timestamp_offset) & 0xFFFFFFFF
        payloads = frame.payloads
        picture_id = vp8_picture_id(payloads[0]) if payloads else None
        if picture_id is not None:
            picture_id = (picture_id + self.picture_id_offset) & _PICTURE_ID_MASK
            if self.picture_id_offset:
                payloads = with_picture_id(payloads, picture_id)
            self._last_picture_id = picture_id
        self._last_timestamp = timestamp
        self._last_at = now
        if payloads is frame.payloads and timestamp == frame.timestamp:
            return frame
        return RTCEncodedFrame(payloads, timestamp, frame.audio_level)
