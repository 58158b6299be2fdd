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

    @property
    def guardians_cover(self) -> bool:
        """Whether a guardian who fulfils the notice covers their children."""
        return self is not Audience.STUDENTS

    @property
    def students_cover(self) -> bool:
        """Whether a student who fulfils the notice covers themselves."""
        return self is not Audience.GUARDIANS


class ReceiptState(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    CONFIRMED = "confirmed"  # also "replied" for reply-required notices
    REPLIED = "replied"


# The steps a receipt moves through, in order; each later step implies the earlier ones, except
# that a receipt is confirmed or replied, never both (a notice asks for one or the other).
STEPS = (ReceiptState.DELIVERED, ReceiptState.READ, ReceiptState.CONFIRMED, ReceiptState.REPLIED)

# The step that fulfils a notice of each kind, for coverage.
FULFILLED_BY: dict[NoticeKind, ReceiptState] = {
    NoticeKind.INFO: ReceiptState.DELIVERED,
    NoticeKind.READ_REQUIRED: ReceiptState.READ,
    NoticeKind.CONFIRM_REQUIRED: ReceiptState.CONFIRMED,
    NoticeKind.REPLY_REQUIRED: ReceiptState.REPLIED,
}

MAX_CHOICES = 6


class ReceiptList(StrEnum):
    """The lists of a notice's roll-up that a teacher pages through."""

    RECEIPTS = "receipts"  # every recipient's receipt
    COVERED = "covered"  # students covered (by themselves or a guardian)
    NOT_COVERED = "not_covered"  # students not covered yet


def validate_choices(kind: NoticeKind, choices: list[str]) -> list[str]:
    if kind is NoticeKind.REPLY_REQUIRED:
        clean = [c.strip() for c in choices if c.strip()]
        if not 2 <= len(clean) <= MAX_CHOICES or len(set(clean)) != len(clean):
            raise bad_request(f"a reply-required notice needs 2 to {MAX_CHOICES} distinct choices")
        return clean
    if choices:
        raise bad_request("only reply-required notices have reply choices")
    return []


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

    def reached(self, step: ReceiptState) -> bool:
        return {
            ReceiptState.SENT: True,
            ReceiptState.DELIVERED: self.delivered,
            ReceiptState.READ: self.read,
            ReceiptState.CONFIRMED: self.confirmed,
            ReceiptState.REPLIED: self.reply is not None,
        }[step]

    def fulfils(self, kind: NoticeKind) -> bool:
        return self.reached(FULFILLED_BY[kind])

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


def covers(
    audience: Audience, user_id: int, children: Iterable[int], is_student: bool
) -> frozenset[int]:
    """The students whose coverage this person gives by fulfilling a notice."""
    out: set[int] = set(children) if audience.guardians_cover else set()
    if is_student and audience.students_cover:
        out.add(user_id)
    return frozenset(out)


def steps_reached(before: Receipt | None, after: Receipt) -> tuple[ReceiptState, ...]:
    """The steps a receipt change newly reached (a receipt never goes back)."""
    return tuple(
        s for s in STEPS if after.reached(s) and not (before is not None and before.reached(s))
    )


@dataclass(frozen=True)
class Tally:
    """How many of a notice's recipients reached each step (at least), and students covered."""

    recipients: int
    delivered: int
    read: int
    confirmed: int
    replied: int
    covered: int

    @property
    def states(self) -> dict[str, int]:
        """Recipients per furthest state, from the step counts (see STEPS); empty ones left out."""
        counts = {
            ReceiptState.SENT: self.recipients - self.delivered,
            ReceiptState.DELIVERED: self.delivered - self.read,
            ReceiptState.READ: self.read - self.confirmed - self.replied,
            ReceiptState.CONFIRMED: self.confirmed,
            ReceiptState.REPLIED: self.replied,
        }
        return {s.value: n for s, n in counts.items() if n}

    def counts(self, students: int) -> dict[str, object]:
        """The roll-up's ``counts`` for a class of ``students`` students."""
        return {
            "students": students,
            "covered": self.covered,
            "not_covered": students - self.covered,
            "recipients": self.recipients,
            "states": self.states,
        }


def may_remind(last_reminded_at: float | None, now: float, interval_s: float) -> bool:
    return last_reminded_at is None or now - last_reminded_at >= interval_s
