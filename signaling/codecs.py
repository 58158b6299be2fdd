"""Codec pinning: every leg of a forwarded track uses the publisher's codec.

Frames are forwarded, not transcoded, so a room uses one video codec on every publish and
subscribe leg: VP8 (default) or H.264 constrained baseline 42e01f packetization-mode 1, each
with RTX; audio is Opus. ``setCodecPreferences`` on the server's transceivers pins it, and offers
and answers are checked first so a client that cannot use it gets a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiortc import RTCRtpCodecCapability, RTCRtpSender

from media.internals.codecs import MediaDescription, common_codecs
from signaling.errors import SignalingError

VideoCodec = Literal["VP8", "H264"]

H264_PROFILE_LEVEL_ID = "42e01f"


@dataclass(frozen=True)
class CodecPolicy:
    """The codecs of a room. One policy must be shared by all sessions of a room."""

    video: VideoCodec = "VP8"

    def preferences(self, kind: str) -> list[RTCRtpCodecCapability]:
        """Capabilities for ``setCodecPreferences``: the pinned codec, then RTX for video."""
        capabilities = RTCRtpSender.getCapabilities(kind).codecs
        if kind == "audio":
            wanted = [c for c in capabilities if c.mimeType.lower() == "audio/opus"]
        else:
            wanted = [c for c in capabilities if self._is_video_codec(c)]
            wanted += [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
        return wanted

    def check(self, media: MediaDescription) -> None:
        """Raise ``unsupported_codec`` if ``media`` (a remote m-line) lacks the pinned codec."""
        if media.kind not in ("audio", "video") or media.port == 0:
            return
        common = common_codecs(media.kind, media.rtp.codecs, self.preferences(media.kind))
        if not common:
            wanted = "Opus" if media.kind == "audio" else self.describe()
            offered = ", ".join(sorted({c.name for c in media.rtp.codecs})) or "none"
            raise SignalingError(
                "unsupported_codec",
                f"{media.kind} m-line {media.rtp.muxId!r} must support {wanted}; "
                f"it offers {offered}",
            )

    def describe(self) -> str:
        if self.video == "H264":
            return f"H264 profile-level-id={H264_PROFILE_LEVEL_ID} packetization-mode=1"
        return "VP8"

    def _is_video_codec(self, codec: RTCRtpCodecCapability) -> bool:
        if codec.mimeType.lower() != f"video/{self.video.lower()}":
            return False
        if self.video == "H264":
            return (
                codec.parameters.get("profile-level-id") == H264_PROFILE_LEVEL_ID
                and str(codec.parameters.get("packetization-mode")) == "1"
            )
        return True
