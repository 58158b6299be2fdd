"""The web app's live console in headless Chromium with fake cameras, through the real SFU.

Run by tests/web/test_live.py inside a network namespace that has only the loopback interface
(``unshare -n sh -c 'ip link set lo up; exec python -m tests.web.live_scenario lesson'``), so the
pages and the server can only meet on 127.0.0.1. The server uses its embedded defaults (SQLite,
in-process bus), the demo school and ``ice_host_addresses="127.0.0.1"``, and serves the built app
from clients/web/dist. Every person is a browser context of one Chromium (fake camera and
microphone), driving the app the way a person does: buttons, labels, keyboard.

Scenarios (the first argument):

``lesson``
    Ms. Li starts a lesson from her class home with her camera; Wang Hao (Pad) and Li Ming
    (phone) join from the "live now" banner and play her video; Li Ming asks a question
    (anonymously) that Wang Hao upvotes and Ms. Li answers in writing; Wang Hao raises his hand,
    Ms. Li invites him on stage, he accepts, and her page plays his camera. Screenshot of her
    console, then she ends the lesson; Li Ming finds the question and its answer on the class
    board.
``meeting``
    Ms. Li starts a parent meeting; Wang Hao's mother (phone) waits in the lobby until admitted;
    both pages play each other's video; Ms. Li mutes her and her page says so.

The last line on stdout is ``RESULT {json}``: what each page decoded (getStats through the app's
``window.__homeroom.stats()``), its selected ICE pairs, what the pages showed, and timings.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, async_playwright, expect

from realtime import demo
from tests.chromium import CHROMIUM, CHROMIUM_ARGS, MEDIA_ARGS, PAD, PC, PHONE
from tests.conftest import Server, make_settings, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
DIST_INDEX = ROOT / "clients" / "web" / "dist" / "index.html"
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM_FLAGS = [*CHROMIUM_ARGS, *MEDIA_ARGS, "--autoplay-policy=no-user-gesture-required"]
MEDIA_TIMEOUT_S = 25.0
UI_TIMEOUT_MS = 15_000
expect.set_options(timeout=UI_TIMEOUT_MS)  # a busy 2-core machine: more than the default 5 s


class People:
    """One Chromium, one context per person; page errors and console errors are collected."""

    def __init__(self, browser_context: BrowserContext, url: str, result: dict[str, Any]) -> None:
        self.persistent = browser_context
        self.url = url
        self.result = result
        self.errors: list[str] = result.setdefault("page_errors", [])
        self.console: list[str] = result.setdefault("console", [])

    async def sign_in(self, username: str, viewport: dict[str, int]) -> Page:
        browser = self.persistent.browser
        assert browser is not None
        context = await browser.new_context(viewport=viewport)
        page = await context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.on("pageerror", lambda exc: self.errors.append(f"{username}: {exc}"[:400]))
        page.on(
            "console",
            lambda m: m.type == "error" and self.console.append(f"{username}: {m.text}"[:300]),
        )
        await page.goto(self.url + "/")
        await page.get_by_label("用户名").fill(username)
        await page.get_by_label("密码").fill(demo.DEMO_PASSWORD)
        await page.get_by_role("button", name="登录").click()
        await page.locator(".conn[data-state=connected]").wait_for()
        return page


async def stats(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("() => window.__homeroom.stats()")
    return result


def frames_from(
    s: dict[str, Any], publisher_id: int, kind: str = "video", source: str | None = None
) -> int:
    """Frames (video) or packets (audio) a page received from one publisher (and source)."""
    sub = s.get("subscribe") or {}
    total = 0
    for r in sub.get("inbound", []):
        if r["kind"] != kind or r.get("publisher_id") != publisher_id:
            continue
        if source is None or r.get("source") == source:
            total += int(r["framesDecoded"] if kind == "video" else r["packets"])
    return total


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> float:
    t0 = time.monotonic()
    while not await check():
        if time.monotonic() - t0 > MEDIA_TIMEOUT_S:
            raise AssertionError(f"timed out after {MEDIA_TIMEOUT_S}s waiting for {what}")
        await asyncio.sleep(0.25)
    return round(time.monotonic() - t0, 2)


async def plays(page: Page, publisher_id: int, what: str, audio: bool = True) -> float:
    """Wait until the page decodes video (and receives audio) from a publisher."""

    async def check() -> bool:
        s = await stats(page)
        return frames_from(s, publisher_id) > 0 and (
            not audio or frames_from(s, publisher_id, "audio") > 0
        )

    return await eventually(check, what)


async def width_ratio(page: Page, test_id: str) -> float:
    """How much of the stage's width a picture takes (1.0: all of it)."""
    tile = page.get_by_test_id(test_id)
    await expect(tile).to_be_visible()
    box, stage = await tile.bounding_box(), await page.locator(".stage-area").bounding_box()
    assert box is not None and stage is not None
    return round(box["width"] / stage["width"], 3)


