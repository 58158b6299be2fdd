"""Attachments in the web app: a student attaches a photo in class chat, a classmate sees its
thumbnail (fetched through a signed link) and opens it in the photo viewer."""

from __future__ import annotations

from playwright.async_api import expect

from tests.attachment_files import jpeg_with_gps
from tests.conftest import Server
from tests.web.conftest import Browser, screenshot

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
