"""Codec pinning: every leg of a forwarded track uses the publisher's codec.

Frames are forwarded, not transcoded, so a room uses one video codec on every publish and
subscribe leg: VP8 (default) or H.264 constrained baseline 42e01f packetization-mode 1, each
with RTX; audio is Opus. ``setCodecPreferences`` on the server's transceivers pins it, and offers
and answers are checked first so a client that cannot use it gets a clear error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from aiortc import RTCRtpCodecCapability, RTCRtpSender

from media.internals.codecs import MediaDescription, common_codecs
from signaling.errors import SignalingError

VideoCodec = Literal["VP8", "H264"]

H264_PROFILE_LEVEL_ID = "42e01f"

# Opus parameters the server asks for (RFC 7587 7): in-band FEC lets a viewer's decoder rebuild
# a lost 20 ms frame from the next packet (speech survives loss on bad links), DTX sends almost
# nothing during silence (a teacher's pauses cost a mobile link nothing). Forwarded audio is the
# publisher's own encoding, so it is the publisher's encoder that must be told: aiortc's answer
# has no Opus fmtp at all.
OPUS_FMTP = {"minptime": "10", "useinbandfec": "1", "usedtx": "1"}
_OPUS_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/48000", re.IGNORECASE)


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


def with_opus_fmtp(sdp: str) -> str:
    """``sdp`` with :data:`OPUS_FMTP` on every Opus payload type of every m-line (added to, or
    merged into, its ``a=fmtp`` line; parameters already there keep their values). Payload
    types are per m-line: a meeting's several microphones share one, each m-line gets its own
    line."""
    lines = sdp.splitlines()
    # The session part, then one block per m-line (each starting at its "m=" line).
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    blocks = [lines[a:b] for a, b in zip([0, *starts], [*starts, len(lines)], strict=True)]
    if not any(_OPUS_RTPMAP.match(line) for line in lines):
        return sdp
    out: list[str] = []
    for block in blocks:
        out += _with_opus_fmtp_in(block)
    return "\r\n".join(out) + "\r\n"


def _with_opus_fmtp_in(lines: list[str]) -> list[str]:
    """One m-line's lines with :data:`OPUS_FMTP` on its Opus payload types."""
    opus = {m.group(1) for line in lines if (m := _OPUS_RTPMAP.match(line))}
    if not opus:
        return lines
    out: list[str] = []
    has_fmtp = {pt for pt in opus if any(line.startswith(f"a=fmtp:{pt} ") for line in lines)}
    for line in lines:
        if line.startswith("a=fmtp:"):
            pt, _, params = line[len("a=fmtp:") :].partition(" ")
            if pt in opus:
                present = {p.split("=", 1)[0].strip().lower() for p in params.split(";") if p}
                extra = [f"{k}={v}" for k, v in OPUS_FMTP.items() if k not in present]
                line = f"a=fmtp:{pt} " + ";".join([p for p in [params] if p] + extra)
        out.append(line)
        m = _OPUS_RTPMAP.match(line)
        if m and m.group(1) not in has_fmtp:
            out.append(f"a=fmtp:{m.group(1)} " + ";".join(f"{k}={v}" for k, v in OPUS_FMTP.items()))
            has_fmtp.add(m.group(1))
    return out