async def pairs(page: Page) -> dict[str, Any]:
    s = await stats(page)
    return {leg: (s.get(leg) or {}).get("pair") for leg in ("publish", "subscribe")}


async def shot(page: Page, name: str) -> str:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return str(path)


async def start_from_class_home(page: Page, url: str, class_id: int, button: str) -> int:
    """The teacher's class home: a start button, the dialog's title, then the console."""
    await page.goto(f"{url}/#/class/{class_id}/home")
    await page.get_by_role("button", name=button).click()
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_label("标题")).not_to_be_empty()
    await dialog.get_by_role("button", name="开始", exact=True).click()
    await page.wait_for_url(re.compile(r"#/class/\d+/lessons/\d+$"))
    await page.get_by_test_id("console").wait_for()
    return int(page.url.rsplit("/", 1)[1])


async def join_from_banner(
    page: Page, url: str, class_id: int, button: str, *, mic: bool = True, camera: bool = True
) -> None:
    """From the class's live banner, through the preview (devices on or off), into the session."""
    await page.goto(f"{url}/#/class/{class_id}")
    await page.locator(".live-banner").get_by_role("link", name=button).click()
    await pass_preview(page, mic=mic, camera=camera)


async def pass_preview(page: Page, *, mic: bool = True, camera: bool = True) -> None:
    """The join preview: set the microphone and camera as asked, then go in."""
    preview = page.get_by_test_id("join-preview")
    for name, want in (("麦克风", mic), ("摄像头", camera)):
        toggle = preview.get_by_role("button", name=re.compile(f"^{name}："))
        if (await toggle.get_attribute("aria-pressed") == "true") != want:
            await toggle.click()
        await expect(toggle).to_have_attribute("aria-pressed", "true" if want else "false")
    await preview.get_by_role("button", name="进入", exact=True).click()


async def end_session(host: Page, label: str) -> None:
    """The host ends the session: the button, then the same button in the confirmation."""
    await host.get_by_role("button", name=label).click()
    confirm = host.get_by_role("group", name=re.compile("结束后"))
    await confirm.get_by_role("button", name=label).click()


