"""Notices and their receipts: kinds, receipt states, and coverage per student."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from realtime.errors import bad_request, conflict


class NoticeKind(StrEnum):
    INFO = "info"
    READ_REQUIRED = "read_required"
    CONFIRM_REQUIRED = "confirm_required"
    REPLY_REQUIRED = "reply_required"


class Audience(StrEnum):
    GUARDIANS = "guardians"
    STUDENTS = "students"
    BOTH = "both"

    @property
    def streams(self) -> tuple[str, ...]:
        return ("guardians", "students") if self is Audience.BOTH else (self.value,)


class ReceiptState(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    CONFIRMED = "confirmed"  # also "replied" for reply-required notices
    REPLIED = "replied"


MAX_CHOICES = 6


def validate_choices(kind: NoticeKind, choices: list[str]) -> list[str]:
    if kind is NoticeKind.REPLY_REQUIRED:
        clean = [c.strip() for c in choices if c.strip()]
        if not 2 <= len(clean) <= MAX_CHOICES or len(set(clean)) != len(clean):
            raise bad_request(f"a reply-required notice needs 2 to {MAX_CHOICES} distinct choices")
        return clean
    if choices:
        raise bad_request("only reply-required notices have reply choices")
    return []


def done_state(kind: NoticeKind) -> ReceiptState | None:
    """The receipt state that fulfils a notice of this kind (None: nothing is asked)."""
    return {
        NoticeKind.INFO: None,
        NoticeKind.READ_REQUIRED: ReceiptState.READ,
        NoticeKind.CONFIRM_REQUIRED: ReceiptState.CONFIRMED,
        NoticeKind.REPLY_REQUIRED: ReceiptState.REPLIED,
    }[kind]


def check_confirm(kind: NoticeKind) -> None:
    if kind is not NoticeKind.CONFIRM_REQUIRED:
        raise conflict("this notice does not ask for confirmation")


def check_reply(kind: NoticeKind, choices: list[str], reply: str) -> None:
    if kind is not NoticeKind.REPLY_REQUIRED:
        raise conflict("this notice does not ask for a reply")
    if reply not in choices:
        raise bad_request("the reply must be one of the notice's choices")


@dataclass(frozen=True)
class Receipt:
    user_id: int
    delivered: bool
    read: bool
    confirmed: bool
    reply: str | None

    def fulfils(self, kind: NoticeKind) -> bool:
        if kind is NoticeKind.INFO:
            return self.delivered
        if kind is NoticeKind.READ_REQUIRED:
            return self.read
        if kind is NoticeKind.CONFIRM_REQUIRED:
            return self.confirmed
        return self.reply is not None

    @property
    def state(self) -> ReceiptState:
        if self.reply is not None:
            return ReceiptState.REPLIED
        if self.confirmed:
            return ReceiptState.CONFIRMED
        if self.read:
            return ReceiptState.READ
        if self.delivered:
            return ReceiptState.DELIVERED
        return ReceiptState.SENT


@dataclass(frozen=True)
class Coverage:
    """Per student: covered when at least one of their guardians (or they) fulfilled the notice."""

    covered: tuple[int, ...]
    not_covered: tuple[int, ...]

    @property
    def counts(self) -> dict[str, int]:
        return {
            "students": len(self.covered) + len(self.not_covered),
            "covered": len(self.covered),
            "not_covered": len(self.not_covered),
        }


def coverage(
    kind: NoticeKind,
    audience: Audience,
    students: Iterable[int],
    guardians_of: Mapping[int, Iterable[int]],
    receipts: Mapping[int, Receipt],
) -> Coverage:
    """Roll receipts up per student across all their guardians.

    For a guardians' notice a student is covered by any one guardian; for a students' notice by
    the student; for both, by either.
    """
    covered: list[int] = []
    missing: list[int] = []
    for student in sorted(students):
        who: list[int] = []
        if audience in (Audience.GUARDIANS, Audience.BOTH):
            who.extend(guardians_of.get(student, ()))
        if audience in (Audience.STUDENTS, Audience.BOTH):
            who.append(student)
        ok = any(r is not None and r.fulfils(kind) for r in (receipts.get(u) for u in who))
        (covered if ok else missing).append(student)
    return Coverage(tuple(covered), tuple(missing))


def may_remind(last_reminded_at: float | None, now: float, interval_s: float) -> bool:
    return last_reminded_at is None or now - last_reminded_at >= interval_s
