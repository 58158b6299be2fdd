"""Errors with stable codes: every refused request is answered with one of these."""

from __future__ import annotations

from typing import Any

# The stable codes clients may rely on (docs/protocol.md lists when each is used).
CODES = frozenset(
    {
        "bad_request",
        "unauthorized",
        "forbidden",
        "not_found",
        "conflict",
        "too_large",
        "rate_limited",
        "unsupported_codec",
        "unavailable",
        "unsupported_type",
        "quota_exceeded",
        "link_expired",
        "internal",
    }
)

HTTP_STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "rate_limited": 429,
    "unsupported_codec": 415,
    "unavailable": 503,
    "unsupported_type": 415,
    "quota_exceeded": 413,
    "link_expired": 403,
    "internal": 500,
}


class HomeroomError(Exception):
    """A request that is refused; nothing has been changed."""

    def __init__(self, code: str, message: str) -> None:
        assert code in CODES, code
        super().__init__(message)
        self.code = code
        self.message = message

    def to_ack(self) -> dict[str, Any]:
        return {"ok": False, "error": {"code": self.code, "message": self.message}}


def bad_request(message: str) -> HomeroomError:
    return HomeroomError("bad_request", message)


def forbidden(message: str = "you may not do that here") -> HomeroomError:
    return HomeroomError("forbidden", message)


def not_found(message: str = "no such thing") -> HomeroomError:
    return HomeroomError("not_found", message)


def conflict(message: str) -> HomeroomError:
    return HomeroomError("conflict", message)


def too_large(message: str) -> HomeroomError:
    return HomeroomError("too_large", message)
