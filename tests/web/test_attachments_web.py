"""Attachments in the web app: a student attaches a photo in class chat, a classmate sees its
thumbnail (fetched through a signed link) and opens it in the photo viewer."""

from __future__ import annotations

import re

from playwright.async_api import expect

from clients import files
from tests.attachment_files import jpeg_with_gps, pdf_bytes
from tests.conftest import Server
from tests.web.conftest import Browser, launch, screenshot

LOADED = (
    "sel => { const i = document.querySelector(sel);"
    " return !!i && i.complete && i.naturalWidth > 0; }"
)


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
