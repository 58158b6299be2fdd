"""Polls driven from inside the web app's live console, in real Chromium with real WebRTC, on
loopback only: a quiz in a lesson, a quick poll of the families in a parent meeting, and a
classroom-answer quiz in a dual-teacher lesson (tests/web/poll_scenario.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.test_live import run_scenario


@pytest.mark.timeout(150)
def test_quiz_opened_answered_and_published_in_the_lesson_console() -> None:
    r = run_scenario("lesson", "tests.web.poll_scenario")
    for path in r["screenshots"]:
        assert Path(path).stat().st_size > 10_000, path


@pytest.mark.timeout(150)
def test_parent_meeting_host_polls_the_families() -> None:
    r = run_scenario("meeting", "tests.web.poll_scenario")
    assert len(r["screenshots"]) == 2


@pytest.mark.timeout(150)
def test_dual_lesson_local_teacher_answers_for_the_classroom() -> None:
    r = run_scenario("dual", "tests.web.poll_scenario")
    # The master's card lists the classrooms in the lesson: Village A (its teacher accepted the
    # link by joining); Village B's link is still pending, so it does not answer.
    assert r["linked"] == 1
