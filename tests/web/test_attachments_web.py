"""Attachments in the web app: a student attaches a photo in class chat, a classmate sees its
thumbnail (fetched through a signed link) and opens it in the photo viewer; photos dropped on
the composer and swiped through on a phone; a photo pasted into a question and one attached to
the teacher's answer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from typing import Any

from playwright.async_api import Page, Route, expect

from clients import files
from clients.homeroom import RequestError
from tests.attachment_files import jpeg_with_gps, pdf_bytes, png_bytes
from tests.chromium import PHONE
from tests.conftest import Server
from tests.web.conftest import Browser, launch, screenshot

LOADED = (
    "sel => { const i = document.querySelector(sel);"
    " return !!i && i.complete && i.naturalWidth > 0; }"
)
# What the browser does when files are dropped on an element or pasted into a field: the same
# events, carrying a DataTransfer with real File objects (Playwright has no drag of OS files).
_FILES_JS = """(files) => { const dt = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
    dt.items.add(new File([bytes], f.name, { type: f.type }));
  }
  return dt; }"""
DRAG_OVER = (
    "([sel, files]) => { const dt = (" + _FILES_JS + ")(files);"
    " document.querySelector(sel).dispatchEvent(new DragEvent('dragover',"
    " { dataTransfer: dt, bubbles: true, cancelable: true })); }"
)
DROP = (
    "([sel, files]) => { const dt = (" + _FILES_JS + ")(files);"
    " document.querySelector(sel).dispatchEvent(new DragEvent('drop',"
    " { dataTransfer: dt, bubbles: true, cancelable: true })); }"
)
PASTE = (
    "([sel, files]) => { const dt = (" + _FILES_JS + ")(files);"
    " document.querySelector(sel).dispatchEvent(new ClipboardEvent('paste',"
    " { clipboardData: dt, bubbles: true, cancelable: true })); }"
)
# A finger on the photo viewer moving from x0 to x1 (touch events, as a phone sends them).
SWIPE = """([x0, x1]) => { const el = document.querySelector('.photo-viewer');
  const at = (x) => new Touch({ identifier: 7, target: el, clientX: x, clientY: 400 });
  el.dispatchEvent(new TouchEvent('touchstart',
    { touches: [at(x0)], changedTouches: [at(x0)], bubbles: true }));
  el.dispatchEvent(new TouchEvent('touchend',
    { touches: [], changedTouches: [at(x1)], bubbles: true })); }"""


def _js_files(*items: tuple[str, str, bytes]) -> list[dict[str, Any]]:
    return [
        {"name": name, "type": mime, "b64": base64.b64encode(data).decode()}
        for name, mime, data in items
    ]


async def _viewer_shows(page: Page, name: str, count: str) -> None:
    viewer = page.locator(".photo-viewer")
    await expect(viewer.locator("img")).to_have_attribute("alt", name)
    await expect(viewer.locator(".viewer-count")).to_have_text(count)
    await page.wait_for_function(LOADED, arg=".photo-viewer img")


async def test_photo_in_chat_reaches_a_classmate(server: Server, web: Browser) -> None:
    cid = server.class_id
    wang = await web.signed_in("wanghao")
    await wang.goto(f"{server.url}/#/class/{cid}/chat/students")
    liming = await web.signed_in("liming")
    await liming.goto(f"{server.url}/#/class/{cid}/chat/students")
    await wang.get_by_test_id("file-picker").set_input_files(
        files=[{"name": "作业.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_gps(640, 480)}]
    )
    # The upload's progress bar fills; the photo waits in the composer until sent.
    await expect(wang.locator(".pending-files li[data-upload=ready]")).to_have_count(1)
    await wang.get_by_label("输入消息").fill("这是我的作业")
    await wang.keyboard.press("Enter")
    await expect(wang.locator(".pending-files li")).to_have_count(0)

    log = liming.get_by_role("log")
    await expect(log.locator(".msg", has_text="这是我的作业")).to_have_count(1)
    await expect(log.locator(".msg .photo-thumb img")).to_have_count(1)
    await liming.wait_for_function(LOADED, arg=".msg .photo-thumb img")
    # Upright (EXIF orientation 6 applied on the server): the thumbnail is taller than wide.
    size = await liming.evaluate(
        "() => { const i = document.querySelector('.msg .photo-thumb img');"
        " return [i.naturalWidth, i.naturalHeight]; }"
    )
    assert size[1] > size[0], size
    await screenshot(liming, "student-chat-photo")
    await log.locator(".photo-thumb").click()
    viewer = liming.get_by_role("dialog")
    await expect(viewer).to_be_visible()
    await liming.wait_for_function(LOADED, arg=".photo-viewer img")
    await liming.keyboard.press("Escape")
    await expect(viewer).to_have_count(0)


async def test_voice_message_and_a_notice_with_a_form(server: Server, chromium: str) -> None:
    """Hold to record (Chromium's MediaRecorder with its fake microphone, Opus in WebM without a
    duration header: the server reads the length from the blocks), and a PDF on a notice."""
    async with launch(
        server.url,
        chromium,
        ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"),
    ) as web:
        await _voice_and_notice(server, web)


async def _voice_and_notice(server: Server, web: Browser) -> None:
    cid = server.class_id
    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}/chat/guardians")
    mom = await server.client("wang_mom")
    hold = teacher.get_by_role("button", name="按住说话")
    await hold.dispatch_event("pointerdown")
    await expect(teacher.locator(".voice-button.recording")).to_have_count(1)
    await teacher.wait_for_timeout(1500)  # the length of the recording itself
    await teacher.locator(".voice-button").dispatch_event("pointerup")
    ev = await mom.wait_for(
        lambda e: e["type"] == "chat.message" and bool(e["data"].get("attachments")), timeout=20
    )
    voice = ev["data"]["attachments"][0]
    assert voice["kind"] == "audio" and voice["mime"] == "audio/webm"
    assert 0.8 <= voice["duration_s"] <= 4, voice
    await expect(teacher.locator(".msg .voice audio")).to_have_count(1)

    await teacher.goto(f"{server.url}/#/class/{cid}/notices/new")
    await teacher.get_by_label("标题").fill("春游回执")
    await teacher.get_by_test_id("notice-files").set_input_files(
        files=[{"name": "春游回执.pdf", "mimeType": "application/pdf", "buffer": pdf_bytes()}]
    )
    await expect(teacher.locator(".pending-files li[data-upload=ready]")).to_have_count(1)
    await teacher.get_by_role("button", name="发布").click()
    ev = await mom.wait_for(lambda e: e["type"] == "notice.published")
    assert ev["data"]["attachments"][0]["name"] == "春游回执.pdf"
    # The parent opens the notice and its form, which is served with its Chinese name.
    parent = await web.signed_in("wang_mom")
    await parent.goto(f"{server.url}/#/class/{cid}/notices")
    await parent.locator(".notice-card", has_text="春游回执").click()
    form = parent.locator(".file-att", has_text="春游回执.pdf")
    await expect(form).to_have_count(1)
    await expect(form).to_have_attribute("href", re.compile(r"^/files/.+sig="))
    href = await form.get_attribute("href")
    status, headers, _body = await files.download(server.url + str(href))
    assert status == 200 and headers["Content-Type"] == "application/pdf"


async def test_photos_dropped_on_the_composer_are_swiped_through_on_a_phone(
    server: Server, web: Browser
) -> None:
    cid = server.class_id
    wang = await web.signed_in("wanghao")
    await wang.goto(f"{server.url}/#/class/{cid}/chat/students")
    liming = await web.signed_in("liming", PHONE, touch=True)
    await liming.goto(f"{server.url}/#/class/{cid}/chat/students")
    photos = _js_files(
        *((f"春游{i}.jpg", "image/jpeg", jpeg_with_gps(480 + 40 * i, 360)) for i in (1, 2, 3))
    )
    box = "textarea[id^=composer-]"
    # Dragged over the composer: it says where to let go; dropped: three uploads, then ready.
    await wang.evaluate(DRAG_OVER, [box, photos])
    await expect(wang.get_by_text("松开即可添加文件")).to_be_visible()
    await wang.evaluate(DROP, [box, photos])
    await expect(wang.get_by_text("松开即可添加文件")).to_have_count(0)
    await expect(wang.locator(".pending-files li[data-upload=ready]")).to_have_count(3)
    await wang.get_by_label("输入消息").fill("春游的照片")
    await wang.keyboard.press("Enter")

    log = liming.get_by_role("log")
    msg = log.locator(".msg", has_text="春游的照片")
    await expect(msg.locator(".photo-thumb img")).to_have_count(3)
    await msg.locator(".photo-thumb").first.click()
    await _viewer_shows(liming, "春游1.jpg", "1 / 3")
    await liming.evaluate(SWIPE, [300, 100])  # a finger moving left: the next photo
    await _viewer_shows(liming, "春游2.jpg", "2 / 3")
    await liming.evaluate(SWIPE, [300, 100])
    await _viewer_shows(liming, "春游3.jpg", "3 / 3")
    await liming.evaluate(SWIPE, [100, 300])  # moving right: back one
    await _viewer_shows(liming, "春游2.jpg", "2 / 3")
    await liming.evaluate(SWIPE, [200, 180])  # a small slip of the finger is no swipe
    await _viewer_shows(liming, "春游2.jpg", "2 / 3")
    await screenshot(liming, "phone-photo-viewer")


async def test_a_question_with_a_pasted_photo_gets_an_answer_with_a_photo(
    server: Server, web: Browser
) -> None:
    cid = server.class_id
    student = await web.signed_in("wanghao")
    await student.goto(f"{server.url}/#/class/{cid}/qa")
    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}/qa")

    # The student pastes a screenshot of the exercise into the question (Ctrl+V of an image).
    await student.get_by_label("你的问题").fill("第三题怎么做？")
    shot = _js_files(("image.png", "image/png", png_bytes()))
    await student.evaluate(PASTE, ["textarea[name=question]", shot])
    await expect(student.locator(".ask-form .pending-files li[data-upload=ready]")).to_have_count(1)
    await expect(student.get_by_label("你的问题")).to_have_value("第三题怎么做？")  # no text pasted
    await student.get_by_role("button", name="提问", exact=True).click()
    await expect(student.locator(".ask-form .pending-files li")).to_have_count(0)

    # The teacher sees the question with its picture, and answers with a photo of the solution.
    card = teacher.locator(".question", has_text="第三题怎么做？")
    await expect(card.locator(".question-main > .attachments .photo-thumb img")).to_have_count(1)
    await card.get_by_role("button", name="回答", exact=True).click()
    await card.get_by_label("你的回答").fill("看图：先画线段图")
    await card.get_by_test_id("answer-files").set_input_files(
        files=[{"name": "解法.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_gps(640, 480)}]
    )
    await expect(card.locator(".answer-form .pending-files li[data-upload=ready]")).to_have_count(1)
    await card.get_by_role("button", name="发布回答").click()
    await expect(card.locator(".answer-form")).to_have_count(0)

    # The student sees the answer and its photo arrive, and still after reloading the page.
    asked = ".question-main > .attachments .photo-thumb img"
    for reloaded in (False, True):
        if reloaded:
            await student.reload()
            await student.locator(".conn[data-state=connected]").wait_for()
        await student.get_by_role("tab", name=re.compile("已回答")).click()
        mine = student.locator(".question", has_text="第三题怎么做？")
        await expect(mine.locator(".answer", has_text="先画线段图")).to_have_count(1)
        await expect(mine.locator(".answer .photo-thumb img")).to_have_count(1)
        await student.wait_for_function(LOADED, arg=".answer .photo-thumb img")
        await expect(mine.locator(asked)).to_have_count(1)
    await screenshot(student, "qa-answer-with-photo")


async def test_homework_with_a_worksheet_handed_in_as_a_photo(server: Server, web: Browser) -> None:
    cid = server.class_id
    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}/homework")
    await teacher.get_by_label("作业标题").fill("练习册第 3 页")
    due = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() + 2 * 86400))
    await teacher.get_by_label("截止时间").fill(due)
    await teacher.get_by_test_id("hw-assign-files").set_input_files(
        files=[{"name": "第3页.pdf", "mimeType": "application/pdf", "buffer": pdf_bytes()}]
    )
    await expect(teacher.locator(".pending-files li[data-upload=ready]")).to_have_count(1)
    await teacher.get_by_role("button", name="布置作业").click()
    card = teacher.locator(".hw-card", has_text="练习册第 3 页")
    await expect(card.locator(".file-att", has_text="第3页.pdf")).to_have_count(1)

    # The student opens the worksheet and hands in a photo of the page, without a word.
    student = await web.signed_in("wanghao", PHONE)
    await student.goto(f"{server.url}/#/class/{cid}/homework")
    mine = student.locator(".hw-card", has_text="练习册第 3 页")
    sheet = mine.locator(".file-att", has_text="第3页.pdf")
    await expect(sheet).to_have_attribute("href", re.compile(r"^/files/.+sig="))
    status, headers, _body = await files.download(
        server.url + str(await sheet.get_attribute("href"))
    )
    assert status == 200 and headers["Content-Type"] == "application/pdf"
    submit = mine.get_by_role("button", name="提交作业")
    await expect(submit).to_be_disabled()  # nothing to hand in yet
    await mine.get_by_test_id("hw-submit-files").set_input_files(
        files=[
            {"name": "作业照片.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_gps(640, 480)}
        ]
    )
    await expect(mine.locator(".pending-files li[data-upload=ready]")).to_have_count(1)
    await submit.click()
    await expect(mine.locator(".chip")).to_have_text("已提交")
    await expect(mine.locator(".hw-submission .photo-thumb img")).to_have_count(1)

    # The teacher sees the photo in the roll-up.
    await card.get_by_role("link", name="查看与批改").click()
    row = teacher.locator(".hw-student", has_text="王浩 Wang Hao")
    await expect(row.locator(".photo-thumb img")).to_have_count(1)
    await teacher.wait_for_function(LOADED, arg=".hw-student .photo-thumb img")


async def test_an_upload_cancelled_from_its_progress_bar_is_gone(
    server: Server, web: Browser
) -> None:
    cid = server.class_id
    wang = await web.signed_in("wanghao")
    await wang.goto(f"{server.url}/#/class/{cid}/chat/students")
    # The first chunk is held on its way (a slow network), so the cancel lands mid-upload.
    release = asyncio.Event()
    held = asyncio.Event()
    patched: list[str] = []

    async def slow(route: Route) -> None:
        if route.request.method == "PATCH":
            patched.append(route.request.url.rsplit("/", 1)[1])
            held.set()
            await release.wait()
        with contextlib.suppress(Exception):  # the browser may have aborted it meanwhile
            await route.continue_()

    await wang.route("**/api/v1/uploads/*", slow)
    await wang.get_by_test_id("file-picker").set_input_files(
        files=[
            {
                "name": "大文件.pdf",
                "mimeType": "application/pdf",
                "buffer": pdf_bytes(pad=3_000_000),
            }
        ]
    )
    item = wang.locator(".pending-files li[data-upload=uploading]")
    await expect(item.locator("progress")).to_be_visible()
    # Cancelled while its first chunk is on its way (the bar shows as soon as the upload is
    # created, before that chunk leaves: a click then did not land mid-upload; CI).
    await asyncio.wait_for(held.wait(), 10)
    await item.get_by_role("button", name="取消上传").click()
    await expect(wang.locator(".pending-files li")).to_have_count(0)
    release.set()
    # The server dropped the upload: even its owner no longer finds it.
    me = await server.client("wanghao", connect=False)
    assert patched
    for _ in range(100):
        try:
            await files.offset(me, patched[0])
        except RequestError as err:
            assert err.code == "not_found"
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the cancelled upload is still there")
    await expect(wang.get_by_label("输入消息")).to_be_enabled()


async def test_an_upload_cut_off_at_80_percent_goes_on_from_there_when_the_network_returns(
    server: Server, web: Browser
) -> None:
    """A parent's phone loses the network as the last fifth of a file goes out: the upload waits
    (its progress bar stays), and once the network is back it sends only that fifth."""
    cid = server.class_id
    wang = await web.signed_in("wanghao", PHONE, touch=True)
    await wang.goto(f"{server.url}/#/class/{cid}/chat/students")
    chunk = 1024 * 1024  # the web app's chunk (clients/web/src/api/files.ts)
    head = len(pdf_bytes(pad=1))
    data = pdf_bytes(pad=5 * chunk - head + 1)
    assert len(data) == 5 * chunk
    sent: list[tuple[str, int]] = []
    cut = asyncio.Event()

    async def flaky(route: Route) -> None:
        req = route.request
        if req.method == "PATCH":
            at = int(await req.header_value("upload-offset") or "-1")
            sent.append(("PATCH", at))
            if at == 4 * chunk and not cut.is_set():  # 80 % sent: the network goes
                cut.set()
                await wang.context.set_offline(True)
                await route.abort("internetdisconnected")
                return
        elif req.method == "POST" and req.url.endswith("/api/v1/uploads"):
            sent.append(("POST", 0))
        await route.continue_()

    await wang.route(lambda url: "/api/v1/uploads" in url, flaky)
    await wang.get_by_test_id("file-picker").set_input_files(
        files=[{"name": "春游照片合集.pdf", "mimeType": "application/pdf", "buffer": data}]
    )
    await asyncio.wait_for(cut.wait(), 30)
    # Offline for a few seconds: the upload waits, it does not fail.
    await wang.wait_for_timeout(3000)
    await expect(wang.locator(".pending-files li[data-upload=uploading]")).to_have_count(1)
    await wang.context.set_offline(False)
    await expect(wang.locator(".pending-files li[data-upload=ready]")).to_have_count(
        1, timeout=20_000
    )
    # One upload, continued at 80 %: no chunk before the cut was sent twice.
    mib = [(method, at // chunk) for method, at in sent]
    assert mib == [("POST", 0), *(("PATCH", i) for i in range(5)), ("PATCH", 4)], mib
    liming = await server.client("liming")
    await wang.get_by_label("输入消息").fill("春游照片")
    await wang.keyboard.press("Enter")
    ev = await liming.wait_for(
        lambda e: e["type"] == "chat.message" and bool(e["data"].get("attachments")), timeout=10
    )
    att = ev["data"]["attachments"][0]
    status, _h, body = await files.download((await files.links(liming, [att["id"]]))[att["id"]])
    assert status == 200 and body == data


# Pointer events as a phone's touch screen sends them to the voice button.
_PRESS = """(types) => { const b = document.querySelector('.voice-button');
  for (const type of types) b.dispatchEvent(new PointerEvent(type,
    { pointerType: 'touch', pointerId: 9, isPrimary: true, bubbles: true, cancelable: true })); }"""


async def test_a_voice_message_is_sent_only_for_a_real_hold_on_a_phone(
    server: Server, chromium: str
) -> None:
    """Hold to talk on a touch screen: a tap (let go before the microphone is granted), a press
    too short to say anything and a press the browser takes away send nothing and leave no
    recording running; a real hold sends one voice message, shown with its length."""
    async with launch(
        server.url,
        chromium,
        ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"),
    ) as web:
        cid = server.class_id
        stream = f"class:{cid}:guardians"
        teacher = await web.signed_in("li", PHONE, touch=True)
        await teacher.goto(f"{server.url}/#/class/{cid}/chat/guardians")
        mom = await server.client("wang_mom")
        recording = teacher.locator(".voice-button.recording")

        # A tap: the button is let go before the microphone is there.
        await teacher.evaluate(_PRESS, ["pointerdown", "pointerup"])
        await expect(teacher.get_by_text("按住按钮说话，松开发送")).to_be_visible()
        await teacher.wait_for_timeout(1000)
        await expect(recording).to_have_count(0)
        # Too short to be anything said.
        await teacher.evaluate(_PRESS, ["pointerdown"])
        await expect(recording).to_have_count(1)
        await teacher.wait_for_timeout(300)
        await teacher.evaluate(_PRESS, ["pointerup"])
        await expect(teacher.get_by_text("说话时间太短")).to_be_visible()
        await expect(recording).to_have_count(0)
        # Taken away by the browser (a call comes in, a system gesture) after two seconds.
        await teacher.evaluate(_PRESS, ["pointerdown"])
        await expect(recording).to_have_count(1)
        await teacher.wait_for_timeout(2000)
        await teacher.evaluate(_PRESS, ["pointercancel"])
        await expect(recording).to_have_count(0)

        # A real hold: one voice message, its length shown beside the player.
        await teacher.evaluate(_PRESS, ["pointerdown"])
        await expect(recording).to_have_count(1)
        await teacher.wait_for_timeout(1500)
        await teacher.evaluate(_PRESS, ["pointerup"])
        ev = await mom.wait_for(
            lambda e: e["type"] == "chat.message" and bool(e["data"].get("attachments")),
            timeout=20,
        )
        assert 0.8 <= ev["data"]["attachments"][0]["duration_s"] <= 4, ev
        voice = teacher.locator(".msg .voice")
        await expect(voice.locator("audio")).to_have_count(1)
        await expect(voice.locator(".voice-len")).to_have_text(re.compile(r"^[1-4]″$"))
        await teacher.wait_for_timeout(1000)  # anything else sent would have arrived by now
        sent = [m for m in (await mom.history(stream))["messages"] if m["attachments"]]
        assert len(sent) == 1, sent


async def test_a_photo_from_the_phone_camera_and_the_buttons_in_english(
    server: Server, web: Browser
) -> None:
    """The camera button opens the phone's camera (a file chooser asking for a photo taken
    now); its photo is sent like any other. In English the buttons say what they do."""
    cid = server.class_id
    wang = await web.signed_in("wanghao", PHONE, touch=True)
    await wang.goto(f"{server.url}/#/class/{cid}/chat/students")
    liming = await server.client("liming")
    async with wang.expect_file_chooser() as chosen:
        await wang.get_by_role("button", name="拍照").click()
    chooser = await chosen.value
    assert not chooser.is_multiple()
    assert await chooser.element.get_attribute("capture") == "environment"
    assert await chooser.element.get_attribute("accept") == "image/*"
    await chooser.set_files(
        files=[{"name": "IMG_0005.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_gps()}]
    )
    await expect(wang.locator(".pending-files li[data-upload=ready]")).to_have_count(1)
    await wang.get_by_role("button", name="发送").click()  # a photo alone, no text
    ev = await liming.wait_for(
        lambda e: e["type"] == "chat.message" and bool(e["data"].get("attachments")), timeout=10
    )
    assert ev["data"]["attachments"][0]["kind"] == "image"

    await wang.evaluate("() => localStorage.setItem('homeroom.locale', 'en')")
    await wang.reload()
    await wang.locator(".conn[data-state=connected]").wait_for()
    for name in ("Attach files", "Take a photo", "Hold to talk"):
        await expect(wang.get_by_role("button", name=name)).to_be_visible()
    await wang.get_by_role("log").locator(".photo-thumb").last.click()
    await expect(wang.get_by_role("dialog", name="Photo 1 of 1")).to_be_visible()


# A 21 MiB "photo" made in the page (a JPEG's first bytes, then zeros) dropped on an element.
_DROP_BIG_PHOTO = """(sel) => { const bytes = new Uint8Array(21 * 1024 * 1024);
  bytes.set([0xff, 0xd8, 0xff, 0xe0]); const dt = new DataTransfer();
  dt.items.add(new File([bytes], '全班合影.jpg', { type: 'image/jpeg' }));
  document.querySelector(sel).dispatchEvent(new DragEvent('drop',
    { dataTransfer: dt, bubbles: true, cancelable: true })); }"""


async def test_a_photo_over_its_kinds_limit_is_refused_in_words_and_frees_the_quota(
    server: Server, web: Browser
) -> None:
    """A photo larger than photos may be (20 MiB) is refused at its first chunk: the parent is
    told the file is too big, and the school's storage is not held for it."""
    cid = server.class_id
    wang = await web.signed_in("wanghao")
    await wang.goto(f"{server.url}/#/class/{cid}/chat/students")
    await wang.evaluate(_DROP_BIG_PHOTO, "textarea[id^=composer-]")
    await expect(
        wang.get_by_text("全班合影.jpg 上传失败：文件太大，超过了这类文件的大小上限")
    ).to_be_visible()
    await expect(wang.locator(".pending-files li")).to_have_count(0)
    admin = await server.client("admin", connect=False)
    for _ in range(50):
        used = (await admin.http("GET", "/api/v1/school/storage"))["used_bytes"]
        if used == 0:
            break
        await asyncio.sleep(0.1)
    assert used == 0
