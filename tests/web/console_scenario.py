"""The live console's own tools in headless Chromium with fake devices, on loopback only (run by
tests/web/test_console_tools.py in a network namespace, like tests/web/live_scenario.py, whose
runner and helpers it uses):

- ``preview``: a mother joins a parent meeting from her phone. The preview shows her camera and a
  microphone level meter that moves with the fake microphone's tone, with both off to start
  with (a parent decides before anyone sees her); she goes in with the microphone on and the
  camera off. The teacher hears her and never gets a picture of her; her page says the camera
  is off. The teacher pins her tile large and watches his own picture full screen, then hands
  the meeting over to Mr. Chen, who now runs it.
"""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Any

from playwright.async_api import expect

from tests.chromium import PC, PHONE
from tests.conftest import Server
from tests.web import live_scenario
from tests.web.live_scenario import (
    People,
    eventually,
    frames_from,
    pairs,
    pass_preview,
    shot,
    start_from_class_home,
    stats,
)


async def preview(srv: Server, people: People, result: dict[str, Any]) -> None:
    cid = srv.class_id
    li_id, mom_id, chen_id = srv.uid("li"), srv.uid("wang_mom"), srv.uid("chen")
    li = await people.sign_in("li", PC)
    await start_from_class_home(li, srv.url, cid, "开始家长会")  # the host goes straight in
    await li.get_by_test_id("my-video").locator("video").wait_for()

    mom = await people.sign_in("wang_mom", PHONE)
    await mom.goto(f"{srv.url}/#/class/{cid}")
    await mom.locator(".live-banner").get_by_role("link", name="进入等候室").click()
    box = mom.get_by_test_id("join-preview")
    mic = box.get_by_role("button", name=re.compile("^麦克风："))
    cam = box.get_by_role("button", name=re.compile("^摄像头："))
    # A parent starts with both off: nothing of her is shown, the meter stays still.
    await expect(mic).to_have_attribute("aria-pressed", "false")
    await expect(cam).to_have_attribute("aria-pressed", "false")
    await expect(box.get_by_role("img", name="摄像头已关闭")).to_be_visible()
    meter = box.get_by_role("meter", name="麦克风测试")
    await expect(meter).to_have_attribute("aria-valuenow", "0")
    # She tests both: her picture appears, the meter moves with the tone.
    await cam.click()
    await box.get_by_label("我的摄像头预览").wait_for()
    await mic.click()
    result["meter_moves_s"] = await eventually(
        lambda: _level_above(meter, 5), "the microphone level meter to move"
    )
    cameras = box.get_by_test_id("camera-choice").locator("option")
    await expect(cameras.first).to_be_attached()
    result["cameras_offered"] = await cameras.count()
    result["preview_screenshot"] = await shot(mom, "guardian-join-preview-phone")
    # She goes in with the microphone on and the camera off.
    await pass_preview(mom, mic=True, camera=False)
    await live_scenario.expect(mom.get_by_test_id("lobby-wait")).to_be_visible()
    await (
        li.get_by_test_id("lobby")
        .get_by_role("button", name="准入 王浩妈妈 Wang Hao's mother")
        .click()
    )
    await mom.get_by_test_id("console").wait_for()
    await expect(mom.get_by_role("button", name="打开摄像头")).to_be_visible()
    await expect(mom.get_by_role("button", name="静音", exact=True)).to_be_visible()

    # The teacher hears her, and her tile shows her initial, not a picture.
    async def hears() -> bool:
        return frames_from(await stats(li), mom_id, "audio") > 0

    result["host_hears_guardian_s"] = await eventually(hears, "Ms. Li hearing the mother")
    mom_tile = li.get_by_test_id(f"video-{mom_id}-camera")
    await expect(mom_tile.locator(".video-off")).to_be_visible()
    await expect(mom.get_by_test_id("my-video").locator(".video-off")).to_be_visible()

    # Pin: the teacher pins his own camera large over the stage, then lets go of it.
    mine = li.get_by_test_id("my-video")
    await mine.get_by_role("button", name="放大显示：我的摄像头画面").click()
    await expect(mine).to_have_class(re.compile(r"\bpinned\b"))
    stage = await li.locator(".stage-area").bounding_box()
    pinned = await mine.bounding_box()
    assert stage is not None and pinned is not None
    result["pinned_width_ratio"] = round(pinned["width"] / stage["width"], 3)
    result["pinned_screenshot"] = await shot(li, "host-pinned-tile")
    await mine.get_by_role("button", name="取消放大：我的摄像头画面").click()
    await expect(mine).not_to_have_class(re.compile(r"\bpinned\b"))
    # Full screen, and back.
    await mine.get_by_role("button", name="全屏观看：我的摄像头画面").click()
    await li.wait_for_function(
        "() => document.fullscreenElement?.dataset.testid === 'my-video'", timeout=10_000
    )
    await mine.get_by_role("button", name="退出全屏").click()
    await li.wait_for_function("() => document.fullscreenElement === null", timeout=10_000)

    # Hand-over: Mr. Chen comes in; Ms. Li gives him the meeting.
    chen = await people.sign_in("chen", PC)
    await chen.goto(f"{srv.url}/#/class/{cid}")
    await chen.locator(".live-banner").get_by_role("link").first.click()
    await pass_preview(chen)
    await chen.get_by_test_id("console").wait_for()
    await li.get_by_role("tab", name=re.compile("成员")).click()
    row = li.get_by_role("tabpanel").locator(f"[data-user-id='{chen_id}']")
    await row.get_by_role("button", name="把主持人交给 陈老师 Mr. Chen").click()
    confirm = row.get_by_role("group", name=re.compile("把主持人交给 陈老师 Mr. Chen？"))
    await expect(confirm).to_be_visible()
    result["handover_screenshot"] = await shot(li, "host-hand-over-confirm")
    await confirm.get_by_role("button", name="确定移交").click()
    await expect(chen.get_by_role("button", name="结束家长会")).to_be_visible()
    await expect(li.get_by_role("button", name="结束家长会")).to_have_count(0)
    await expect(chen.locator(".console-meta")).to_contain_text("主讲老师")
    await expect(li.locator(".console-meta")).to_contain_text("老师")
    result["pairs"] = {"li": await pairs(li)}
    result["ids"] = {"li": li_id, "wang_mom": mom_id, "chen": chen_id}
    result["ok"] = True


async def _level_above(meter: Any, level: int) -> bool:
    value = await meter.get_attribute("aria-valuenow")
    return value is not None and int(value) > level


live_scenario.SCENARIOS["preview"] = preview

if __name__ == "__main__":
    sys.exit(asyncio.run(live_scenario.main(sys.argv[1] if len(sys.argv) > 1 else "preview")))
