"""Polls and quizzes: kinds, answers, who sees what, and how often the host's counts are pushed.

No I/O: the actions in realtime/actions/polls.py load rows and call these rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from realtime.errors import bad_request, conflict

MAX_OPTIONS = 10
MAX_OPTION_CHARS = 200
MAX_TEXT_ANSWER_CHARS = 500
MAX_TIME_LIMIT_S = 24 * 3600
# Text answers shown when results are published: the most frequent ones, without names.
MAX_PUBLISHED_TEXTS = 50
TRUE_FALSE = ("true", "false")


class PollKind(StrEnum):
    SINGLE = "single"
    MULTIPLE = "multiple"
    TRUE_FALSE = "true_false"
    TEXT = "text"


class PollStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # no more answers; results not shown to participants yet
    PUBLISHED = "published"  # closed, and results (with the correct answer) shown to all


class PollAudience(StrEnum):
    """Who answers a poll run outside a session (a class poll for guardians: a meeting date)."""

    STUDENTS = "students"
    GUARDIANS = "guardians"


class AnswerBy(StrEnum):
    """Who answers a dual-teacher lesson's poll: every student, or each classroom once."""

    PERSON = "person"
    CLASSROOM = "classroom"


def validate_options(kind: PollKind, options: Sequence[str]) -> list[str]:
    if kind is PollKind.TRUE_FALSE:
        if options and list(options) != list(TRUE_FALSE):
            raise bad_request("a true/false poll has the options true and false")
        return list(TRUE_FALSE)
    if kind is PollKind.TEXT:
        if options:
            raise bad_request("a short-text poll has no options")
        return []
    clean = [o.strip() for o in options]
    if not 2 <= len(clean) <= MAX_OPTIONS or any(not o for o in clean):
        raise bad_request(f"a choice poll needs 2 to {MAX_OPTIONS} non-empty options")
    if len(set(clean)) != len(clean):
        raise bad_request("the options must differ")
    if any(len(o) > MAX_OPTION_CHARS for o in clean):
        raise bad_request(f"an option has at most {MAX_OPTION_CHARS} characters")
    return clean


def validate_correct(kind: PollKind, options: Sequence[str], correct: Sequence[str]) -> list[str]:
    """The correct answer(s) of a quiz (empty: a poll, nothing is right or wrong)."""
    if not correct:
        return []
    if kind is PollKind.TEXT:
        clean = sorted({_norm_text(c) for c in correct if c.strip()})
        if not clean:
            raise bad_request("a correct text answer cannot be empty")
        return clean
    if any(c not in options for c in correct) or len(set(correct)) != len(correct):
        raise bad_request("the correct answers must be distinct options of the poll")
    if kind is not PollKind.MULTIPLE and len(correct) != 1:
        raise bad_request("this kind of poll has exactly one correct answer")
    return sorted(correct, key=list(options).index)


def validate_time_limit(seconds: int | None) -> int | None:
    if seconds is None:
        return None
    if not 1 <= seconds <= MAX_TIME_LIMIT_S:
        raise bad_request(f"a time limit is 1 to {MAX_TIME_LIMIT_S} seconds")
    return seconds


def _norm_text(text: str) -> str:
    return " ".join(text.split()).casefold()


def normalize_answer(kind: PollKind, options: Sequence[str], answer: Sequence[str]) -> list[str]:
    """The stored form of one person's answer, or bad_request."""
    if kind is PollKind.TEXT:
        if len(answer) != 1 or not answer[0].strip():
            raise bad_request("a short-text poll takes one non-empty text answer")
        text = answer[0].strip()
        if len(text) > MAX_TEXT_ANSWER_CHARS:
            raise bad_request(f"an answer has at most {MAX_TEXT_ANSWER_CHARS} characters")
        return [text]
    if not answer or any(a not in options for a in answer) or len(set(answer)) != len(answer):
        raise bad_request("the answer must be distinct options of the poll")
    if kind is not PollKind.MULTIPLE and len(answer) != 1:
        raise bad_request("this poll takes exactly one option")
    return sorted(answer, key=list(options).index)


def is_correct(kind: PollKind, correct: Sequence[str], answer: Sequence[str]) -> bool | None:
    """Whether an answer is right (None: the poll has no correct answer)."""
    if not correct:
        return None
    if kind is PollKind.TEXT:
        return _norm_text(answer[0]) in correct
    return list(answer) == list(correct)


def check_open(status: PollStatus, closes_at: float | None, now: float) -> None:
    if status is not PollStatus.OPEN or (closes_at is not None and now >= closes_at):
        raise conflict("the poll is closed")


def overdue(status: PollStatus, closes_at: float | None, now: float) -> bool:
    """Stored as open though its time is up: nobody has closed it yet (its node may be gone)."""
    return status is PollStatus.OPEN and closes_at is not None and now >= closes_at


def effective_status(status: PollStatus, closes_at: float | None, now: float) -> PollStatus:
    return PollStatus.CLOSED if overdue(status, closes_at, now) else status


@dataclass(frozen=True)
class Results:
    answered: int
    counts: dict[str, int]  # per option (choice polls) or per distinct text (short text)
    correct_count: int | None  # answers that were right, for a quiz

    def view(self) -> dict[str, object]:
        return {
            "answered": self.answered,
            "counts": self.counts,
            "correct_count": self.correct_count,
        }


def tally(
    kind: PollKind,
    options: Sequence[str],
    correct: Sequence[str],
    answers: Iterable[tuple[Sequence[str], int]],
    *,
    text_limit: int | None = None,
) -> Results:
    """Counts per option; for short text, per distinct answer (the ``text_limit`` most common).

    ``answers``: each distinct answer with how many gave it (the store groups them)."""
    counts: Counter[str] = Counter({o: 0 for o in options})
    answered = 0
    right = 0
    for a, n in answers:
        answered += n
        if kind is PollKind.TEXT:
            counts[a[0].strip()] += n
        else:
            for option in a:
                counts[option] += n
        if correct and is_correct(kind, correct, a):
            right += n
    if kind is PollKind.TEXT and text_limit is not None:
        counts = Counter(dict(counts.most_common(text_limit)))
    ordered = (
        {o: counts[o] for o in options} if kind is not PollKind.TEXT else dict(counts.most_common())
    )
    return Results(answered, ordered, right if correct else None)


def participant_view(poll: dict[str, object]) -> dict[str, object]:
    """What participants see of an open or closed poll: never the correct answer."""
    return {k: v for k, v in poll.items() if k not in ("correct",)}


@dataclass
class Coalescer:
    """Live counts for the host: the first change after a quiet spell goes out at once, later
    ones are gathered until ``interval_s`` after the last push (at most 1/interval_s pushes per
    second per poll, whatever the answer rate). Memory: one float and one flag per poll."""

    interval_s: float
    last_push: float = float("-inf")
    pending: bool = False

    def change(self, now: float) -> float | None:
        """An answer changed the counts: the delay until the push, or None if one is pending."""
        if self.pending:
            return None
        self.pending = True
        return max(0.0, self.last_push + self.interval_s - now)

    def pushed(self, now: float) -> None:
        self.pending = False
        self.last_push = now
