"""The live console's own tools with real WebRTC on loopback (tests/web/console_scenario.py): the
join preview with device choice and a microphone level meter, going in with the camera off,
pinning a tile, full screen, and handing the session over to another teacher."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chromium import CHROMIUM, require, run_in_loopback_namespace
from tests.web.conftest import DIST_INDEX
from tests.web.test_live import assert_loopback


@pytest.mark.timeout(150)
def test_preview_pin_fullscreen_and_hand_over() -> None:
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (run `make browser`)")
    assert DIST_INDEX.exists()  # built by the web_dist fixture
    r, stderr = run_in_loopback_namespace("tests.web.console_scenario", "preview")
    assert r["ok"], (
        f"{r.get('error')}\npage errors: {r.get('page_errors')}\nconsole: {r.get('console')}\n"
        f"stderr:\n{stderr[-2000:]}"
    )
    assert r["page_errors"] == []
    # The meter moved with the fake microphone's tone; the fake camera was offered to choose.
    assert r["meter_moves_s"] < 10 and r["cameras_offered"] >= 1
    # In with the camera off (both pages show her initial, checked in the scenario); heard.
    assert r["host_hears_guardian_s"] < 25
    # A pinned tile covers the stage's width.
    assert r["pinned_width_ratio"] > 0.95
    assert Path(r["preview_screenshot"]).stat().st_size > 10_000
    assert_loopback(r, "li", ("publish", "subscribe"))
