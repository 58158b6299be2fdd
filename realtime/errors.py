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


# Finer reasons a client may show in the person's language (clients/web's catalogue has a text
# for every one; tests/test_error_catalogue.py checks). ``details`` carries the numbers the text
# needs: ``retry_after_s`` (whole seconds) for every rate_limited reason.
REASONS: dict[str, frozenset[str]] = {
    "unauthorized": frozenset(
        {"wrong_password", "token_expired", "token_invalid", "account_gone", "signed_out"}
    ),
    "forbidden": frozenset({"meeting_locked", "unmute_locked", "in_lobby", "not_member"}),
    "conflict": frozenset({"deadline_passed", "nobody_to_remind", "already_exists", "archived"}),
    "rate_limited": frozenset(
        {"reminder_cooldown", "sign_in_throttled", "too_many_requests", "server_busy"}
    ),
    # The database cannot be reached, or all its pooled connections stayed busy
    # (realtime/store/outage.py); this node is busy with other new connections
    # (realtime/transport/admission.py). ``retry_after_s`` too.
    "unavailable": frozenset({"database_unreachable", "database_busy", "server_busy"}),
}


class HomeroomError(Exception):
    """A request that is refused; nothing has been changed.

    ``message`` is English for logs and developers; ``reason`` (one of REASONS[code]) and
    ``details`` are what a client turns into the person's language."""

    def __init__(
        self, code: str, message: str, *, reason: str | None = None, **details: Any
    ) -> None:
        assert code in CODES, code
        assert reason is None or reason in REASONS.get(code, ()), (code, reason)
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details)
        if reason is not None:
            self.details["reason"] = reason

    def to_ack(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"ok": False, "error": error}


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