async def lesson(srv: Server, people: People, result: dict[str, Any]) -> None:
    cid = srv.class_id
    li_id, wang_id, ming_id = srv.uid("li"), srv.uid("wanghao"), srv.uid("liming")
    li = await people.sign_in("li", PC)
    sid = await start_from_class_home(li, srv.url, cid, "开始上课")
    result["session_id"] = sid
    await li.get_by_test_id("my-video").locator("video").wait_for()

    wang = await people.sign_in("wanghao", PAD)
    ming = await people.sign_in("liming", PHONE)
    for page in (wang, ming):
        await join_from_banner(page, srv.url, cid, "加入")
        await page.get_by_test_id("console").wait_for()
    result["students_play_teacher_s"] = [
        await plays(wang, li_id, "Wang Hao playing Ms. Li"),
        await plays(ming, li_id, "Li Ming playing Ms. Li"),
    ]

    # Screen sharing: a second video track on the publish leg (a renegotiation), shown big to
    # the students; stopping it renegotiates again and the students' screen feed goes away.
    await li.get_by_role("button", name="共享屏幕").click()
    await li.get_by_test_id("my-screen").wait_for()

    async def screen_decoded() -> bool:
        return frames_from(await stats(wang), li_id, source="screen") > 0

    result["student_plays_screen_s"] = await eventually(
        screen_decoded, "Wang Hao playing the screen"
    )
    await expect(wang.get_by_test_id(f"video-{li_id}-screen")).to_be_visible()
    await li.get_by_role("button", name="停止共享").click()
    await expect(wang.get_by_test_id(f"video-{li_id}-screen")).to_have_count(0)
    await expect(wang.get_by_test_id(f"video-{li_id}-camera")).to_be_visible()

    # A question from Li Ming (phone), asked anonymously, upvoted by Wang Hao; the tick is
    # cleared for her next question.
    await ming.get_by_label("你的问题").fill("分数的分母可以是 0 吗？")
    await ming.get_by_label("匿名提问").check()
    await ming.get_by_role("button", name="提问", exact=True).click()
    await expect(ming.get_by_label("匿名提问")).not_to_be_checked()
    await wang.get_by_role("button", name=re.compile("赞同这个问题")).click()
    question = li.locator(".live-questions .question", has_text="分母可以是 0")
    await expect(question).to_contain_text("匿名提问 · 李明 Li Ming")
    await expect(li.locator(".live-questions .vote-count").first).to_have_text("1")
    # Ms. Li writes an answer in the lesson.
    await question.get_by_role("button", name="回答", exact=True).click()
    await question.get_by_label("你的回答").fill("不可以，分母为 0 没有意义。")
    await question.get_by_role("button", name="发布回答").click()
    await expect(ming.locator(".live-questions .question")).to_contain_text("分母为 0 没有意义")

    # Wang Hao raises his hand; Ms. Li invites him; he accepts; she plays his camera.
    await wang.get_by_role("button", name="举手").click()
    hands = li.get_by_test_id("hands")
    await expect(hands).to_contain_text("王浩 Wang Hao")
    await hands.get_by_role("button", name="邀请 王浩 Wang Hao 上台发言").click()
    invite = wang.get_by_test_id("stage-invite")
    await expect(invite).to_be_visible()
    await invite.get_by_role("button", name="上台").click()
    await wang.get_by_test_id("my-video").locator("video").wait_for()
    result["teacher_plays_student_s"] = await plays(li, wang_id, "Ms. Li playing Wang Hao")
    # Li Ming sees him too (on stage, everyone receives him).
    result["classmate_plays_student_s"] = await plays(ming, wang_id, "Li Ming playing Wang Hao")
    await ming.get_by_role("button", name="举手").click()
    await expect(hands.locator(".hand-list .hand-item")).to_have_count(
        1
    )  # Li Ming's; Wang Hao is on stage
    await expect(hands).to_contain_text("台上 1/6")

    result["stats"] = {
        "li": await stats(li),
        "wanghao": await stats(wang),
        "liming": await stats(ming),
    }
    result["pairs"] = {
        "li": await pairs(li),
        "wanghao": await pairs(wang),
        "liming": await pairs(ming),
    }
    result["ids"] = {"li": li_id, "wanghao": wang_id, "liming": ming_id}
    await asyncio.sleep(0.5)  # a few more frames for the picture
    result["screenshots"] = [
        await shot(li, "teacher-lesson-console"),
        await shot(wang, "student-on-stage-pad"),
        await shot(ming, "student-lesson-phone"),
    ]

    # The end: everyone is told; the question stays on the class board with its answer.
    await end_session(li, "结束课堂")
    for page in (li, wang, ming):
        await expect(page.get_by_test_id("session-over")).to_contain_text("课堂已结束")
    await ming.get_by_test_id("session-over").get_by_role("link", name="问答").click()
    await ming.get_by_role("tab", name=re.compile("已回答")).click()
    kept = ming.locator(".question", has_text="分数的分母可以是 0 吗？")
    await expect(kept.locator(".answer")).to_contain_text("不可以，分母为 0 没有意义。")
    result["ok"] = True


