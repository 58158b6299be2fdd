"""Polls, attendance and learning records in the web app, in real Chromium: a quiz in a lesson
answered by two students and published; the attendance report after the lesson; a guardian on a
phone reading her child's weekly record and homework, refused another child's."""

from __future__ import annotations

import re
import time

from playwright.async_api import expect

from tests.attachment_files import jpeg_with_gps, pdf_bytes
from tests.chromium import PHONE
from tests.conftest import Server
from tests.web.conftest import Browser, screenshot


async def test_quiz_in_a_lesson_answered_by_two_students_and_published(
    server: Server, web: Browser
) -> None:
    cid = server.class_id
    li = await server.client("li")
    lesson = await li.request(
        "session.start", {"class_id": cid, "kind": "lesson", "title": "数学：分数"}
    )
    sid = lesson["session"]["id"]
    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}/polls")
    wang = await web.signed_in("wanghao")
    await wang.goto(f"{server.url}/#/class/{cid}/polls")
    liming = await web.signed_in("liming", PHONE)
    await liming.goto(f"{server.url}/#/class/{cid}/polls")

    compose = teacher.locator(".poll-compose")
    await compose.get_by_label("问题").fill("1/2 + 1/4 = ?")
    await compose.get_by_label("选项").fill("1/6\n3/4\n2/6")
    await compose.get_by_label("3/4").check()
    in_lesson = compose.get_by_label("在正在上的课中发起：数学：分数")
    await expect(in_lesson).to_be_checked()
    await compose.get_by_role("button", name="发起", exact=True).click()

    question = "1/2 + 1/4 = ?"
    wang_card = wang.locator(".poll-card", has_text=question)
    await wang_card.get_by_label("3/4").check()
    await wang_card.get_by_role("button", name="提交答案").click()
    await expect(wang_card).to_contain_text("你的答案：3/4")
    li_card = liming.locator(".poll-card", has_text=question)
    await li_card.get_by_label("2/6").check()
    await li_card.get_by_role("button", name="提交答案").click()
    await expect(li_card).to_contain_text("你的答案：2/6")
    # Before results are published, a student sees no counts.
    await expect(li_card.get_by_test_id("poll-bars")).to_have_count(0)

    # The teacher's bar chart moved by itself: two answers, one right.
    host_card = teacher.locator(".poll-card", has_text=question)
    await expect(host_card.get_by_test_id("poll-answered")).to_contain_text("2 人作答 · 1 人答对")
    await expect(host_card.locator('.bar-count[data-option="3/4"]')).to_have_text("1")
    await expect(host_card.locator('.bar-count[data-option="2/6"]')).to_have_text("1")
    await screenshot(teacher, "teacher-quiz-live")
    await host_card.get_by_role("button", name="公布结果").click()

    for page, mine in ((wang, "3/4"), (liming, "2/6")):
        card = page.locator(".poll-card", has_text=question)
        await expect(card.locator(".bar-row.correct")).to_contain_text("3/4")
        await expect(card.locator(".bar-row.correct")).to_contain_text("正确答案")
        await expect(card.locator(".bar-row.mine")).to_contain_text(mine)
        await expect(card.get_by_test_id("poll-answered")).to_contain_text("2 人作答")
    await screenshot(liming, "student-quiz-results-phone")
    # The quiz belongs to the lesson.
    polls = await li.polls(cid, session_id=sid)
    assert [p["question"] for p in polls] == [question]


async def test_attendance_report_after_the_lesson(server: Server, web: Browser) -> None:
    cid = server.class_id
    li = await server.client("li")
    sid = (await li.request("session.start", {"class_id": cid, "kind": "lesson", "title": "语文"}))[
        "session"
    ]["id"]
    ref = {"session_id": sid}
    await li.request("session.join", ref)
    for name in ("wanghao", "liming"):
        c = await server.client(name)
        await c.request("session.join", ref)
        if name == "wanghao":
            await c.request("hand.raise", ref)
    await li.request("session.end", ref)

    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}/records")
    await teacher.get_by_role("link", name="语文", exact=False).click()
    table = teacher.get_by_test_id("att-table")
    wang_row = table.locator('tr[data-student="王浩 Wang Hao"]')
    await expect(wang_row.get_by_label("王浩 Wang Hao 的出勤")).to_have_value("present")
    await expect(wang_row.locator("td").nth(4)).to_have_text("1")  # one hand raised
    await expect(table.locator("tr.never-came")).to_have_count(4)
    await expect(teacher.get_by_test_id("att-counts")).to_contain_text("出勤 2 · 迟到 0 · 缺勤 4")
    # Zhang Wei was ill: the teacher marks him excused.
    await table.get_by_label("张伟 Zhang Wei 的出勤").select_option("excused")
    await expect(teacher.get_by_test_id("att-counts")).to_contain_text("请假 1")
    await screenshot(teacher, "teacher-attendance-report", full_page=True)
    async with teacher.expect_download() as info:
        await teacher.get_by_role("button", name="导出 CSV").click()
    download = await info.value
    assert download.suggested_filename == f"lesson-{sid}-attendance.csv"
    text = (await download.path()).read_text(encoding="utf-8-sig")
    # In the page's language (zh-CN), for Excel and WPS.
    assert text.splitlines()[0].startswith("学生编号,学生,班级编号,出勤,在线分钟")
    assert "张伟 Zhang Wei" in text and ",请假," in text


