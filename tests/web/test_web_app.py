"""The web app in a real browser: notices with live receipts, anonymous Q&A, catch-up after the
server restarts, languages and refusals. Screenshots of the main screens go to build/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Page, expect

from tests.chromium import PAD, PHONE
from tests.conftest import Server, make_settings, start_server, stop_server
from tests.web import servers
from tests.web.conftest import Browser, launch, screenshot


async def open_notice(page: Page, title: str) -> None:
    card = page.locator(".notice-card", has_text=title)
    await card.click()
    await expect(page.get_by_role("heading", name=title)).to_be_visible()


async def test_notice_receipts_update_live(server: Server, web: Browser) -> None:
    cid = server.class_id
    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}/notices/new")
    # Defaults: to guardians, confirmation required.
    await teacher.get_by_label("标题").fill("运动会：请签署并交回同意书")
    await teacher.get_by_label("内容").fill("本周五上午举行运动会，请家长确认孩子参加。")
    await screenshot(teacher, "teacher-notice-compose")
    await teacher.get_by_role("button", name="发布").click()
    coverage = teacher.get_by_test_id("coverage").first
    await expect(coverage).to_contain_text("0/6")
    notice_id = int(await teacher.locator(".receipts").get_attribute("data-notice-id") or 0)
    # Reloading would lose this marker: it proves the view updates in place.
    await teacher.evaluate("window.__noReload = true")

    # Wang Hao's mother confirms from elsewhere (the Python client).
    wang_mom = await server.client("wang_mom")
    await wang_mom.confirm_notice(notice_id)
    await expect(coverage).to_contain_text("1/6")

    # Two parents confirm in their own browsers; one on a phone.
    li_mom = await web.signed_in("li_mom")
    await open_notice(li_mom, "运动会：请签署并交回同意书")
    await li_mom.get_by_role("button", name="我已阅读并确认").click()
    await expect(li_mom.get_by_role("status").filter(has_text="已于")).to_be_visible()
    await expect(coverage).to_contain_text("2/6")

    liu_mom = await web.signed_in("liu_mom", PHONE)
    await expect(liu_mom.locator(".notice-card.todo")).to_have_count(1)
    await screenshot(liu_mom, "guardian-notices-phone")
    await open_notice(liu_mom, "运动会：请签署并交回同意书")
    await screenshot(liu_mom, "guardian-notice-phone")
    await liu_mom.get_by_role("button", name="我已阅读并确认").click()
    # Liu Yang and Liu Xin: one confirmation covers both children.
    await expect(coverage).to_contain_text("4/6")

    # Still not covered: Zhang Wei (two guardians, neither confirmed). Zhao Lei has no guardian
    # at all: shown apart, as a student the notice cannot reach.
    waiting = teacher.get_by_test_id("not-covered").locator(".student-row")
    await expect(waiting).to_have_count(1)
    await expect(waiting).to_contain_text("张伟 Zhang Wei")
    await expect(waiting).to_contain_text("张伟妈妈")
    unreachable = teacher.get_by_test_id("no-guardian").locator(".student-row")
    await expect(unreachable).to_have_count(1)
    await expect(unreachable).to_contain_text("赵磊 Zhao Lei")
    await expect(teacher.get_by_test_id("covered").locator(".student-row")).to_have_count(4)
    assert await teacher.evaluate("window.__noReload") is True
    await screenshot(teacher, "teacher-receipts", full_page=True)

    # Remind the families left: Zhang Wei's two guardians.
    zhang_mom = await server.client("zhang_mom")
    # A confirmation first, naming how many families; cancelling sends nothing.
    remind = teacher.get_by_role("button", name=re.compile("提醒未完成的 1 名学生家长"))
    await remind.click()
    await expect(teacher.get_by_text("将提醒 1 名学生的家长，确定发送吗？")).to_be_visible()
    await teacher.get_by_role("button", name="取消").click()
    await remind.click()
    await teacher.get_by_role("button", name="确定提醒").click()
    await expect(teacher.locator(".toast")).to_contain_text("已提醒 2 人")
    reminder = await zhang_mom.wait_for(lambda e: e["type"] == "notice.reminder")
    assert reminder["data"]["notice_id"] == notice_id
    # Then the button waits out the cool-down (an hour), saying how long.
    await expect(remind).to_be_disabled()
    await expect(teacher.get_by_test_id("remind-wait")).to_have_text(
        re.compile(r"请 (60|59) 分钟后再提醒")
    )

    # The CSV needs the bearer token: the app fetches it and saves the file.
    async with teacher.expect_download() as info:
        await teacher.get_by_role("button", name="导出 CSV").click()
    download = await info.value
    assert download.suggested_filename == f"notice-{notice_id}-receipts.csv"
    text = (await download.path()).read_text(encoding="utf-8-sig")
    # In the page's language (zh-CN), 是/否, for Excel and WPS.
    assert text.splitlines()[0].startswith("学生编号,学生,已完成")
    assert "赵磊 Zhao Lei,否" in text


async def test_anonymous_question_votes_and_answer(server: Server, web: Browser) -> None:
    cid = server.class_id
    asker = await web.signed_in("wanghao")
    await asker.goto(f"{server.url}/#/class/{cid}/qa")
    voter = await web.signed_in("liming", PAD)
    await voter.goto(f"{server.url}/#/class/{cid}/qa")
    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}/qa")
    await expect(voter.get_by_text("没有待回答的问题。")).to_be_visible()

    question = "分数相加时，为什么要先通分？"
    await asker.get_by_label("你的问题").fill(question)
    await asker.get_by_label("匿名提问").check()
    await asker.get_by_role("button", name="提问", exact=True).click()
    mine = asker.locator(".question", has_text=question)
    await expect(mine).to_contain_text("匿名（我）")
    # Anonymity is chosen per question: the tick is cleared for the next one.
    await expect(asker.get_by_label("匿名提问")).not_to_be_checked()

    # The classmate sees it arrive live, without the asker's name, and votes for it.
    theirs = voter.locator(".question", has_text=question)
    await expect(theirs).to_contain_text("匿名同学")
    await theirs.get_by_role("button", name=re.compile("赞同这个问题")).click()
    await expect(theirs.locator(".vote-count")).to_have_text("1")
    await expect(mine.locator(".vote-count")).to_have_text("1")

    # The teacher sees who asked (teachers always do) and the vote, live, then answers.
    staff_view = teacher.locator(".question", has_text=question)
    await expect(staff_view).to_contain_text("匿名提问 · 王浩 Wang Hao")
    await expect(staff_view.locator(".vote-count")).to_have_text("1")
    await screenshot(teacher, "teacher-qa")
    await staff_view.get_by_role("button", name="回答", exact=True).click()
    answer = "分母相同，分的份数才一样大，才能直接相加。"
    await staff_view.get_by_label("你的回答").fill(answer)
    await staff_view.get_by_role("button", name="发布回答").click()

    # Answered: it moves to the "answered" tab on every page, live.
    for page in (voter, asker):
        await expect(page.get_by_role("tab", name=re.compile("已回答"))).to_contain_text("1")
        await page.get_by_role("tab", name=re.compile("已回答")).click()
        answered = page.locator(".question", has_text=question)
        await expect(answered.locator(".answer")).to_contain_text(answer)
    await screenshot(voter, "student-qa-pad")
    content = await voter.content()
    assert "王浩" not in content and "Wang Hao" not in content


async def test_reconnect_catches_up_exactly_once(server: Server, web: Browser) -> None:
    cid = server.class_id
    stream = f"class:{cid}:students"
    student = await web.signed_in("wanghao")
    await student.goto(f"{server.url}/#/class/{cid}/chat/students")
    teacher = await server.client("li")
    await teacher.send_chat(stream, "上课前：请带好练习册")
    log = student.get_by_role("log")
    await expect(log.locator(".msg")).to_have_count(1)

    # The server goes down; the page says so and keeps trying.
    await servers.stop(server)
    status = student.locator(".conn")
    await expect(status).to_have_attribute("data-state", "reconnecting")
    # Hold the page off the network while the server is back and messages are sent.
    await student.context.set_offline(True)
    await servers.start(server)
    teacher = await server.client("li")
    sent = [f"断线期间的消息 {i}" for i in range(1, 4)]
    for body in sent:
        await teacher.send_chat(stream, body)
    await expect(status).to_contain_text("连接中断，正在重连")
    await screenshot(student, "student-chat-reconnecting")

    await student.context.set_offline(False)
    await expect(status).to_have_attribute("data-state", "connected", timeout=30_000)
    for body in sent:
        await expect(log.locator(".msg", has_text=body)).to_have_count(1)
    # Caught up by `sync`, not by live pushes, and nothing shown twice.
    stats = await student.evaluate("window.homeroom.stats")
    assert stats["catchup"] >= 3, stats
    await student.get_by_label("输入消息").fill("收到，谢谢老师！")
    await student.keyboard.press("Enter")
    await teacher.wait_for(lambda e: e["data"].get("body") == "收到，谢谢老师！")
    await expect(log.locator(".msg")).to_have_count(5)
    bodies = await log.locator(".msg .msg-body").all_inner_texts()
    assert bodies == ["上课前：请带好练习册", *sent, "收到，谢谢老师！"]
    await screenshot(student, "student-chat")


async def test_english_and_a_class_that_is_not_mine(server: Server, web: Browser) -> None:
    page = await web.page(PHONE)
    await expect(page.get_by_role("heading", name="登录")).to_be_visible()
    await screenshot(page, "login-phone")
    await page.get_by_label("语言").select_option("en")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("Username").fill("wang_mom")
    await page.get_by_label("Password").fill("demo1234")
    await page.get_by_role("button", name="Sign in").click()
    # A parent lands on the notices of their child's class.
    await expect(page.get_by_role("heading", name="Notices")).to_be_visible()
    await expect(page.locator(".conn")).to_have_attribute("data-state", "connected")
    await page.reload()
    await expect(page.get_by_role("heading", name="Notices")).to_be_visible()
    assert await page.evaluate("document.documentElement.lang") == "en"

    # Their own child only.
    await page.goto(f"{server.url}/#/class/{server.class_id}/members")
    await expect(page.get_by_role("heading", name="My children in this class")).to_be_visible()
    await expect(page.locator(".class-main")).to_contain_text("王浩 Wang Hao")
    await expect(page.locator(".class-main")).not_to_contain_text("李明 Li Ming")

    # Another class: the server refuses, and the page says why in the person's language.
    other = server.demo["linked_class_ids"][0]
    await page.goto(f"{server.url}/#/class/{other}/notices")
    await expect(page.get_by_role("heading", name="This class cannot be opened")).to_be_visible()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("You are not a member of this class")
    await expect(alert.locator(".error-code")).to_have_text("forbidden")
    await screenshot(page, "guardian-refused-phone-en")

    # Back in Chinese, the same refusal reads in Chinese; no server English anywhere.
    await page.get_by_label("Language").select_option("zh-CN")
    await expect(page.get_by_role("heading", name="无法打开这个班级")).to_be_visible()
    await expect(alert).to_contain_text("你不是这个班级的成员")
    await expect(alert).not_to_contain_text("member of this class")


async def test_msgpack_server(tmp_path: Path, chromium: str) -> None:
    """A server configured for msgpack tells the page so; the page talks msgpack to it."""
    server = await start_server(make_settings(tmp_path, serializer="msgpack"))
    try:
        async with launch(server.url, chromium) as web:
            page = await web.signed_in("li")
            meta = page.locator('meta[name="homeroom-serializer"]')
            await expect(meta).to_have_attribute("content", "msgpack")
            await page.goto(f"{server.url}/#/class/{server.class_id}/chat/guardians")
            await page.get_by_label("输入消息").fill("明天家长会，欢迎各位家长参加")
            await page.keyboard.press("Enter")
            log = page.get_by_role("log")
            sent = log.locator(".msg:not(.outgoing)", has_text="明天家长会")
            await expect(sent).to_have_count(1)
            parent = await server.client("wang_mom")
            history = await parent.history(f"class:{server.class_id}:guardians")
            assert [m["body"] for m in history["messages"]] == ["明天家长会，欢迎各位家长参加"]
            await parent.send_chat(f"class:{server.class_id}:guardians", "收到，准时参加")
            await expect(log.locator(".msg", has_text="收到，准时参加")).to_have_count(1)
    finally:
        await stop_server(server)


async def test_a_new_guardian_registers_and_asks_to_be_linked(server: Server, web: Browser) -> None:
    """Registration with the class's join code, then the link request the teacher approves."""
    cid, code = server.class_id, server.demo["join_code"]
    page = await web.page(PHONE)
    await page.get_by_role("link", name="用班级邀请码注册").click()
    form = page.get_by_role("form", name="家长注册")
    await form.get_by_label("班级邀请码").fill("ZZZZ9999")
    await form.get_by_label("你的称呼").fill("赵磊妈妈")
    await form.get_by_label("用户名").fill("zhao_mom")
    await form.get_by_label("密码").fill("a-long-password")
    await form.get_by_role("button", name="注册").click()
    await expect(page.get_by_role("alert")).to_be_visible()  # a wrong code: nothing created

    await form.get_by_label("班级邀请码").fill(code.lower())
    await form.get_by_role("button", name="注册").click()
    link_form = page.get_by_role("form", name="关联我的孩子")
    await expect(link_form.get_by_label("班级邀请码")).to_have_value(code.lower())
    await link_form.get_by_label("孩子的姓名").fill("赵磊 Zhao Lei")
    await link_form.get_by_label("与孩子的关系").select_option("mother")
    await link_form.get_by_role("button", name="提交申请").click()
    await expect(page.locator(".toast")).to_contain_text("申请已提交")

    teacher = await server.client("li")
    pending = await teacher.http("GET", f"/api/v1/classes/{cid}/links")
    asked = [x for x in pending["links"] if x["student_name"] == "赵磊 Zhao Lei"]
    assert len(asked) == 1 and asked[0]["relationship"] == "mother"
