"""The guardians' chat in real Chromium (zh-CN): a teacher on a PC @mentions a mother, who is
told on her phone wherever she is in the app; the teacher edits the message and the mother sees
the new text live; the teacher sees who of the families has read it."""

from __future__ import annotations

import asyncio
import time

from playwright.async_api import Page, expect

from tests.chromium import PHONE
from tests.conftest import Server
from tests.web.conftest import Browser, screenshot


async def _until(page: Page, what: str, click: str, timeout: float = 20.0) -> None:
    """Click ``click`` until the page shows ``what`` (a count that the server updates)."""
    deadline = time.monotonic() + timeout
    while True:
        await page.get_by_role("button", name=click).click()
        try:
            await expect(page.get_by_text(what)).to_be_visible(timeout=1000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.3)


async def test_mention_edit_and_read_by_in_the_guardians_chat(server: Server, web: Browser) -> None:
    cid = server.class_id
    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}/chat/guardians")
    mom = await web.signed_in("wang_mom", PHONE)
    await mom.goto(f"{server.url}/#/class/{cid}/notices")

    # The teacher types @ and a character: the families of the chat are offered.
    box = teacher.get_by_label("输入消息")
    await box.click()
    await box.press_sequentially("@王浩妈")
    options = teacher.get_by_role("listbox", name="选择要@的人")
    await expect(options.get_by_role("option")).to_have_count(1)
    await options.get_by_role("option", name="@王浩妈妈 Wang Hao's mother").click()
    await expect(box).to_have_value("@王浩妈妈 Wang Hao's mother ")
    await box.press_sequentially("明天请带体检表")
    await box.press("Enter")
    sent = teacher.locator(".msg.mine", has_text="明天请带体检表")
    await expect(sent.locator("mark.mention")).to_have_text("@王浩妈妈 Wang Hao's mother")

    # The mother, on the notices page of her phone, is told at once.
    await expect(mom.locator(".toast", has_text="李老师 Ms. Li 在家长群聊中@了你")).to_be_visible()
    await mom.goto(f"{server.url}/#/class/{cid}/chat/guardians")
    hers = mom.locator(".msg.mentions-me", has_text="明天请带体检表")
    await expect(hers).to_be_visible()
    await expect(hers).to_contain_text("@了我")
    await screenshot(mom, "guardian-mentioned-phone")

    # The teacher corrects the message; the mother sees the new text, marked edited, live.
    await sent.get_by_role("button", name="编辑这条消息").click()
    edit = teacher.get_by_label("修改消息内容")
    await edit.fill("@王浩妈妈 Wang Hao's mother 明天请带体检表和户口本复印件")
    await teacher.get_by_role("button", name="保存").click()
    await expect(hers).to_contain_text("明天请带体检表和户口本复印件")
    await expect(hers).to_contain_text("已编辑")
    await expect(teacher.locator(".msg.mine", has_text="户口本复印件")).to_contain_text("已编辑")

    # Read by: the mother has the chat open, so she has read it; seven other guardians have not.
    mine = teacher.locator(".msg.mine", has_text="户口本复印件")
    await mine.get_by_role("button", name="已读情况").click()
    await _until(teacher, "1 人已读 · 7 人未读", "刷新已读情况")
    readby = mine.locator(".readby")
    await expect(readby).to_contain_text("已读： 王浩妈妈 Wang Hao's mother")
    await expect(readby).to_contain_text("李明妈妈 Li Ming's mother")
    await screenshot(teacher, "teacher-read-by")
    # The mother's own messages offer no "read by", and hers is not editable by the teacher.
    await expect(mom.get_by_role("button", name="已读情况")).to_have_count(0)
