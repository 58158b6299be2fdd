"""Told when something happens, in real Chromium (zh-CN): link requests arrive live for the
teacher; a private message or a notice shows a toast wherever a parent is on their phone and the
tab's title counts what is unread; a lost connection is said, and a message written meanwhile
waits for the network and is sent once it returns; the service worker shows a push as a
notification, and the app opens offline.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from playwright.async_api import Page, expect

from clients.homeroom import HomeroomClient
from tests.chromium import PHONE
from tests.conftest import Server
from tests.web import servers
from tests.web.conftest import Browser, screenshot, shown_notification


async def register_and_ask(srv: Server, username: str, name: str, child: str) -> HomeroomClient:
    """A new guardian signs up with the class's join code and asks to be linked to a child."""
    c = await srv.client(None)
    body = await c.http(
        "POST",
        "/api/v1/auth/register",
        {
            "username": username,
            "password": "a-good-long-password",
            "display_name": name,
            "join_code": srv.demo["join_code"],
        },
        auth=False,
    )
    c.token, c.refresh_token, c.user = body["access_token"], body["refresh_token"], body["user"]
    await c.http(
        "POST",
        "/api/v1/join",
        {"join_code": srv.demo["join_code"], "child_name": child, "relationship": "mother"},
    )
    return c


# What is tested here lives in the browser and the event path, not in the database: SQLite only
# (tests/test_push.py holds the server side on both databases).
pytestmark = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def links_nav(page: Page):  # type: ignore[no-untyped-def]
    return page.locator(".class-nav .nav-item", has_text="家长申请")


async def test_link_requests_arrive_live_for_the_teacher(server: Server, web: Browser) -> None:
    cid = server.class_id
    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}")
    await expect(links_nav(teacher)).to_be_visible()
    await expect(links_nav(teacher).locator(".badge")).to_have_count(0)
    tile = teacher.locator(".tile", has_text="家长申请").locator(".tile-number")
    await expect(tile).to_have_text("0")
    await teacher.evaluate("window.__noReload = true")

    await register_and_ask(server, "zhao_mom", "赵磊妈妈", "赵磊 Zhao Lei")
    await expect(teacher.locator(".toast")).to_contain_text(
        "新的绑定申请：赵磊妈妈 申请绑定 赵磊 Zhao Lei"
    )
    await expect(links_nav(teacher).locator(".badge")).to_have_text("1")
    await expect(tile).to_have_text("1")
    await screenshot(teacher, "teacher-link-request-toast")

    await links_nav(teacher).click()
    items = teacher.locator(".link-item")
    await expect(items).to_have_count(1)
    await expect(items.first).to_contain_text("赵磊妈妈")
    # A second request while the list is open: it appears without reloading, the badge says 2.
    await register_and_ask(server, "zhao_dad", "赵磊爸爸", "赵磊 Zhao Lei")
    await expect(items).to_have_count(2)
    await expect(links_nav(teacher).locator(".badge")).to_have_text("2")
    await expect(links_nav(teacher).locator(".badge")).to_have_attribute(
        "aria-label", "2 个待处理的绑定申请"
    )
    # Deciding one counts down.
    await teacher.get_by_role("button", name=re.compile("通过.*赵磊妈妈")).click()
    await expect(items).to_have_count(1)
    await expect(links_nav(teacher).locator(".badge")).to_have_text("1")
    assert await teacher.evaluate("window.__noReload") is True