async def meeting(srv: Server, people: People, result: dict[str, Any]) -> None:
    cid = srv.class_id
    li_id, mom_id = srv.uid("li"), srv.uid("wang_mom")
    li = await people.sign_in("li", PC)
    sid = await start_from_class_home(li, srv.url, cid, "开始家长会")
    result["session_id"] = sid

    mom = await people.sign_in("wang_mom", PHONE)
    await join_from_banner(mom, srv.url, cid, "进入等候室")
    await expect(mom.get_by_test_id("lobby-wait")).to_contain_text("等待老师准入")
    result["lobby_screenshot"] = await shot(mom, "guardian-lobby-phone")

    lobby = li.get_by_test_id("lobby")
    await lobby.get_by_role("button", name="准入 王浩妈妈 Wang Hao's mother").click()
    await mom.get_by_test_id("console").wait_for()
    result["guardian_plays_host_s"] = await plays(mom, li_id, "the mother playing Ms. Li")
    result["host_plays_guardian_s"] = await plays(li, mom_id, "Ms. Li playing the mother")

    # Ms. Li mutes her from the video grid; her page says so, her microphone track goes off;
    # the people list shows it too.
    tile = li.get_by_test_id(f"video-{mom_id}-camera")
    await tile.get_by_role("button", name="将 王浩妈妈 Wang Hao's mother 静音").click()
    await li.get_by_role("tab", name=re.compile("成员")).click()
    await expect(li.get_by_role("tabpanel").locator(f"[data-user-id='{mom_id}']")).to_contain_text(
        "已被静音"
    )
    # The host sees the path the mother's media takes (from the server's selected ICE pair).
    path = li.get_by_role("tabpanel").locator(f"[data-user-id='{mom_id}'] .link-path")
    await expect(path).to_have_text("直连（UDP）", timeout=15000)
    result["mother_path"] = await path.get_attribute("data-path")
    banner = mom.get_by_test_id("host-muted")
    await expect(banner).to_contain_text("已将你静音")
    await expect(mom.get_by_role("button", name="取消静音")).to_be_visible()
    result["muted_banner"] = await banner.inner_text()
    result["guardian_mic_enabled"] = await mom.evaluate(
        "() => document.querySelector('[data-testid=my-video] video')"
        "?.srcObject?.getAudioTracks().map(t => t.enabled)"
    )
    result["stats"] = {"li": await stats(li), "wang_mom": await stats(mom)}
    result["pairs"] = {"li": await pairs(li), "wang_mom": await pairs(mom)}
    result["ids"] = {"li": li_id, "wang_mom": mom_id}
    result["screenshots"] = [
        await shot(mom, "guardian-meeting-phone"),
        await shot(li, "host-meeting"),
    ]
    await end_session(li, "结束家长会")
    await expect(mom.get_by_test_id("session-over")).to_contain_text("家长会已结束")
    result["ok"] = True


