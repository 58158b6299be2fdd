"""Polls driven from inside the live console, in headless Chromium, through the real server.

Run by tests/web/test_live_polls.py like tests/web/live_scenario.py (whose people, helpers and
runner it uses): in a loopback-only network namespace, one Chromium, one context per person.

Scenarios (the first argument):

``lesson``
    Ms. Li starts a lesson; Wang Hao (Pad) joins. In the console's polls tab she opens a quiz;
    his tab shows a badge, he answers; her bars and named answers move by themselves; she
    publishes and he sees the correct answer and his own. Then a 3-second poll: he sees its
    countdown, and the poll closes by itself on his page.
``meeting``
    Ms. Li starts a parent meeting and admits Wang Hao's mother (phone) from the lobby; she asks
    the families a quick poll in the console; the mother answers; Ms. Li sees the count and the
    mother's named answer and publishes the results, which the mother sees.
``dual``
    Ms. Li starts a dual-teacher lesson with two village classrooms; Ms. Wu (Village A's local
    teacher) and her student Xiao Hong join. Ms. Li opens a quiz answered per classroom; Xiao
    Hong's page says her teacher answers; Ms. Wu answers for the classroom; Ms. Li sees Village
    A's answer (right) and the classroom not yet answered; the results reach Xiao Hong.
"""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Any

from playwright.async_api import Page, expect

from tests.chromium import PAD, PC, PHONE
from tests.conftest import Server
from tests.web.live_scenario import (
    People,
    Scenario,
    join_from_banner,
    main,
    shot,
    start_from_class_home,
)

POLLS_TAB = re.compile("^投票")


async def open_polls_tab(page: Page, badge: str | None = None) -> None:
    tab = page.get_by_role("tab", name=POLLS_TAB)
    if badge is not None:
        await expect(tab.locator(".tab-count")).to_have_text(badge)
    await tab.click()


async def open_poll(
    page: Page,
    question: str,
    options: str = "",
    correct: str | None = None,
    *,
    limit_s: int | None = None,
    answer_by: str | None = None,
    kind: str | None = None,
) -> None:
    compose = page.locator(".poll-compose")
    await compose.get_by_label("问题", exact=True).fill(question)
    if kind is not None:
        await compose.get_by_label("类型").select_option(kind)
    if options:
        await compose.get_by_label("选项").fill(options)
    if correct is not None:
        await compose.get_by_label(correct, exact=True).check()
    if limit_s is not None:
        await compose.get_by_label(re.compile("^限时")).fill(str(limit_s))
    if answer_by is not None:
        await compose.get_by_label("作答方式").select_option(answer_by)
    await compose.get_by_role("button", name="发起", exact=True).click()


async def answer(page: Page, question: str, option: str, done: str) -> None:
    card = page.locator(".poll-card", has_text=question)
    await card.get_by_label(option, exact=True).check()
    await card.get_by_role("button", name="提交答案").click()
    await expect(card).to_contain_text(done)


async def lesson(srv: Server, people: People, result: dict[str, Any]) -> None:
    cid = srv.class_id
    li = await people.sign_in("li", PC)
    result["session_id"] = await start_from_class_home(li, srv.url, cid, "开始上课")
    wang = await people.sign_in("wanghao", PAD)
    await join_from_banner(wang, srv.url, cid, "加入")
    await wang.get_by_test_id("console").wait_for()

    await open_polls_tab(li)
    question = "1/2 + 1/4 = ?"
    await open_poll(li, question, "1/6\n3/4\n2/6", "3/4")
    host = li.locator(".poll-card", has_text=question)
    await expect(host.get_by_test_id("poll-answered")).to_contain_text("0 人作答")

    # The student's polls tab says a poll waits for him; he answers inside the console.
    await open_polls_tab(wang, badge="1")
    await answer(wang, question, "3/4", "你的答案：3/4")
    await expect(wang.get_by_role("tab", name=POLLS_TAB).locator(".tab-count")).to_have_count(0)
    await expect(
        wang.locator(".poll-card", has_text=question).get_by_test_id("poll-bars")
    ).to_have_count(0)

    # The teacher's bars and named answers moved by themselves.
    await expect(host.get_by_test_id("poll-answered")).to_contain_text("1 人作答 · 1 人答对")
    await expect(host.locator('.bar-count[data-option="3/4"]')).to_have_text("1")
    await host.locator(".named-answers summary").click()
    await expect(host.locator(".named-answers")).to_contain_text("王浩 Wang Hao: 3/4 ✓")
    result["screenshots"] = [await shot(li, "teacher-console-quiz")]
    await host.get_by_role("button", name="公布结果").click()
    card = wang.locator(".poll-card", has_text=question)
    await expect(card.locator(".bar-row.correct")).to_contain_text("3/4")
    await expect(card.locator(".bar-row.correct")).to_contain_text("正确答案")
    await expect(card.locator(".bar-row.mine")).to_contain_text("我的选择")
    result["screenshots"].append(await shot(wang, "student-console-quiz-results"))

    # A 3-second poll closes by itself on the student's page.
    quick = "现在听得清楚吗？"
    await open_poll(li, quick, kind="true_false", limit_s=3)
    quick_card = wang.locator(".poll-card", has_text=quick)
    await expect(quick_card.get_by_test_id("poll-countdown")).to_contain_text("剩余 0:0")
    await expect(quick_card).to_contain_text("作答已结束", timeout=15_000)
    await expect(quick_card.get_by_role("button", name="提交答案")).to_have_count(0)
    await expect(li.locator(".poll-card", has_text=quick)).to_contain_text("已结束")
    result["ok"] = True