async def test_toasts_and_unread_title_on_a_parents_phone(server: Server, web: Browser) -> None:
    cid = server.class_id
    mom = await web.signed_in("wang_mom", PHONE)
    await expect(mom.get_by_role("heading", name="通知")).to_be_visible()
    await expect(mom).to_have_title("Homeroom 家校通")
    await mom.evaluate("window.__noReload = true")

    li = await server.client("li")
    conv = await li.open_conversation(cid, server.uid("wang_mom"))
    await li.send_chat(conv["stream"], "王浩妈妈您好，明天下午方便来一趟学校吗？")
    # The first message of a new conversation: told whether it arrives live or in the catch-up
    # that starts following the conversation (which says who, not what).
    toast = mom.locator(".toast", has_text="新私信")
    await expect(toast).to_contain_text("新私信 · 李老师 Ms. Li")
    await expect(mom).to_have_title("(1) Homeroom 家校通")
    await screenshot(mom, "guardian-message-toast-phone")

    # A later message, live: who and the start of what.
    await li.send_chat(conv["stream"], "带上王浩的作业本")
    await expect(mom.locator(".toast", has_text="带上王浩的作业本")).to_contain_text(
        "新私信 · 李老师 Ms. Li：带上王浩的作业本"
    )
    await expect(mom).to_have_title("(2) Homeroom 家校通")
    await li.publish_notice(cid, "周五家长会", kind="confirm_required", body="请准时参加。")
    await expect(mom.locator(".toast", has_text="新通知：周五家长会")).to_be_visible()
    await expect(mom).to_have_title("(3) Homeroom 家校通")

    # Reading the conversation takes its count off the title; the notice still waits.
    await mom.goto(f"{server.url}/#/class/{cid}/messages/{conv['id']}")
    await expect(mom.get_by_role("log").locator(".msg")).to_have_count(2)
    await expect(mom).to_have_title("(1) Homeroom 家校通")
    # While the conversation is open, its new messages need no toast.
    await expect(mom.locator(".toast")).to_have_count(0, timeout=20_000)  # they go by themselves
    await li.send_chat(conv["stream"], "下午三点可以吗？")
    await expect(mom.get_by_role("log").locator(".msg")).to_have_count(3)
    await expect(mom.locator(".toast")).to_have_count(0)
    assert await mom.evaluate("window.__noReload") is True


async def test_offline_is_visible_and_queued_messages_go_once(server: Server, web: Browser) -> None:
    cid = server.class_id
    li = await server.client("li")
    conv = await li.open_conversation(cid, server.uid("wang_mom"))
    mom = await web.signed_in("wang_mom", PHONE)
    await mom.goto(f"{server.url}/#/class/{cid}/messages/{conv['id']}")
    banner = mom.get_by_test_id("offline-banner")
    await expect(mom.get_by_label("输入消息")).to_be_visible()
    await expect(banner).to_have_count(0)

    await servers.stop(server)
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("网络已断开")
    await mom.get_by_label("输入消息").fill("老师好，王浩今天发烧请假一天")
    await mom.keyboard.press("Enter")
    log = mom.get_by_role("log")
    await expect(log).to_contain_text("等待网络恢复后发送")
    await expect(banner).to_be_in_viewport()  # not scrolled away by the keyboard's focus
    await screenshot(mom, "guardian-offline-phone")

    await servers.start(server)
    await expect(banner).to_have_count(0, timeout=30_000)
    await expect(log).not_to_contain_text("等待网络恢复后发送", timeout=15_000)
    teacher = await server.client("li")
    history = await teacher.history(conv["stream"])
    bodies = [m["body"] for m in history["messages"]]
    assert bodies == ["老师好，王浩今天发烧请假一天"]
    await expect(log.locator(".msg")).to_have_count(1)


async def test_service_worker_shows_pushes_and_the_app_opens_offline(
    server: Server, web: Browser
) -> None:
    page = await web.signed_in("wang_mom", PHONE)
    context = page.context
    await context.grant_permissions(["notifications"], origin=server.url)
    scope = await page.evaluate(
        "navigator.serviceWorker.ready.then(r => r.active && r.active.state && r.scope)"
    )
    assert scope == server.url + "/"
    manifest = await page.evaluate("fetch('/manifest.webmanifest').then(r => r.json())")
    assert manifest["name"] == "Homeroom 家校通" and manifest["display"] == "standalone"

    cdp = await context.new_cdp_session(page)
    registered: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_registrations(e: dict[str, list[dict[str, str]]]) -> None:
        for r in e["registrations"]:
            if r["scopeURL"] == scope and not registered.done():
                registered.set_result(r["registrationId"])

    cdp.on("ServiceWorker.workerRegistrationUpdated", on_registrations)
    await cdp.send("ServiceWorker.enable")
    reg_id = await asyncio.wait_for(registered, 10)
    payload = {"kind": "message", "stream": "conv:1", "from": "李老师 Ms. Li"}
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": server.url + "/", "registrationId": reg_id, "data": json.dumps(payload)},
    )
    shown = await shown_notification(page)
    assert shown == {
        "title": "新私信",
        "body": "来自 李老师 Ms. Li 的新消息",
        "url": "/#/conv/1",  # tapped, it opens the conversation
    }

    # The app shell is cached: with the network gone, the app still opens.
    await context.set_offline(True)
    await page.reload()
    await expect(page.locator(".topbar .brand")).to_be_visible()
    await expect(page.get_by_test_id("offline-banner")).to_be_visible(timeout=20_000)
    await context.set_offline(False)


