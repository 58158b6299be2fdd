"""The web app's live console with real WebRTC: Chromium pages with fake cameras and
microphones, through the forwarding SFU, on loopback only.

Each test runs one scenario of tests/web/live_scenario.py in a network namespace that has
nothing but ``lo`` (``unshare -n``), so the pages and the server can only meet on 127.0.0.1, which
the tests check through every page's selected ICE candidate pairs. What a page plays is read from
its own getStats() through the app's debug hook ``window.__homeroom.stats()``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import CHROMIUM, require, run_in_loopback_namespace
from tests.web.conftest import DIST_INDEX
from tests.web.live_scenario import frames_from

LOOPBACK = "127.0.0.1"


def run_scenario(name: str, module: str = "tests.web.live_scenario") -> dict[str, Any]:
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (run `make browser`)")
    assert DIST_INDEX.exists()  # built by the web_dist fixture
    result, stderr = run_in_loopback_namespace(module, name)
    assert result["ok"], (
        f"scenario {name} failed:\n{result.get('error')}\n"
        f"page errors: {result.get('page_errors')}\nconsole: {result.get('console')}\n"
        f"stderr:\n{stderr[-2000:]}"
    )
    assert result["page_errors"] == [], result["page_errors"]
    return result


def assert_loopback(result: dict[str, Any], who: str, legs: tuple[str, ...]) -> None:
    for leg in legs:
        pair = result["pairs"][who][leg]
        assert pair is not None, f"{who} {leg}: no selected candidate pair"
        # The transport's selected pair: "succeeded", or "in-progress" while Chromium's
        # consent check on it is out (seen on a loaded machine); media went over it either way.
        assert pair["state"] in ("succeeded", "in-progress"), (who, leg, pair)
        assert pair["local"]["address"] == LOOPBACK, (who, leg, pair)
        assert pair["remote"]["address"] == LOOPBACK, (who, leg, pair)


@pytest.mark.timeout(150)
def test_lesson_video_screen_hand_and_stage() -> None:
    r = run_scenario("lesson")
    ids, stats = r["ids"], r["stats"]
    li, wang, ming = ids["li"], ids["wanghao"], ids["liming"]
    # Both students play the teacher's camera and hear her; each student's page is the real app.
    for student in ("wanghao", "liming"):
        assert frames_from(stats[student], li) > 0, student
        assert frames_from(stats[student], li, "audio") > 0, student
    # The teacher's camera goes out in three sizes (quarter, half, full: "layers per viewer"),
    # one published track: each student plays one picture of it.
    widths = sorted(
        o["width"]
        for o in stats["li"]["publish"]["outbound"]
        if o["kind"] == "video" and o["framesEncoded"] and o["width"]
    )
    # (Chromium's encoder may scale the larger ones down further while its estimate ramps up
    # or the machine is busy: 160/320/320 was seen.)
    assert len(widths) == 3 and widths[0] < widths[2], widths
    for student in ("wanghao", "liming"):
        played = [
            i
            for i in stats[student]["subscribe"]["inbound"]
            if i["kind"] == "video" and i["publisher_id"] == li and i["source"] == "camera"
        ]
        assert len(played) == 1 and played[0]["width"] in widths, played
    # Screen sharing reached a student, then went away again (both renegotiations).
    assert r["student_plays_screen_s"] < 25
    # On stage, Wang Hao publishes camera and microphone; the teacher and his classmate play him.
    assert frames_from(stats["li"], wang) > 0
    assert frames_from(stats["li"], wang, "audio") > 0
    assert frames_from(stats["liming"], wang) > 0
    sent = {o["kind"]: o for o in stats["wanghao"]["publish"]["outbound"] if o["packets"]}
    assert sent["video"]["framesEncoded"] > 0 and sent["audio"]["packets"] > 0
    # Li Ming never went on stage: she sends nothing, and nobody receives her.
    assert stats["liming"]["publish"] is None
    assert frames_from(stats["li"], ming) == 0
    assert_loopback(r, "li", ("publish", "subscribe"))
    assert_loopback(r, "wanghao", ("publish", "subscribe"))
    assert_loopback(r, "liming", ("subscribe",))
    for path in r["screenshots"]:
        assert Path(path).stat().st_size > 10_000, path


@pytest.mark.timeout(150)
def test_parent_meeting_lobby_admit_and_host_mute() -> None:
    r = run_scenario("meeting")
    li, mom = r["ids"]["li"], r["ids"]["wang_mom"]
    stats = r["stats"]
    # Admitted from the lobby, the mother and the teacher play each other.
    assert frames_from(stats["wang_mom"], li) > 0
    assert frames_from(stats["wang_mom"], li, "audio") > 0
    assert frames_from(stats["li"], mom) > 0
    assert frames_from(stats["li"], mom, "audio") > 0
    # Muted by the host: her page says so and her microphone track is off.
    assert "已将你静音" in r["muted_banner"]
    assert r["guardian_mic_enabled"] == [False]
    assert stats["wang_mom"]["you"]["muted_by_host"] == ["audio"]
    # The host's people list shows the path of her media: direct UDP on loopback.
    assert r["mother_path"] == "udp"
    for who in ("li", "wang_mom"):
        assert_loopback(r, who, ("publish", "subscribe"))


@pytest.mark.timeout(150)
def test_dual_teacher_classrooms_on_stage() -> None:
    r = run_scenario("dual")
    # The master plays Village A's classroom camera; the local teacher plays the master; once
    # the classroom is on stage, its student plays it too. Questions and hands carry the
    # classroom's name (checked in the scenario on the master's page).
    assert r["master_plays_classroom_s"] < 25
    assert r["local_teacher_plays_master_s"] < 25
    assert r["student_plays_staged_classroom_s"] < 25
    # The classroom on stage is large: across a phone and the master's grid, at least half the
    # stage beside the host on the local teacher's tablet.
    ratio = r["staged_width_ratio"]
    assert ratio["xiaohong"] > 0.9 and ratio["li"] > 0.9 and ratio["wu"] > 0.45, ratio
    assert_loopback(r, "li", ("publish", "subscribe"))
    assert_loopback(r, "wu", ("publish", "subscribe"))
    assert_loopback(r, "xiaohong", ("subscribe",))
