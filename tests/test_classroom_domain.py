"""The rules of polls, attendance, homework and records, without I/O."""

from __future__ import annotations

import pytest

from realtime.domain import attendance as att
from realtime.domain import homework as hw
from realtime.domain import polls, records
from realtime.domain.attendance import ParticipationTracker, Presence
from realtime.domain.policy import may_answer_poll, may_view_student
from realtime.domain.polls import Coalescer, PollKind, PollStatus
from realtime.domain.roles import ClassAccess, Role
from realtime.errors import HomeroomError


def test_poll_options_correct_answers_and_scoring() -> None:
    assert polls.validate_options(PollKind.TRUE_FALSE, []) == ["true", "false"]
    with pytest.raises(HomeroomError):
        polls.validate_options(PollKind.SINGLE, ["A"])
    with pytest.raises(HomeroomError):
        polls.validate_options(PollKind.SINGLE, ["A", "A "])
    with pytest.raises(HomeroomError):
        polls.validate_correct(PollKind.SINGLE, ["A", "B"], ["A", "B"])
    assert polls.validate_correct(PollKind.MULTIPLE, ["A", "B", "C"], ["C", "A"]) == ["A", "C"]
    assert polls.normalize_answer(PollKind.MULTIPLE, ["A", "B", "C"], ["C", "A"]) == ["A", "C"]
    assert polls.is_correct(PollKind.MULTIPLE, ["A", "C"], ["A", "C"]) is True
    assert polls.is_correct(PollKind.MULTIPLE, ["A", "C"], ["A"]) is False
    assert polls.is_correct(PollKind.SINGLE, [], ["A"]) is None
    text = polls.validate_correct(PollKind.TEXT, [], ["Paris"])
    assert polls.is_correct(PollKind.TEXT, text, ["  paris "]) is True
    res = polls.tally(PollKind.SINGLE, ["A", "B"], ["B"], [(["A"], 1), (["B"], 2)])
    assert res.counts == {"A": 1, "B": 2} and res.correct_count == 2 and res.answered == 3
    polls.check_open(PollStatus.OPEN, None, 10.0)
    with pytest.raises(HomeroomError):
        polls.check_open(PollStatus.OPEN, 5.0, 10.0)  # the time limit passed
    assert polls.effective_status(PollStatus.OPEN, 5.0, 10.0) is PollStatus.CLOSED


def test_coalescer_pushes_at_once_then_at_most_once_per_interval() -> None:
    c = Coalescer(0.15)
    assert c.change(10.0) == 0.0
    assert c.change(10.01) is None  # one is pending
    c.pushed(10.02)
    assert c.change(10.05) == pytest.approx(0.12)
    c.pushed(10.17)
    assert c.change(11.0) == 0.0  # after a quiet spell: at once


def test_attendance_intervals_merged_and_status() -> None:
    assert att.merge_intervals([[0, 10], [5, 20], [30, None]], until=40) == [(0, 20), (30, 40)]
    assert att.present_seconds([[0, 10], [10, 15]], until=99) == 15
    assert att.status_of(None, 0.0, None) is att.AttendanceStatus.ABSENT
    assert att.status_of(400.0, 0.0, None) is att.AttendanceStatus.LATE
    assert att.status_of(None, 0.0, "excused") is att.AttendanceStatus.EXCUSED
    assert att.total_seconds(60.0, 100.0, 130.0) == 90.0


def test_tracker_turns_snapshots_into_joins_leaves_hands_and_stage() -> None:
    t = ParticipationTracker()
    p = Presence(1, "student", True, False, False)
    assert [c.kind for c in t.observe(0.0, {7: p})] == ["join"]
    assert t.observe(1.0, {7: p}) == []  # nothing changed
    up = Presence(1, "student", True, True, True)
    assert [c.kind for c in t.observe(2.0, {7: up})] == ["hand"]
    gone = Presence(1, "student", False, True, False)  # disconnected: leaves, stage time ends
    changes = t.observe(5.0, {7: gone})
    assert [c.kind for c in changes] == ["leave", "stage"] and changes[1].seconds == 3.0
    assert [c.kind for c in t.observe(6.0, {7: p})] == ["join"]
    assert [c.kind for c in t.end(9.0)] == ["leave"]


def test_homework_states_and_when_a_student_may_submit() -> None:
    assert hw.state_of(None, False, due_at=10, now=5) is hw.HomeworkState.PENDING
    assert hw.state_of(None, False, due_at=10, now=15) is hw.HomeworkState.MISSING
    assert hw.check_submit(None, due_at=10, now=15) is True  # first one after the due: late
    assert hw.check_submit("submitted", due_at=10, now=5) is False
    with pytest.raises(HomeroomError):
        hw.check_submit("submitted", due_at=10, now=15)
    with pytest.raises(HomeroomError):
        hw.check_submit("reviewed", due_at=10, now=5)
    assert hw.check_submit("returned", due_at=10, now=15) is True
    counts = hw.rollup([hw.HomeworkState.LATE, hw.HomeworkState.MISSING])
    assert counts["done"] == 1 and counts["students"] == 2


def test_record_periods() -> None:
    start, end = records.bounds("week", 1000.0 * 86400, None, None)
    assert end - start == 7 * 86400
    with pytest.raises(HomeroomError):
        records.bounds("year", 0.0, None, None)
    with pytest.raises(HomeroomError):
        records.bounds("week", 0.0, 10.0, 5.0)


def test_policy_guardian_sees_only_her_own_children() -> None:
    mom = ClassAccess(20, 1, frozenset({Role.GUARDIAN}), frozenset({5}))
    assert may_view_student(mom, 5) and not may_view_student(mom, 6)
    student = ClassAccess(5, 1, frozenset({Role.STUDENT}))
    assert may_view_student(student, 5) and not may_view_student(student, 6)
    pending = ClassAccess(21, 1, frozenset({Role.GUARDIAN}))  # no approved child
    assert not may_view_student(pending, 5)
    teacher = ClassAccess(1, 1, frozenset({Role.TEACHER}))
    assert may_view_student(teacher, 6)
    assert may_answer_poll(student, "students", "person")
    assert not may_answer_poll(mom, "students", "person")
    assert may_answer_poll(mom, "guardians", "person")
    assert not may_answer_poll(student, "students", "classroom")
    assert may_answer_poll(teacher, "students", "classroom")
