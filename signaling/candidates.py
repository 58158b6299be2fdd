"""Trickle ICE from the client, in the browser's ``RTCIceCandidateInit`` shape.

aiortc gathers all of the server's candidates before ``setLocalDescription`` returns, so the
server's candidates are always inside its offer or answer SDP: the server never trickles.
Clients may trickle theirs; candidates that arrive before the description they belong to are
buffered and applied after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiortc import RTCIceCandidate, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from signaling.errors import SignalingError


def parse_candidate(init: Mapping[str, Any] | None) -> RTCIceCandidate | None:
    """``{"candidate": "candidate:...", "sdpMid": "0", "sdpMLineIndex": 0}`` -> candidate.

    ``None`` or an empty ``candidate`` string means end-of-candidates (returns None).
    """
    if init is None:
        return None
    text = init.get("candidate")
    if not isinstance(text, str):
        raise SignalingError("bad_request", "candidate must be a string")
    text = text.strip()
    if text.startswith("a="):
        text = text[2:]
    if not text:
        return None
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    try:
        candidate = candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError) as exc:
        raise SignalingError("bad_request", f"malformed ICE candidate: {exc!r}") from None
    mid = init.get("sdpMid")
    index = init.get("sdpMLineIndex")
    if mid is None and index is None:
        raise SignalingError("bad_request", "candidate needs sdpMid or sdpMLineIndex")
    candidate.sdpMid = None if mid is None else str(mid)
    candidate.sdpMLineIndex = None if index is None else int(index)
    return candidate


class CandidateBuffer:
    """Holds trickled candidates until the peer connection has a remote description."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self._pc = pc
        self._pending: list[RTCIceCandidate | None] = []

    async def add(self, init: Mapping[str, Any] | None) -> None:
        candidate = parse_candidate(init)
        if self._pc.remoteDescription is None:
            self._pending.append(candidate)
            return
        await self._pc.addIceCandidate(candidate)

    async def flush(self) -> None:
        """Apply buffered candidates; call after each setRemoteDescription."""
        pending, self._pending = self._pending, []
        for candidate in pending:
            await self._pc.addIceCandidate(candidate)
