"""Questions: the states a question goes through and who may move it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from realtime.errors import conflict, forbidden


class QuestionStatus(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    ANSWERED_LIVE = "answered_live"
    DISMISSED = "dismissed"
    WITHDRAWN = "withdrawn"


# What moves to the class board when the live session a question was asked in ends.
KEPT_ON_THE_BOARD = (
    QuestionStatus.OPEN,
    QuestionStatus.ANSWERED,
    QuestionStatus.ANSWERED_LIVE,
)

# status -> statuses a teacher may move it to
_MODERATION = {
    QuestionStatus.OPEN: {
        QuestionStatus.ANSWERED,
        QuestionStatus.ANSWERED_LIVE,
        QuestionStatus.DISMISSED,
    },
    QuestionStatus.ANSWERED: {QuestionStatus.ANSWERED, QuestionStatus.OPEN},
    QuestionStatus.ANSWERED_LIVE: {QuestionStatus.ANSWERED, QuestionStatus.OPEN},
    QuestionStatus.DISMISSED: {QuestionStatus.OPEN},
    QuestionStatus.WITHDRAWN: set(),
}


@dataclass(frozen=True)
class QuestionView:
    asker_id: int
    status: QuestionStatus


def moderate(question: QuestionView, to: QuestionStatus) -> QuestionStatus:
    if to not in _MODERATION[question.status]:
        raise conflict(f"a question that is {question.status} cannot become {to}")
    return to


def check_asker_change(question: QuestionView, actor_id: int) -> None:
    """Students edit or withdraw their own questions while they are open."""
    if question.asker_id != actor_id:
        raise forbidden("only the asker may change this question")
    if question.status is not QuestionStatus.OPEN:
        raise conflict("only an open question can be changed")


def check_vote(question: QuestionView, actor_id: int) -> None:
    if question.asker_id == actor_id:
        raise conflict("you cannot vote for your own question")
    if question.status in (QuestionStatus.WITHDRAWN, QuestionStatus.DISMISSED):
        raise conflict("this question is closed")


def sort_key(votes: int, created_seq: int) -> tuple[int, int]:
    """Lists sort by votes (most first), then time (oldest first)."""
    return (-votes, created_seq)
