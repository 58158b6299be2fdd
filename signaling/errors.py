"""The one error type of the signaling layer, with a stable machine-readable code."""

from __future__ import annotations

from typing import Literal

ErrorCode = Literal["bad_request", "conflict", "unsupported_codec", "forbidden", "closed"]


class SignalingError(Exception):
    """A signaling request that cannot be applied; ``code`` is stable, ``str()`` is for humans.

    * ``bad_request`` — unparsable SDP, wrong description type, malformed candidate.
    * ``conflict`` — wrong state for the request (an answer with no offer outstanding, an offer
      while another is being applied).
    * ``unsupported_codec`` — the client cannot send or receive the room's codec.
    * ``forbidden`` — the caller refused the request (not used by the sessions themselves).
    * ``closed`` — the session was closed.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code

    def __repr__(self) -> str:
        return f"SignalingError({self.code!r}, {str(self)!r})"
