"""Keyframe detection on encoded frames, as aiortc's receiver hands them over.

aiortc depayloads before reassembly: a VP8 frame arrives without its payload descriptors, and an
H.264 frame arrives as an Annex B byte stream (STAP-A already split into start-code-prefixed NAL
units, FU-A already joined). :func:`is_h264_rtp_keyframe` handles the RTP payload form
(single NAL, STAP-A, FU-A) for callers that look at packets instead.
"""

from __future__ import annotations

import struct

NAL_TYPE_IDR = 5
NAL_TYPE_SPS = 7
NAL_TYPE_STAP_A = 24
NAL_TYPE_FU_A = 28
_KEY_NAL_TYPES = frozenset((NAL_TYPE_IDR, NAL_TYPE_SPS))


def is_vp8_keyframe(frame: bytes) -> bool:
    """VP8 frame tag (RFC 6386 9.1): bit 0 of the first byte is 0 for a key frame."""
    return len(frame) > 0 and not frame[0] & 0x01


def h264_nal_types(annex_b: bytes) -> list[int]:
    """NAL unit types of an Annex B byte stream (3- or 4-byte start codes)."""
    types: list[int] = []
    i = annex_b.find(b"\x00\x00\x01")
    while i != -1:
        start = i + 3
        if start >= len(annex_b):
            break
        types.append(annex_b[start] & 0x1F)
        i = annex_b.find(b"\x00\x00\x01", start)
    return types


def is_h264_keyframe(annex_b: bytes) -> bool:
    """An access unit is a keyframe if it holds an IDR slice (5) or an SPS (7)."""
    return any(t in _KEY_NAL_TYPES for t in h264_nal_types(annex_b))


def is_h264_rtp_keyframe(payload: bytes) -> bool:
    """Keyframe test on one H.264 RTP payload (RFC 6184): single NAL, STAP-A or FU-A start."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == NAL_TYPE_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            (size,) = struct.unpack_from("!H", payload, pos)
            pos += 2
            if size and pos < len(payload) and (payload[pos] & 0x1F) in _KEY_NAL_TYPES:
                return True
            pos += size
        return False
    if nal_type == NAL_TYPE_FU_A:
        # Only the first fragment carries the original NAL type that matters here.
        return (
            len(payload) > 1 and bool(payload[1] & 0x80) and (payload[1] & 0x1F) in _KEY_NAL_TYPES
        )
    return nal_type in _KEY_NAL_TYPES


def is_keyframe(codec_name: str, frame: bytes) -> bool:
    """Keyframe test by codec name (aiortc's ``codec.name``); audio frames always qualify."""
    name = codec_name.upper()
    if name == "VP8":
        return is_vp8_keyframe(frame)
    if name == "H264":
        return is_h264_keyframe(frame)
    # Audio (Opus, G.711, G.722) has no inter-frame dependency worth gating on.
    return True
