"""Parsing of client SDP into aiortc's description model, with signaling errors."""

from __future__ import annotations

from aiortc.sdp import SessionDescription

from signaling.errors import SignalingError


def parse_description(sdp: str) -> SessionDescription:
    """Parse an offer or answer; ``bad_request`` if it is empty or unparsable."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignalingError("bad_request", "empty SDP")
    if not sdp.lstrip().startswith("v=0"):
        # aiortc's parser accepts anything; an SDP starts with its version line (RFC 8866).
        raise SignalingError("bad_request", "SDP must start with v=0")
    try:
        return SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises assorted errors on garbage
        raise SignalingError("bad_request", f"unparsable SDP: {exc!r}") from None