async def meeting(srv: Server, people: People, result: dict[str, Any]) -> None:
    cid = srv.class_id
    li = await people.sign_in("li", PC)
    result["session_id"] = await start_from_class_home(li, srv.url, cid, "开始家长会")
    mom = await people.sign_in("wang_mom", PHONE)
    await join_from_banner(mom, srv.url, cid, "进入等候室")
    lobby = li.get_by_test_id("lobby")
    await lobby.get_by_role("button", name="准入 王浩妈妈 Wang Hao's mother").click()
    await mom.get_by_test_id("console").wait_for()

    await open_polls_tab(li)
    question = "下次家长会哪天方便？"
    await open_poll(li, question, "周三晚上\n周六上午")
    await open_polls_tab(mom, badge="1")
    await answer(mom, question, "周六上午", "你的答案：周六上午")

    host = li.locator(".poll-card", has_text=question)
    await expect(host.get_by_test_id("poll-answered")).to_contain_text("1 人作答")
    await expect(host.locator('.bar-count[data-option="周六上午"]')).to_have_text("1")
    await expect(host.locator('.bar-count[data-option="周三晚上"]')).to_have_text("0")
    await host.locator(".named-answers summary").click()
    await expect(host.locator(".named-answers")).to_contain_text(
        "王浩妈妈 Wang Hao's mother: 周六上午"
    )
    result["screenshots"] = [await shot(li, "host-meeting-poll")]
    await host.get_by_role("button", name="公布结果").click()
    card = mom.locator(".poll-card", has_text=question)
    await expect(card.locator(".bar-row.mine")).to_contain_text("周六上午")
    await expect(card.get_by_test_id("poll-answered")).to_contain_text("1 人作答")
    result["screenshots"].append(await shot(mom, "guardian-meeting-poll-phone"))
    result["ok"] = True


async def dual(srv: Server, people: People, result: dict[str, Any]) -> None:
    cid = srv.class_id
    village_a, village_b = srv.demo["linked_class_ids"]
    li = await people.sign_in("li", PC)
    await li.goto(f"{srv.url}/#/class/{cid}/home")
    await li.get_by_role("button", name="开始双师课堂").click()
    dialog = li.get_by_role("dialog")
    await dialog.get_by_role("checkbox", name=re.compile("山村小学")).check()
    await dialog.get_by_role("checkbox", name=re.compile("河边小学")).check()
    await dialog.get_by_role("button", name="开始", exact=True).click()
    await li.get_by_test_id("console").wait_for()
    wu = await people.sign_in("wu", PAD)
    await join_from_banner(wu, srv.url, village_a, "加入")
    await wu.get_by_test_id("console").wait_for()
    hong = await people.sign_in("xiaohong", PHONE)
    await join_from_banner(hong, srv.url, village_a, "加入")
    await hong.get_by_test_id("console").wait_for()

    await open_polls_tab(li)
    question = "Which one is a fruit?"
    await open_poll(li, question, "apple\nchair", "apple", answer_by="classroom")
    host = li.locator(".poll-card", has_text=question)
    rooms = host.get_by_test_id("classroom-answers")
    await expect(rooms.locator(f'li[data-class-id="{village_a}"]')).to_contain_text("尚未作答")

    # Xiao Hong is told her teacher answers for the class; she has nothing to answer.
    await open_polls_tab(hong)
    hong_card = hong.locator(".poll-card", has_text=question)
    await expect(hong_card).to_contain_text("由本班老师代表全班作答")
    await expect(hong_card.get_by_role("radio")).to_have_count(0)

    # Ms. Wu answers for Village A, without having seen the correct answer.
    await open_polls_tab(wu, badge="1")
    wu_card = wu.locator(".poll-card", has_text=question)
    await expect(wu_card).to_contain_text("请代表本班作答")
    await answer(wu, question, "apple", "本班的答案：apple")

    await expect(rooms.locator(f'li[data-class-id="{village_a}"]')).to_contain_text("apple ✓")
    await expect(rooms.locator(f'li[data-class-id="{village_a}"]')).to_contain_text("山村小学")
    await expect(host.get_by_test_id("poll-answered")).to_contain_text("1 人作答 · 1 人答对")
    result["linked"] = await rooms.locator("li").count()
    result["screenshots"] = [
        await shot(li, "master-classroom-poll"),
        await shot(wu, "local-teacher-answers"),
    ]
    await host.get_by_role("button", name="公布结果").click()
    await expect(hong_card.locator(".bar-row.correct")).to_contain_text("apple")
    await expect(wu_card.locator(".bar-row.mine")).to_contain_text("apple")
    result["ids"] = {"village_a": village_a, "village_b": village_b}
    result["ok"] = True


SCENARIOS: dict[str, Scenario] = {"lesson": lesson, "meeting": meeting, "dual": dual}


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "lesson", SCENARIOS)))