async def test_a_parent_chooses_what_to_be_pushed(server: Server, web: Browser) -> None:
    mom = await web.signed_in("wang_mom", PHONE)
    await mom.get_by_role("button", name=re.compile("的账号菜单")).click()
    await mom.get_by_role("menuitem", name="通知设置").click()
    dialog = mom.get_by_role("dialog", name="通知设置")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("button", name="在这台设备上接收通知")).to_be_visible()
    await expect(dialog).to_contain_text("按学校时间（Asia/Shanghai）")
    await dialog.get_by_label("私信").uncheck()
    await dialog.get_by_label("开启免打扰").check()
    await dialog.get_by_label("从").fill("21:30")
    await dialog.get_by_label("到").fill("07:00")
    await screenshot(mom, "guardian-push-settings-phone")
    await dialog.get_by_role("button", name="保存").click()
    await expect(mom.locator(".toast")).to_contain_text("通知设置已保存")
    await expect(dialog).to_be_hidden()
    same = await server.client("wang_mom", connect=False)
    settings = await same.http("GET", "/api/v1/push/settings")
    assert "message" not in settings["kinds"] and "notice" in settings["kinds"]
    assert settings["quiet_hours"] == {"start": "21:30", "end": "07:00"}


KEPT = """() => Object.keys(sessionStorage).concat(Object.keys(localStorage))
  .filter((k) => k.startsWith("homeroom.offline:"))"""


async def test_the_app_opens_offline_with_what_it_had(server: Server, web: Browser) -> None:
    """A mother has read her notices, her private messages and the guardians' chat on her phone;
    with no network, the app opens with them (not a refusal), and when the network returns it
    shows what came meanwhile. Signing out forgets what was kept."""
    cid = server.class_id
    li = await server.client("li")
    await li.publish_notice(cid, "周五家长会", body="请准时参加。")
    conv = await li.open_conversation(cid, server.uid("wang_mom"))
    await li.send_chat(conv["stream"], "王浩妈妈您好，作业本请签字")
    await li.send_chat(f"class:{cid}:guardians", "明天降温，请给孩子添衣")

    mom = await web.signed_in("wang_mom", PHONE)
    await expect(mom.locator(".notice-card", has_text="周五家长会")).to_be_visible()
    await mom.goto(f"{server.url}/#/class/{cid}/messages/{conv['id']}")
    await expect(mom.get_by_role("log")).to_contain_text("作业本请签字")
    await mom.goto(f"{server.url}/#/class/{cid}/chat/guardians")
    await expect(mom.get_by_role("log")).to_contain_text("明天降温")
    kept = [":me", f":class:{cid}", f":notices:{cid}", f":chat:{conv['stream']}",
            f":chat:class:{cid}:guardians", ":conversations"]  # fmt: skip
    await mom.wait_for_function(
        f"(names) => names.every((n) => ({KEPT})().some((k) => k.endsWith(n)))", arg=kept
    )

    online_title = "(1) Homeroom 家校通"  # the notice, not yet opened; the chats are read
    await expect(mom).to_have_title(online_title)
    await mom.context.set_offline(True)
    await mom.goto(f"{server.url}/#/class/{cid}/notices")
    await mom.reload()
    await expect(mom.get_by_test_id("offline-banner")).to_be_visible(timeout=20_000)
    await expect(mom.locator(".notice-card", has_text="周五家长会")).to_be_visible()
    await expect(mom.get_by_text("无法打开这个班级")).to_have_count(0)
    await screenshot(mom, "guardian-offline-notices-phone")
    await mom.goto(f"{server.url}/#/class/{cid}/messages/{conv['id']}")
    await expect(mom.get_by_role("log")).to_contain_text("作业本请签字")
    await mom.goto(f"{server.url}/#/class/{cid}/chat/guardians")
    await expect(mom.get_by_role("log")).to_contain_text("明天降温")
    # What she had read is not unread again (the notice she has not opened still counts).
    await expect(mom).to_have_title(online_title)

    # Meanwhile the teacher publishes; back online, it arrives without reloading.
    await li.publish_notice(cid, "下周一升旗仪式", body="请穿校服。")
    await mom.context.set_offline(False)
    await expect(mom.get_by_test_id("offline-banner")).to_have_count(0, timeout=30_000)
    await mom.goto(f"{server.url}/#/class/{cid}/notices")
    await expect(mom.locator(".notice-card", has_text="下周一升旗仪式")).to_be_visible()
    await expect(mom.locator(".notice-card", has_text="周五家长会")).to_be_visible()

    # Signing out forgets it all: a shared phone shows nothing of hers.
    await mom.get_by_role("button", name=re.compile("的账号菜单")).click()
    await mom.get_by_role("menuitem", name="退出登录").click()
    await expect(mom.get_by_role("heading", name="登录")).to_be_visible()
    assert await mom.evaluate(KEPT) == []


