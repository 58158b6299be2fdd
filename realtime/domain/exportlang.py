"""CSV exports for people: headers and words in the chosen language, times in the school's
time zone. Plain rules without I/O; realtime/csvexport.py neutralises formulas and the REST
layer adds the BOM that Excel and WPS need to read UTF-8."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from functools import lru_cache

LANGS = ("zh-CN", "en")
DEFAULT_LANG = "zh-CN"
DEFAULT_TIME_ZONE = "Asia/Shanghai"

# Column id -> (zh-CN, en). Every CSV column a person downloads is here.
HEADERS: dict[str, tuple[str, str]] = {
    "student_id": ("学生编号", "Student ID"),
    "student": ("学生", "Student"),
    "covered": ("已完成", "Covered"),
    "recipient_id": ("接收人编号", "Recipient ID"),
    "recipient": ("接收人", "Recipient"),
    "state": ("状态", "State"),
    "delivered_at": ("送达时间", "Delivered at"),
    "read_at": ("阅读时间", "Read at"),
    "confirmed_at": ("确认时间", "Confirmed at"),
    "reply": ("回复", "Reply"),
    # A lesson's attendance (actions/attendance.py).
    "class_id": ("班级编号", "Class ID"),
    "attendance": ("出勤", "Attendance"),
    "minutes": ("在线分钟", "Minutes"),
    "first_join": ("首次进入", "First joined"),
    "last_leave": ("最后离开", "Last left"),
    "joins": ("进入次数", "Joins"),
    "hands": ("举手次数", "Hands raised"),
    "stage_minutes": ("上台分钟", "Minutes on stage"),
    "questions": ("提问数", "Questions"),
    "polls_answered": ("作答投票数", "Polls answered"),
    "polls": ("投票总数", "Polls"),
    "quiz_correct": ("测验答对", "Quizzes right"),
    "quizzes": ("测验总数", "Quizzes"),
    "corrected": ("老师已更正", "Corrected by a teacher"),
    "note": ("备注", "Note"),
    # A homework's submissions (actions/homework.py).
    "submitted_at": ("提交时间", "Submitted at"),
    "times": ("提交次数", "Times submitted"),
    "late": ("逾期", "Late"),
    "score": ("分数", "Score"),
    "grade": ("等级", "Grade"),
    "comment": ("评语", "Comment"),
}

# Values that are words, by kind: a receipt's state.
WORDS: dict[str, tuple[str, str]] = {
    "none": ("未送达", "not delivered"),
    "sent": ("已发送", "sent"),
    "delivered": ("已送达", "delivered"),
    "read": ("已读", "read"),
    "confirmed": ("已确认", "confirmed"),
    "replied": ("已回复", "replied"),
}

# Words of the other exports, by kind (the same English word may say different things).
KIND_WORDS: dict[str, dict[str, tuple[str, str]]] = {
    "receipt": WORDS,
    "attendance": {
        "present": ("出勤", "present"),
        "late": ("迟到", "late"),
        "absent": ("缺勤", "absent"),
        "excused": ("请假", "excused"),
    },
    "homework": {
        "pending": ("未提交", "pending"),
        "missing": ("缺交", "missing"),
        "submitted": ("已提交", "submitted"),
        "late": ("迟交", "late"),
        "reviewed": ("已批改", "reviewed"),
        "returned": ("退回重做", "returned"),
    },
}


def valid_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def choose_lang(query: str | None, accept_language: str | None) -> str:
    """``?lang=`` first, then the browser's Accept-Language (highest q), else Chinese."""
    if query:
        for lang in LANGS:
            if query.lower() == lang.lower() or query.lower() == lang.split("-")[0]:
                return lang
    best: tuple[float, str] | None = None
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        found = {"zh": "zh-CN", "en": "en"}.get(primary)
        if found and q > 0 and (best is None or q > best[0]):
            best = (q, found)
    return best[1] if best else DEFAULT_LANG


@lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


class Localiser:
    """Headers, yes/no, words and times of one export."""

    def __init__(self, lang: str = DEFAULT_LANG, time_zone: str = DEFAULT_TIME_ZONE) -> None:
        self.lang = lang if lang in LANGS else DEFAULT_LANG
        self._i = LANGS.index(self.lang)
        self.zone = _zone(time_zone if valid_time_zone(time_zone) else DEFAULT_TIME_ZONE)

    def header(self, columns: Iterable[str]) -> list[str]:
        return [HEADERS[c][self._i] for c in columns]

    def yes_no(self, value: bool) -> str:
        return ("是", "yes")[self._i] if value else ("否", "no")[self._i]

    def word(self, value: str, kind: str = "receipt") -> str:
        words = KIND_WORDS[kind]
        return words[value][self._i] if value in words else value

    def time(self, ts: float | None) -> str:
        """ "2026-12-04 15:30:00" in the school's zone (spreadsheets read it as a date)."""
        if not ts:
            return ""
        return dt.datetime.fromtimestamp(ts, self.zone).strftime("%Y-%m-%d %H:%M:%S")
