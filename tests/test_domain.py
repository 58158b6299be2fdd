"""The rules of the domain, called directly: no server, no database."""

from __future__ import annotations

import pytest

from realtime.domain import policy
from realtime.domain.chat import check_body, check_own_change
from realtime.domain.live import LiveSession, SessionKind
from realtime.domain.notices import Audience, NoticeKind, Receipt, coverage, validate_choices
from realtime.domain.questions import QuestionStatus, QuestionView, moderate
from realtime.domain.ratelimit import RateLimiter
from realtime.domain.roles import ClassAccess, Role
from realtime.domain.roster import parse_roster
from realtime.domain.streams import StreamKey, Visibility, parse_stream
from realtime.errors import HomeroomError

TEACHER = ClassAccess(1, 10, frozenset({Role.HEAD_TEACHER}))
STUDENT = ClassAccess(2, 10, frozenset({Role.STUDENT}))
GUARDIAN = ClassAccess(3, 10, frozenset({Role.GUARDIAN}), frozenset({2}))
UNLINKED = ClassAccess(4, 10, frozenset({Role.GUARDIAN}))
OTHER_CLASS_STUDENT = ClassAccess(5, 11, frozenset({Role.STUDENT}))


def test_stream_visibility_keeps_students_and_parents_apart() -> None:
    students = StreamKey("class", 10, "students")
    guardians = StreamKey("class", 10, "guardians")
    staff = StreamKey("staff", 10)
    assert policy.stream_visibility(students, TEACHER) is Visibility.STAFF
    assert policy.stream_visibility(students, STUDENT) is Visibility.MEMBER
    assert policy.stream_visibility(students, GUARDIAN) is Visibility.NONE
    assert policy.stream_visibility(guardians, GUARDIAN) is Visibility.MEMBER
    assert policy.stream_visibility(guardians, UNLINKED) is Visibility.NONE
    assert policy.stream_visibility(guardians, STUDENT) is Visibility.NONE
    assert policy.stream_visibility(staff, STUDENT) is Visibility.NONE
    assert policy.stream_visibility(students, OTHER_CLASS_STUDENT) is Visibility.NONE


def test_private_conversations_only_teacher_with_student_or_guardian() -> None:
    assert policy.may_open_conversation(GUARDIAN, TEACHER)
    assert policy.may_open_conversation(TEACHER, STUDENT)
    assert not policy.may_open_conversation(GUARDIAN, STUDENT)
    assert not policy.may_open_conversation(STUDENT, ClassAccess(6, 10, frozenset({Role.STUDENT})))
    assert not policy.may_open_conversation(UNLINKED, TEACHER)


def test_stream_keys_are_parsed_strictly() -> None:
    assert str(parse_stream("qa:3:s7")) == "qa:3:s7"
    for bad in ("class:1", "class:x:students", "qa:1:x", "conv:1:2", "nope:1", ""):
        with pytest.raises(HomeroomError):
            parse_stream(bad)


def test_coverage_any_guardian_covers_the_student() -> None:
    receipts = {
        30: Receipt(30, True, True, True, None),  # one of student 2's guardians confirmed
        31: Receipt(31, True, True, False, None),
        40: Receipt(40, True, False, False, None),
    }
    cov = coverage(
        NoticeKind.CONFIRM_REQUIRED, Audience.GUARDIANS, [2, 4, 5], {2: [30, 31], 4: [40]}, receipts
    )
    assert cov.covered == (2,) and cov.not_covered == (4, 5)
    both = coverage(
        NoticeKind.READ_REQUIRED,
        Audience.BOTH,
        [2, 4, 5],
        {2: [31]},
        {31: receipts[31], 4: Receipt(4, True, True, False, None)},
    )
    assert both.covered == (2, 4) and both.not_covered == (5,)


def test_reply_choices() -> None:
    assert validate_choices(NoticeKind.REPLY_REQUIRED, [" yes ", "no"]) == ["yes", "no"]
    with pytest.raises(HomeroomError):
        validate_choices(NoticeKind.REPLY_REQUIRED, ["yes", "yes"])
    with pytest.raises(HomeroomError):
        validate_choices(NoticeKind.INFO, ["yes", "no"])


def test_question_transitions() -> None:
    q = QuestionView(2, QuestionStatus.OPEN)
    assert moderate(q, QuestionStatus.ANSWERED_LIVE) is QuestionStatus.ANSWERED_LIVE
    with pytest.raises(HomeroomError) as err:
        moderate(QuestionView(2, QuestionStatus.WITHDRAWN), QuestionStatus.OPEN)
    assert err.value.code == "conflict"


