"""The join preview's speaker test in real Chromium (zh-CN, a mother on her phone): she chooses
where sound plays and hears a test chime there before going into a parents' meeting.

Chromium's fake devices give three outputs; the chime is checked where it is played (the audio
element is playing, on the chosen output, and its sound is not silence)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.chromium import MEDIA_ARGS, PHONE
from tests.conftest import Server
from tests.web.conftest import launch, screenshot

pytestmark = pytest.mark.parametrize("server", ["sqlite"], indirect=True)

# Where the chime plays and how loud it is, sampled for half a second (RMS, 0 to 1).
TONE_STATE = """async () => {
  const el = document.querySelector('audio[data-testid="speaker-tone"]');
  if (!el) return null;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  ctx.createMediaStreamSource(el.srcObject).connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  let loudest = 0;
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 50));
    analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const x of data) sum += x * x;
    loudest = Math.max(loudest, Math.sqrt(sum / data.length));
  }
  await ctx.close();
  return { playing: !el.paused, sinkId: el.sinkId, rms: loudest };
}"""


async def _option_value(page: Page, label: str) -> str:
    select = page.get_by_test_id("speaker-choice")
    value = await select.locator("option", has_text=label).get_attribute("value")
    assert value
    return value


async def test_a_mother_tests_her_speaker_before_the_meeting(server: Server, chromium: str) -> None:
    cid = server.class_id
    li = await server.client("li")
    started = await li.request(
        "session.start", {"class_id": cid, "kind": "meeting", "title": "期中家长会"}
    )
    sid = started["session"]["id"]
    async with launch(server.url, chromium, tuple(MEDIA_ARGS)) as web:
        mom = await web.signed_in("wang_mom", PHONE)
        await mom.goto(f"{server.url}/#/class/{cid}/lessons/{sid}")
        box = mom.get_by_test_id("join-preview")
        await expect(box.get_by_text("扬声器测试")).to_be_visible()
        speakers = box.get_by_test_id("speaker-choice")
        await expect(speakers.locator("option")).to_have_count(3)
        chosen = await _option_value(mom, "Fake Audio Output 1")
        await speakers.select_option(chosen)

        button = box.get_by_test_id("speaker-test")
        await expect(button).to_have_text("播放提示音")
        await button.click()
        await expect(button).to_have_attribute("data-state", "playing")
        await expect(button).to_have_text("正在播放…")
        tone = await mom.evaluate(TONE_STATE)
        assert tone is not None, "no test chime is playing"
        assert tone["playing"] and tone["sinkId"] == chosen, tone
        assert tone["rms"] > 0.01, tone  # a chime, not silence
        await screenshot(mom, "guardian-speaker-test-phone")
        # It ends by itself, and can be played again.
        await expect(button).to_have_attribute("data-state", "idle", timeout=5000)
        await expect(mom.locator('audio[data-testid="speaker-tone"]')).to_have_count(0)
        await expect(box.get_by_role("status")).to_contain_text("听到“叮咚”声")


async def test_a_locked_meeting_says_it_is_locked(server: Server, chromium: str) -> None:
    """A mother arriving at a meeting the teacher has locked is told so in Chinese, under a
    heading that agrees ("无法加入"), never a "no permission" nor the server's English."""
    cid = server.class_id
    li = await server.client("li")
    started = await li.request(
        "session.start", {"class_id": cid, "kind": "meeting", "title": "期中家长会"}
    )
    sid = started["session"]["id"]
    await li.request("session.join", {"session_id": sid})
    await li.request("moderate.lock", {"session_id": sid, "locked": True})
    async with launch(server.url, chromium, tuple(MEDIA_ARGS)) as web:
        mom = await web.signed_in("wang_mom", PHONE)
        await mom.goto(f"{server.url}/#/class/{cid}/lessons/{sid}")
        box = mom.get_by_test_id("join-preview")
        await box.get_by_role("button", name="进入", exact=True).click()
        over = mom.get_by_test_id("session-over")
        await expect(over.get_by_role("heading", level=1)).to_have_text("无法加入")
        alert = over.get_by_role("alert")
        await expect(alert).to_contain_text("会议已锁定，暂时不能加入")
        await expect(alert.locator(".error-code")).to_have_attribute(
            "data-reason", "meeting_locked"
        )
        await expect(over).not_to_contain_text("权限")
        await expect(over).not_to_contain_text("locked")
        await screenshot(mom, "guardian-meeting-locked-phone")
