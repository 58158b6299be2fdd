"""The guardians' chat in real Chromium (zh-CN): a teacher on a PC @mentions a mother, who is
told on her phone wherever she is in the app; the teacher edits the message and the mother sees
the new text live; the teacher sees who of the families has read it."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.chromium import PHONE
from tests.conftest import Server
from tests.test_guardian_history import _new_guardian
from tests.web.conftest import Browser, screenshot
from tests.web.test_told import register_and_ask

# What is tested here lives in the browser and the event path: SQLite only (the server side of
# mentions and read-by is tested on both databases in tests/test_chat_mentions.py).
pytestmark = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


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

    # Read by, shown by itself under the message: the mother has the chat open, so she has read
    # it; seven other guardians have not. A tap shows who.
    mine = teacher.locator(".msg.mine", has_text="户口本复印件")
    readby = mine.get_by_test_id("read-by")
    await expect(readby.locator("summary")).to_contain_text("1 人已读 · 7 人未读")
    await readby.locator("summary").click()
    await expect(readby).to_have_attribute("open", "")
    await expect(readby.get_by_text("已读： 王浩妈妈 Wang Hao's mother")).to_be_visible()
    # Refreshing asks the server again and leaves the names open.
    await readby.get_by_role("button", name="刷新已读情况").click()
    await expect(readby).to_have_attribute("open", "")
    await expect(readby).to_contain_text("李明妈妈 Li Ming's mother")
    await screenshot(teacher, "teacher-read-by")
    # The mother's own messages offer no "read by", and hers is not editable by the teacher.
    await expect(mom.get_by_role("button", name="已读情况")).to_have_count(0)


async def _inside(page: Page, locator_css: str, width: int) -> list[str]:
    """Labels of the visible elements matching ``locator_css`` that do not fit the width."""
    out: list[str] = []
    items = page.locator(locator_css)
    for i in range(await items.count()):
        item = items.nth(i)
        if not await item.is_visible():
            continue
        box = await item.bounding_box()
        assert box is not None
        if box["x"] < 0 or box["x"] + box["width"] > width + 0.5:
            out.append(await item.inner_text())
    return out


async def test_the_class_menu_fits_a_phone(server: Server, web: Browser) -> None:
    """A teacher on a phone has twelve places in a class: four and "更多" fit the bar, the rest
    open in a panel that fits the screen; the badge of a hidden place shows on "更多"."""
    cid = server.class_id
    # A pending link request: its badge is on "家长申请", which lives under "更多" on a phone.
    await register_and_ask(server, "zhao_mom", "赵磊妈妈", "赵磊")
    teacher = await web.signed_in("li", PHONE)
    await teacher.goto(f"{server.url}/#/class/{cid}")
    nav = teacher.get_by_role("navigation", name="班级导航")
    await expect(nav.locator(".nav-item:visible")).to_have_count(5)
    assert await _inside(teacher, ".class-nav .nav-item", PHONE["width"]) == []
    more = nav.get_by_role("button", name="更多班级功能")
    await expect(more.locator(".badge")).to_have_text("1")
    await expect(nav.get_by_role("link", name="家长申请")).to_be_hidden()

    await more.click()
    await expect(more).to_have_attribute("aria-expanded", "true")
    await expect(nav.locator(".nav-item:visible")).to_have_count(13)
    assert await _inside(teacher, ".class-nav .nav-item", PHONE["width"]) == []
    await screenshot(teacher, "teacher-class-menu-phone")
    await nav.get_by_role("link", name="家长申请").click()
    await expect(teacher.get_by_text("赵磊妈妈")).to_be_visible()
    # The panel closed on the way; "更多" is marked as where one is.
    await expect(more).to_have_attribute("aria-expanded", "false")
    await expect(more).to_have_class("nav-item active")


async def test_read_by_moves_as_the_families_read(server: Server, web: Browser) -> None:
    """The teacher looks at "read by" of her message: as a mother opens the chat on her phone,
    the count and the names change on the teacher's screen without reloading."""
    cid = server.class_id
    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}/chat/guardians")
    box = teacher.get_by_label("输入消息")
    await box.fill("周五下午家长会，请准时参加")
    await box.press("Enter")
    mine = teacher.locator(".msg.mine", has_text="周五下午家长会")
    readby = mine.get_by_test_id("read-by")
    await expect(readby).to_contain_text("0 人已读 · 8 人未读")

    # Two mothers read it on their phones, one after the other.
    for n, who in enumerate(("wang_mom", "li_mom"), start=1):
        mom = await web.signed_in(who, PHONE)
        await mom.goto(f"{server.url}/#/class/{cid}/chat/guardians")
        await expect(mom.locator(".msg", has_text="周五下午家长会")).to_be_visible()
        await expect(readby).to_contain_text(f"{n} 人已读 · {8 - n} 人未读")
    await readby.locator("summary").click()
    await expect(readby.get_by_text("已读： 王浩妈妈 Wang Hao's mother、李明妈妈")).to_be_visible()
    await screenshot(teacher, "teacher-read-by-live")


async def test_a_mother_approved_today_is_shown_nothing_of_an_earlier_message_edited(
    server: Server, web: Browser
) -> None:
    """A mother approved after the teacher's message has the guardians' chat open on her phone
    while the teacher corrects that message: her page shows neither the new text nor a line
    about it (its event reaches her as a number, which the app skips)."""
    cid = server.class_id
    stream = f"class:{cid}:guardians"
    li = await server.client("li")
    old = await li.send_chat(stream, "明天请穿校服")
    await _new_guardian(server, li)
    mom = await web.page(PHONE)
    await mom.get_by_label("用户名").fill("zhao_mom")
    await mom.get_by_label("密码").fill("a-good-long-password")
    await mom.get_by_role("button", name="登录").click()
    await mom.locator(".conn[data-state=connected]").wait_for()
    await mom.goto(f"{server.url}/#/class/{cid}/chat/guardians")
    await li.request("chat.edit", {"message_id": old["id"], "body": "改为穿运动服"})
    await li.send_chat(stream, "欢迎赵磊妈妈")
    await expect(mom.locator(".msg", has_text="欢迎赵磊妈妈")).to_be_visible()
    await expect(mom.locator(".msg")).to_have_count(1)
    await expect(mom.locator(".chat-system")).to_have_count(0)
    await expect(mom.get_by_text("运动服")).to_have_count(0)