def test_chat_rules() -> None:
    with pytest.raises(HomeroomError) as err:
        check_body("x" * 11, 10)
    assert err.value.code == "too_large"
    with pytest.raises(HomeroomError):
        check_body("   ", 10)
    with pytest.raises(HomeroomError) as err:
        check_own_change(1, 1, sent_at=0, now=1000, window_s=900, deleted=False)
    assert err.value.code == "conflict"


def test_rate_limiter_bursts_then_refills() -> None:
    limiter = RateLimiter(burst=3, rate=1.0)
    assert [limiter.allow("k", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("k", 1.0) is True
    assert limiter.allow("other", 0.0) is True


def test_roster_rejects_bad_rows_with_line_numbers() -> None:
    text = (
        "student,student_username,guardian,guardian_username,relationship,phone\n"
        "王浩,wanghao,王妈妈,wang_mom,mother,13800000000\n"
        ",nobody,,,,\n"
        "李明,li ming,,,,\n"
        "张伟,zhangwei,,,father,\n"
    )
    rows, bad = parse_roster(text)
    assert [r.student_username for r in rows] == ["wanghao"]
    assert [b.line for b in bad] == [3, 4, 5]
    _, bad = parse_roster("name\nx\n")
    assert "missing columns" in bad[0].reason


def lesson() -> LiveSession:
    s = LiveSession(1, SessionKind.LESSON, 10, host_id=1, title="t", classrooms={10: "5-2"})
    s.admit_role(1, "Ms. Li", {10: {"head_teacher"}})
    for uid in (2, 3):
        s.admit_role(uid, f"s{uid}", {10: {"student"}})
    return s


def test_students_publish_only_on_stage_and_everyone_receives_them() -> None:
    s = lesson()
    assert s.publish_refusal(1, "screen") is None
    assert s.publish_refusal(2, "camera") is not None
    assert s.receivers(2) == set()
    s.raise_hand("user:2")
    s.invite(1, 2)
    s.accept(2)
    assert s.hands == [] and s.publish_refusal(2, "camera") is None
    assert s.publish_refusal(2, "screen") is not None
    assert s.receivers(2) == {1, 3}
    with pytest.raises(HomeroomError):
        s.invite(3, 2)  # a student cannot invite


def test_stage_places_are_limited() -> None:
    s = lesson()
    s.set_stage_places(1, 1)
    s.invite(1, 2)
    s.accept(2)
    with pytest.raises(HomeroomError) as err:
        s.invite(1, 3)
    assert err.value.code == "conflict"


def test_meeting_lobby_and_mutes() -> None:
    s = LiveSession(2, SessionKind.MEETING, 10, host_id=1, title="m", classrooms={10: "5-2"})
    s.admit_role(1, "host", {10: {"teacher"}})
    g = s.admit_role(3, "mom", {10: {"guardian"}})
    assert g.in_lobby and s.publish_refusal(3, "camera") is not None
    assert s.receivers(1) == set()  # the lobby sees and hears nothing
    s.admit(1, None)
    assert s.receivers(1) == {3}
    s.host_mute(1, 3, {"audio"}, True)
    assert s.forwarding_paused(3, "microphone") and not s.forwarding_paused(3, "camera")
    s.set_lock(1, None, True)
    with pytest.raises(HomeroomError):
        s.self_mute(3, {"audio"}, False)
    with pytest.raises(HomeroomError):
        s.admit_role(4, "student", {10: {"student"}})
    s.set_lock(1, True, None)
    with pytest.raises(HomeroomError):
        s.admit_role(5, "dad", {10: {"guardian"}})


def test_dual_lesson_routes_classrooms_up_until_on_stage() -> None:
    s = LiveSession(
        3,
        SessionKind.DUAL_LESSON,
        10,
        host_id=1,
        title="d",
        classrooms={10: "host", 20: "A", 30: "B"},
    )
    s.admit_role(1, "master", {10: {"teacher"}})
    s.admit_role(21, "wu", {20: {"teacher"}})
    s.admit_role(31, "zhou", {30: {"teacher"}})
    s.admit_role(22, "kid", {20: {"student"}})
    assert s.receivers(21) == {1}
    s.put_classroom_on_stage(1, 20)
    assert s.receivers(21) == {1, 31, 22}
    with pytest.raises(HomeroomError):
        s.hand_key(22, as_classroom=True)
    s.raise_hand("user:22")
    with pytest.raises(HomeroomError):
        s.lower_hand(31, "user:22")  # another classroom's local teacher
    s.lower_hand(21, "user:22")
    assert s.hands == []