async def test_guardian_on_a_phone_sees_her_childs_week_and_homework_only(
    server: Server, web: Browser
) -> None:
    cid = server.class_id
    li = await server.client("li")
    wang = await server.client("wanghao")
    sid = (await li.request("session.start", {"class_id": cid, "kind": "lesson", "title": "英语"}))[
        "session"
    ]["id"]
    ref = {"session_id": sid}
    await li.request("session.join", ref)
    await wang.request("session.join", ref)
    await wang.request("hand.raise", ref)
    await li.request("session.end", ref)
    hw = await li.assign_homework(cid, "背诵课文第三段", time.time() + 3600)
    await li.assign_homework(cid, "练习册第 12 页", time.time() + 7200)
    await wang.submit_homework(hw["id"], "已背诵，录音在此")
    await li.review_homework(hw["id"], server.uid("wanghao"), "背得很流利", score=95)

    mom = await web.signed_in("wang_mom", PHONE)
    await mom.goto(f"{server.url}/#/class/{cid}/records")
    # The weekly digest arrives in her stream: a toast says so, and her child's page shows it.
    await expect(mom.get_by_test_id("record")).to_be_visible()
    await expect(mom.get_by_test_id("digest")).to_have_count(0)
    await li.request("record.digest", {"class_id": cid})
    await expect(mom.locator(".toast", has_text="收到王浩 Wang Hao的每周学习报告")).to_be_visible()
    digest = mom.get_by_test_id("digest")
    await expect(digest).to_have_attribute("aria-label", re.compile("每周学习报告"))
    await expect(digest.locator(".figure").first).to_contain_text("1/1")
    record = mom.get_by_test_id("record")
    await expect(record.get_by_test_id("rec-attended")).to_contain_text("1/1")
    await expect(record.get_by_test_id("rec-hands")).to_contain_text("1")
    reviewed = mom.locator(".rec-hw-row", has_text="背诵课文第三段")
    await expect(reviewed.locator(".chip")).to_have_text("已批改")
    await expect(reviewed).to_contain_text("背得很流利")
    pending = mom.locator(".rec-hw-row", has_text="练习册第 12 页")
    await expect(pending.locator(".chip")).to_have_text("未提交")
    fits = await mom.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert fits, "the record page scrolls sideways on a phone"
    await screenshot(mom, "guardian-weekly-record-phone", full_page=True)

    # Another child's record is refused, whatever the address says.
    await mom.goto(f"{server.url}/#/class/{cid}/records/{server.uid('liming')}")
    alert = mom.get_by_role("alert")
    await expect(alert).to_contain_text("forbidden")
    await expect(mom.get_by_test_id("record")).to_have_count(0)
    await expect(mom.locator(".rec-hw-row")).to_have_count(0)


