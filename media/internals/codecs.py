"""Codec negotiation helpers of aiortc that it does not export (``aiortc.rtcpeerconnection``'s
``find_common_codecs`` and ``filter_preferred_codecs``, ``aiortc.codecs.CODECS``), and the SDP
media description type signalling/codecs.py checks offers with."""

from __future__ import annotations

from aiortc.codecs import CODECS
from aiortc.rtcpeerconnection import filter_preferred_codecs, find_common_codecs
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import MediaDescription

__all__ = ["MediaDescription", "common_codecs"]


def common_codecs(
    kind: str, remote: list[RTCRtpCodecParameters], preferences: list[RTCRtpCodecCapability]
) -> list[RTCRtpCodecParameters]:
    """The codecs of ``kind`` that aiortc supports, ``remote`` offers and ``preferences`` allow,
    as aiortc itself chooses them when it answers."""
    return filter_preferred_codecs(find_common_codecs(CODECS[kind], remote), preferences)