async def dual(srv: Server, people: People, result: dict[str, Any]) -> None:
    cid = srv.class_id
    village_a, village_b = srv.demo["linked_class_ids"]
    li_id, wu_id, hong_id = srv.uid("li"), srv.uid("wu"), srv.uid("xiaohong")
    li = await people.sign_in("li", PC)
    await li.goto(f"{srv.url}/#/class/{cid}/home")
    await li.get_by_role("button", name="开始双师课堂").click()
    dialog = li.get_by_role("dialog")
    await dialog.get_by_role("checkbox", name=re.compile("山村小学")).check()
    await dialog.get_by_role("checkbox", name=re.compile("河边小学")).check()
    await dialog.get_by_role("button", name="开始", exact=True).click()
    await li.get_by_test_id("console").wait_for()
    result["session_id"] = int(li.url.rsplit("/", 1)[1])

    # Ms. Wu runs Village School A: she joins from her class and sends the classroom camera.
    wu = await people.sign_in("wu", PAD)
    await join_from_banner(wu, srv.url, village_a, "加入")
    await wu.get_by_test_id("console").wait_for()
    result["local_teacher_plays_master_s"] = await plays(wu, li_id, "Ms. Wu playing Ms. Li")
    result["master_plays_classroom_s"] = await plays(li, wu_id, "Ms. Li playing Village A")
    await expect(li.get_by_test_id(f"classroom-{village_a}")).to_contain_text("吴老师")

    # A student of Village A asks; the master sees it labelled with the classroom.
    hong = await people.sign_in("xiaohong", PHONE)
    await join_from_banner(hong, srv.url, village_a, "加入")
    await hong.get_by_label("你的问题").fill("老师，what is a fraction?")
    await hong.get_by_role("button", name="提问", exact=True).click()
    question = li.locator(".live-questions .question").first
    await expect(question).to_contain_text("what is a fraction")
    await expect(question).to_contain_text("山村小学五年级")

    # Xiao Hong raises her hand: Ms. Wu (her classroom's local teacher) sees it and lowers it.
    await hong.get_by_role("button", name="举手").click()
    wu_hands = wu.get_by_test_id("hands")
    await expect(wu_hands).to_contain_text("小红 Xiao Hong")
    await expect(li.get_by_test_id("hands")).to_contain_text("小红 Xiao Hong")
    await wu_hands.get_by_role("button", name="放下 小红 Xiao Hong 的手").click()
    await expect(hong.get_by_role("button", name="举手")).to_be_visible()

    # Ms. Wu raises her classroom's hand; the master puts the classroom on stage: the student
    # (and everyone) now receives it.
    await wu.get_by_role("button", name="全班举手").click()
    hands = li.get_by_test_id("hands")
    await expect(hands).to_contain_text("山村小学五年级")
    await hands.get_by_role("button", name=re.compile("让 山村小学五年级 上台")).click()
    await expect(li.get_by_test_id(f"classroom-{village_a}")).to_contain_text("台上")
    result["student_plays_staged_classroom_s"] = await plays(
        hong, wu_id, "Xiao Hong playing Village A"
    )
    await expect(wu.get_by_test_id("classroom-on-stage")).to_be_visible()
    # On stage, the classroom is large on every page, not a thumbnail: across the phone of a
    # student, beside the host on the local teacher's tablet, across the master's grid.
    result["staged_width_ratio"] = {
        "xiaohong": await width_ratio(hong, f"video-{wu_id}-camera"),
        "wu": await width_ratio(wu, "my-video"),
        "li": await width_ratio(li, f"classroom-{village_a}"),
    }
    result["pairs"] = {"li": await pairs(li), "wu": await pairs(wu), "xiaohong": await pairs(hong)}
    result["screenshots"] = [
        await shot(li, "master-dual-lesson"),
        await shot(wu, "local-teacher-pad"),
        await shot(hong, "village-student-phone"),
    ]
    result["ids"] = {"li": li_id, "wu": wu_id, "xiaohong": hong_id, "village_b": village_b}
    result["ok"] = True


SCENARIOS = {"lesson": lesson, "meeting": meeting, "dual": dual}


Scenario = Callable[[Server, People, dict[str, Any]], Awaitable[None]]


async def run(
    name: str, tmp: Path, result: dict[str, Any], scenarios: dict[str, Scenario] = SCENARIOS
) -> None:
    if not DIST_INDEX.exists():
        raise RuntimeError(f"{DIST_INDEX} is missing: build the app first (make web)")
    srv = await start_server(make_settings(tmp, ice_host_addresses="127.0.0.1"))
    try:
        async with chromium(tmp) as persistent:
            t0 = time.monotonic()
            await scenarios[name](srv, People(persistent, srv.url, result), result)
            result["seconds"] = round(time.monotonic() - t0, 1)
    finally:
        await stop_server(srv)


@asynccontextmanager
async def chromium(tmp: Path) -> AsyncIterator[BrowserContext]:
    """One Chromium with fake media (its persistent context); every person's context is
    closed with it."""
    async with async_playwright() as pw:
        persistent = await pw.chromium.launch_persistent_context(
            str(tmp / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        try:
            yield persistent
        finally:
            browser = persistent.browser
            for context in browser.contexts if browser else []:
                if context is not persistent:
                    await context.close()
            await persistent.close()


async def main(name: str, scenarios: dict[str, Scenario] = SCENARIOS) -> int:
    result: dict[str, Any] = {"ok": False, "scenario": name}
    with tempfile.TemporaryDirectory(prefix="homeroom-web-live-") as tmp:
        try:
            await asyncio.wait_for(run(name, Path(tmp), result, scenarios), timeout=100)
        except BaseException as exc:  # report everything; the test prints it
            result["ok"] = False
            result["error"] = "".join(traceback.format_exception(exc))[-4000:]
    print("RESULT " + json.dumps(result, default=str), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "lesson")))