async def test_homework_assigned_submitted_and_reviewed(server: Server, web: Browser) -> None:
    cid = server.class_id
    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}/homework")
    await teacher.get_by_label("作业标题").fill("口算练习 20 题")
    await teacher.get_by_label("要求").fill("写在练习本上，拍照或抄写答案")
    due = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() + 2 * 86400))
    await teacher.get_by_label("截止时间").fill(due)
    await teacher.get_by_test_id("hw-assign-files").set_input_files(
        files=[{"name": "口算题.pdf", "mimeType": "application/pdf", "buffer": pdf_bytes()}]
    )
    await expect(teacher.locator('.pending-files li[data-upload="ready"]')).to_have_count(1)
    await teacher.get_by_role("button", name="布置作业").click()
    card = teacher.locator(".hw-card", has_text="口算练习 20 题")
    await expect(card).to_contain_text("已完成 0/6")

    student = await web.signed_in("wanghao", PHONE)
    await student.goto(f"{server.url}/#/class/{cid}/homework")
    mine = student.locator(".hw-card", has_text="口算练习 20 题")
    await expect(mine.locator(".chip")).to_have_text("未提交")
    # The worksheet came with it, as a link the student may open.
    await expect(mine.locator("a.file-att")).to_contain_text("口算题.pdf")
    await expect(mine.locator("a.file-att")).to_have_attribute("href", re.compile("/files/"))
    await mine.get_by_label("我的作业").fill("1. 12  2. 35  3. 48")
    # A photo of the exercise book, taken on the phone.
    await mine.get_by_test_id("hw-submit-files").set_input_files(
        files=[{"name": "练习本.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_gps(640, 480)}]
    )
    await expect(mine.locator('.pending-files li[data-upload="ready"]')).to_have_count(1)
    await mine.get_by_role("button", name="提交作业").click()
    await expect(mine.locator(".chip")).to_have_text("已提交")
    await expect(mine.locator(".hw-submission img[data-attachment]")).to_have_count(1)

    # The teacher's count moves by itself; she opens the roll-up and reviews.
    await expect(card).to_contain_text("已完成 1/6")
    await card.get_by_role("link", name="查看与批改").click()
    row = teacher.locator(".hw-student", has_text="王浩 Wang Hao")
    # The photo of his work, as a thumbnail the teacher can open.
    await expect(row.locator("img[data-attachment]")).to_have_count(1)
    await row.get_by_label("评语").fill("全对，字迹工整")
    await row.get_by_label("分数").fill("100")
    await row.get_by_label("等级").fill("优")
    await row.get_by_role("button", name="批改完成").click()
    await expect(row.locator(".chip")).to_have_text("已批改")
    await expect(teacher.get_by_test_id("hw-counts")).to_contain_text("已批改 1")
    await expect(mine.locator(".chip")).to_have_text("已批改")
    await expect(mine.get_by_test_id("hw-review")).to_contain_text("全对，字迹工整")
    await expect(mine.get_by_test_id("hw-review")).to_contain_text("等级 优")
    await screenshot(student, "student-homework-phone", full_page=True)


async def test_homework_reminder_is_confirmed_and_waits_out_its_cool_down(
    server: Server, web: Browser
) -> None:
    """The teacher reminds the families of the students who have not handed homework in: a
    confirmation names how many, then the button waits, saying how long; a second teacher's
    page that had not heard of it is refused in Chinese with the time left."""
    cid = server.class_id
    li = await server.client("li")
    hw = await li.assign_homework(cid, "朗读课文", time.time() + 3600)
    await (await server.client("wanghao")).submit_homework(hw["id"], "读完了")
    zhang_mom = await server.client("zhang_mom")

    teacher = await web.signed_in("li")
    await teacher.goto(f"{server.url}/#/class/{cid}/homework/{hw['id']}")
    other = await web.signed_in("chen")
    await other.goto(f"{server.url}/#/class/{cid}/homework/{hw['id']}")
    remind = teacher.get_by_role("button", name="提醒未交的 5 名学生")
    await remind.click()
    confirm = teacher.get_by_role("group", name="将提醒 5 名学生及其家长，确定发送吗？")
    await expect(confirm).to_be_visible()
    await confirm.get_by_role("button", name="取消").click()
    await expect(confirm).to_have_count(0)
    await remind.click()
    await confirm.get_by_role("button", name="确定提醒").click()
    await expect(teacher.locator(".toast", has_text="已提醒")).to_contain_text(
        re.compile(r"已提醒 \d+ 人")
    )
    reminder = await zhang_mom.wait_for(lambda e: e["type"] == "homework.reminder")
    assert reminder["data"]["homework_id"] == hw["id"]
    await expect(remind).to_be_disabled()
    await expect(teacher.get_by_test_id("hw-remind-wait")).to_have_text(
        re.compile(r"请 (10|9) 分钟后再提醒")
    )
    await screenshot(teacher, "teacher-homework-remind-wait")

    # Mr. Chen's page still offers it; the server refuses, and he is told how long, in Chinese.
    await other.get_by_role("button", name="提醒未交的 5 名学生").click()
    await other.get_by_role("button", name="确定提醒").click()
    refused = other.locator(".toast", has_text="提醒没有发送")
    await expect(refused).to_contain_text(re.compile(r"刚刚提醒过，请 (10|9) 分钟后再提醒"))
    await expect(refused).not_to_contain_text("wait")
    await expect(other.get_by_role("button", name="提醒未交的 5 名学生")).to_be_disabled()
