from __future__ import annotations

import struct

import pytest

from media.keyframes import (
    h264_nal_types,
    is_h264_keyframe,
    is_h264_rtp_keyframe,
    is_keyframe,
    is_vp8_keyframe,
)


def nal(nal_type: int, body: bytes = b"\x88\x84") -> bytes:
    return bytes([0x60 | nal_type]) + body


def annex_b(*nals: bytes, long_start: bool = True) -> bytes:
    start = b"\x00\x00\x00\x01" if long_start else b"\x00\x00\x01"
    return b"".join(start + n for n in nals)


@pytest.mark.timeout(5)
def test_vp8_frame_tag_bit0() -> None:
    # Real frame tags: 0x10 / 0x30 keyframe (show_frame, P=0), 0x11 / 0x31 interframe.
    assert is_vp8_keyframe(b"\x10\x02\x00\x9d\x01\x2a")
    assert is_vp8_keyframe(b"\x30\x00")
    assert not is_vp8_keyframe(b"\x11\x02\x00")
    assert not is_vp8_keyframe(b"\x31")
    assert not is_vp8_keyframe(b"")


@pytest.mark.timeout(5)
def test_h264_annex_b_idr_and_sps() -> None:
    sps, pps, idr, non_idr, sei = nal(7), nal(8), nal(5), nal(1), nal(6)
    assert h264_nal_types(annex_b(sps, pps, idr)) == [7, 8, 5]
    assert h264_nal_types(annex_b(sps, pps, idr, long_start=False)) == [7, 8, 5]
    assert is_h264_keyframe(annex_b(sps, pps, idr))
    assert is_h264_keyframe(annex_b(idr))
    assert is_h264_keyframe(annex_b(sei, sps))
    assert not is_h264_keyframe(annex_b(non_idr))
    assert not is_h264_keyframe(annex_b(sei, non_idr))
    assert not is_h264_keyframe(b"")
    assert not is_h264_keyframe(b"\x00\x00\x01")


@pytest.mark.timeout(5)
def test_h264_as_aiortc_depayloads_stap_a() -> None:
    # aiortc turns a STAP-A (SPS, PPS) plus an FU-A IDR into Annex B before reassembly.
    from aiortc.codecs.h264 import h264_depayload

    stap_a = bytes([0x78]) + b"".join(struct.pack("!H", len(n)) + n for n in (nal(7), nal(8)))
    fu_a_start = bytes([0x7C, 0x80 | 5]) + b"\x88\x84"
    frame = h264_depayload(stap_a) + h264_depayload(fu_a_start)
    assert h264_nal_types(frame) == [7, 8, 5]
    assert is_keyframe("H264", frame)


@pytest.mark.timeout(5)
def test_h264_rtp_payload_forms() -> None:
    stap_a = bytes([0x78]) + b"".join(struct.pack("!H", len(n)) + n for n in (nal(7), nal(8)))
    assert is_h264_rtp_keyframe(stap_a)
    stap_a_delta = bytes([0x78]) + b"".join(struct.pack("!H", len(n)) + n for n in (nal(6), nal(1)))
    assert not is_h264_rtp_keyframe(stap_a_delta)
    assert is_h264_rtp_keyframe(bytes([0x7C, 0x80 | 5]) + b"\x00")  # FU-A start of IDR
    assert not is_h264_rtp_keyframe(bytes([0x7C, 5]) + b"\x00")  # FU-A middle
    assert not is_h264_rtp_keyframe(bytes([0x7C, 0x80 | 1]) + b"\x00")
    assert is_h264_rtp_keyframe(nal(5))
    assert not is_h264_rtp_keyframe(nal(1))
    assert not is_h264_rtp_keyframe(b"")


@pytest.mark.timeout(5)
def test_is_keyframe_by_codec_name() -> None:
    assert is_keyframe("VP8", b"\x10")
    assert not is_keyframe("vp8", b"\x11")
    assert is_keyframe("opus", b"\xfc\xff")  # audio always qualifies