async def test_reminders_show_a_toast_wherever_a_parent_is(server: Server, web: Browser) -> None:
    """A teacher's reminders, of a notice to confirm and of homework to hand in, are told at once
    on the mother's phone, on whatever page she is."""
    cid = server.class_id
    li = await server.client("li")
    notice = await li.publish_notice(cid, "春游同意书", kind="confirm_required", body="请确认。")
    homework = await li.assign_homework(cid, "抄写生字", time.time() + 3600)
    mom = await web.signed_in("wang_mom", PHONE)
    await mom.goto(f"{server.url}/#/class/{cid}/chat/guardians")
    await expect(mom.get_by_label("输入消息")).to_be_visible()

    await li.request("notice.remind", {"notice_id": notice["id"]})
    await expect(mom.locator(".toast", has_text="春游同意书")).to_contain_text(
        "老师提醒你处理通知：春游同意书"
    )
    await li.remind_homework(homework["id"])
    await expect(mom.locator(".toast", has_text="抄写生字")).to_contain_text(
        "老师提醒交作业 · 王浩 Wang Hao：抄写生字"
    )
    await screenshot(mom, "guardian-reminder-toasts-phone")


async def test_a_teacher_shares_the_join_qr_code_from_her_phone(
    server: Server, web: Browser
) -> None:
    """The head teacher shows the class's join QR code on her phone (to print or be scanned) and
    copies the invitation link for the parents' group; the link opens the join page."""
    cid, code = server.class_id, server.demo["join_code"]
    teacher = await web.signed_in("li", PHONE)
    await teacher.context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=server.url
    )
    await teacher.goto(f"{server.url}/#/class/{cid}/links")
    await teacher.get_by_role("button", name="邀请二维码").click()
    qr = teacher.get_by_role("img", name=re.compile("的家长邀请二维码"))
    await expect(qr).to_be_visible()
    assert await qr.evaluate("img => img.naturalWidth") > 100
    await expect(teacher.get_by_role("button", name="打印")).to_be_visible()
    await teacher.get_by_role("button", name="复制邀请链接").click()
    await expect(teacher.locator(".toast", has_text="邀请链接已复制")).to_be_visible()
    copied = await teacher.evaluate("navigator.clipboard.readText()")
    assert f"{server.url}/#/join/{code}" in copied and "家长请用这个链接注册" in copied
    await screenshot(teacher, "teacher-join-qr-phone")
    fits = await teacher.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert fits, "the QR code makes the page scroll sideways on a phone"

    # A new parent opens it: registration, the code filled in.
    parent = await web.page(PHONE)
    await parent.goto(copied.split()[-1])
    form = parent.get_by_role("form", name="家长注册")
    await expect(form.get_by_label("班级邀请码")).to_have_value(code)
    # One who has an account signs in instead, and is asked which child, the code kept.
    await parent.get_by_role("link", name="登录").click()
    await parent.get_by_label("用户名").fill("wang_mom")
    await parent.get_by_label("密码").fill("demo1234")
    await parent.get_by_role("button", name="登录").click()
    link_form = parent.get_by_role("form", name="关联我的孩子")
    await expect(link_form.get_by_label("班级邀请码")).to_have_value(code)
