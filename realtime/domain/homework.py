"""Homework: states of a student's submission, when they may submit, and the roll-up. No I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

from realtime.errors import bad_request, conflict

MAX_TITLE_CHARS = 200
MAX_TEXT_CHARS = 20_000
MAX_COMMENT_CHARS = 2_000
MAX_GRADE_CHARS = 20
MAX_SCORE = 1000.0


class SubmissionStatus(StrEnum):
    """What is stored for a submission."""

    SUBMITTED = "submitted"
    REVIEWED = "reviewed"
    RETURNED = "returned"  # returned for redo: the student submits again


class HomeworkState(StrEnum):
    """What a teacher, student or guardian sees per student."""

    PENDING = "pending"  # not submitted, the due time not passed
    MISSING = "missing"  # not submitted, the due time passed
    SUBMITTED = "submitted"
    LATE = "late"  # submitted after the due time
    REVIEWED = "reviewed"
    RETURNED = "returned"


def state_of(status: str | None, late: bool, due_at: float, now: float) -> HomeworkState:
    if status is None:
        return HomeworkState.MISSING if now > due_at else HomeworkState.PENDING
    s = SubmissionStatus(status)
    if s is SubmissionStatus.REVIEWED:
        return HomeworkState.REVIEWED
    if s is SubmissionStatus.RETURNED:
        return HomeworkState.RETURNED
    return HomeworkState.LATE if late else HomeworkState.SUBMITTED


def check_submit(status: str | None, due_at: float, now: float) -> bool:
    """Whether this submission is late; conflict when it may not be made at all.

    The first submission is always taken (late after the due time); a resubmission only before
    the due time, or after the teacher returned it for redo. A reviewed one is final.
    """
    if status is None:
        return now > due_at
    s = SubmissionStatus(status)
    if s is SubmissionStatus.REVIEWED:
        raise conflict("this homework has been reviewed; it can no longer be changed")
    if s is SubmissionStatus.RETURNED:
        return now > due_at
    if now > due_at:
        raise conflict("the due time has passed; the submission can no longer be changed")
    return False


def check_text(title: str, body: str) -> None:
    if not title.strip() or len(title) > MAX_TITLE_CHARS:
        raise bad_request(f"a title has 1 to {MAX_TITLE_CHARS} characters")
    if len(body) > MAX_TEXT_CHARS:
        raise bad_request(f"the text has at most {MAX_TEXT_CHARS} characters")


def check_review(comment: str, score: float | None, grade: str | None) -> None:
    if len(comment) > MAX_COMMENT_CHARS:
        raise bad_request(f"a comment has at most {MAX_COMMENT_CHARS} characters")
    if score is not None and not 0 <= score <= MAX_SCORE:
        raise bad_request(f"a score is 0 to {MAX_SCORE:g}")
    if grade is not None and len(grade) > MAX_GRADE_CHARS:
        raise bad_request(f"a grade has at most {MAX_GRADE_CHARS} characters")


def rollup(states: Iterable[HomeworkState]) -> dict[str, int]:
    """Students per state, every state listed; ``done`` counts submitted in any form."""
    counts = Counter(states)
    out = {s.value: counts.get(s, 0) for s in HomeworkState}
    out["students"] = sum(counts.values())
    out["done"] = sum(
        counts.get(s, 0)
        for s in (HomeworkState.SUBMITTED, HomeworkState.LATE, HomeworkState.REVIEWED)
    )
    return out


def needs_reminder(state: HomeworkState) -> bool:
    return state in (HomeworkState.PENDING, HomeworkState.MISSING, HomeworkState.RETURNED)


def due_soon(due_at: float, notified_at: float | None, now: float, notice_s: float) -> bool:
    """Whether the "due soon" reminder of this homework is to go out now: once, within
    ``notice_s`` before the due time, never after it."""
    return notified_at is None and now < due_at <= now + notice_s
