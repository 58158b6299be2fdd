"""Learning records: a student's figures over a period, from rows the actions load. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from realtime.domain.attendance import AttendanceStatus
from realtime.domain.homework import HomeworkState
from realtime.errors import bad_request

DAY_S = 86_400.0
# A period ends now (or at ``until``) and reaches back this far.
PERIOD_DAYS = {"week": 7, "month": 31, "term": 140}
MAX_PERIOD_DAYS = 400


class Period(StrEnum):
    WEEK = "week"
    MONTH = "month"
    TERM = "term"


def bounds(
    period: str, now: float, since: float | None, until: float | None
) -> tuple[float, float]:
    """The [start, end) of a record: explicit bounds win over the named period."""
    try:
        days = PERIOD_DAYS[Period(period).value]
    except ValueError:
        raise bad_request("period is week, month or term") from None
    end = until if until is not None else now
    start = since if since is not None else end - days * DAY_S
    if not start < end or end - start > MAX_PERIOD_DAYS * DAY_S:
        raise bad_request(f"a record covers a period of up to {MAX_PERIOD_DAYS} days")
    return start, end


@dataclass
class StudentRecord:
    """One student's figures; every field is a count or a sum a guardian can read at a glance."""

    student_id: int
    lessons: int = 0
    attended: int = 0
    late: int = 0
    excused: int = 0
    missed: int = 0
    minutes_present: float = 0.0
    hands: int = 0
    stage_minutes: float = 0.0
    questions: int = 0
    polls: int = 0
    polls_answered: int = 0
    quiz_questions: int = 0
    quiz_correct: int = 0
    homework: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in HomeworkState})
    notices: int = 0
    notices_confirmed: int = 0

    def add_lesson(
        self, status: AttendanceStatus, seconds: float, hands: int, stage_s: float
    ) -> None:
        self.lessons += 1
        if status in (AttendanceStatus.PRESENT, AttendanceStatus.LATE):
            self.attended += 1
            if status is AttendanceStatus.LATE:
                self.late += 1
        elif status is AttendanceStatus.EXCUSED:
            self.excused += 1
        else:
            self.missed += 1
        self.minutes_present += seconds / 60
        self.hands += hands
        self.stage_minutes += stage_s / 60

    def add_homework(self, states: Iterable[HomeworkState]) -> None:
        for s in states:
            self.homework[s.value] += 1

    def view(self) -> dict[str, object]:
        return {
            "student_id": self.student_id,
            "lessons": self.lessons,
            "attended": self.attended,
            "late": self.late,
            "excused": self.excused,
            "missed": self.missed,
            "minutes_present": round(self.minutes_present, 1),
            "hands": self.hands,
            "stage_minutes": round(self.stage_minutes, 1),
            "questions": self.questions,
            "polls": self.polls,
            "polls_answered": self.polls_answered,
            "quiz_questions": self.quiz_questions,
            "quiz_correct": self.quiz_correct,
            "homework": dict(self.homework),
            "notices": self.notices,
            "notices_confirmed": self.notices_confirmed,
        }


def class_summary(records: Iterable[StudentRecord]) -> dict[str, object]:
    """Totals and rates over a class, for the staff's charts."""
    rs = list(records)
    lessons = sum(r.lessons for r in rs)
    attended = sum(r.attended for r in rs)
    quiz = sum(r.quiz_questions for r in rs)
    hw_total = sum(sum(v for k, v in r.homework.items() if k != "pending") for r in rs)
    hw_done = sum(r.homework["submitted"] + r.homework["late"] + r.homework["reviewed"] for r in rs)
    return {
        "students": len(rs),
        "attendance_rate": round(attended / lessons, 3) if lessons else None,
        "quiz_correct_rate": round(sum(r.quiz_correct for r in rs) / quiz, 3) if quiz else None,
        "homework_done_rate": round(hw_done / hw_total, 3) if hw_total else None,
        "hands": sum(r.hands for r in rs),
        "questions": sum(r.questions for r in rs),
    }
