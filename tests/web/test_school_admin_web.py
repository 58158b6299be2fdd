"""A school that sets itself up in the web app (zh-CN): the admin on a PC creates a class,
assigns its head teacher, imports a roster (a bad file shows its rejected lines and changes
nothing), shows the join QR code; a parent on a phone opens the join link with the code filled
in; the school's pending link requests list the phone and relationship."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import expect

from tests.chromium import PAD, PC, PHONE
from tests.conftest import Server
from tests.web.conftest import Browser, screenshot

BAD = (
    "student,student_username,guardian,guardian_username,relationship,phone\n"
    "孙悦,sunyue,孙悦妈妈,sun_mom,mother,13900000001\n"
    ",,,,,\n"
)
GOOD = (
    "student,student_username,guardian,guardian_username,relationship,phone\n"
    "孙悦,sunyue,孙悦妈妈,sun_mom,mother,13900000001\n"
)


async def test_admin_sets_up_a_class_in_the_web_app(
    server: Server, web: Browser, tmp_path: Path
) -> None:
    admin = await web.signed_in("admin", PC)
    await admin.get_by_role("link", name="学校管理").click()
    await expect(admin.get_by_role("heading", name="学校管理")).to_be_visible()

    await admin.get_by_label("新学年名称").fill("2026-2027学年")
    await admin.get_by_role("button", name="添加学年").click()
    await expect(admin.locator(".toast")).to_contain_text("已创建：2026-2027学年")
    await admin.get_by_label("新班级名称").fill("五年级（3）班")
    await admin.get_by_label("所属学年").select_option(label="2026-2027学年")
    await admin.get_by_role("button", name="创建班级").click()
    card = admin.get_by_role("listitem", name="五年级（3）班")
    await expect(card).to_contain_text("2026-2027学年")
    await expect(card).to_contain_text("还没有老师")

    # The same name again: refused in Chinese, never the server's English.
    await admin.get_by_label("新班级名称").fill("五年级（3）班")
    await admin.get_by_role("button", name="创建班级").click()
    await expect(admin.locator(".toast").last).to_contain_text("同名的内容已经存在")

    await card.get_by_label("老师", exact=True).select_option(label="陈老师 Mr. Chen（chen）")
    await card.get_by_label("职务", exact=True).select_option(label="班主任")
    await card.get_by_role("button", name="任命").click()
    await expect(card).to_contain_text("陈老师 Mr. Chen（班主任）")

    # A roster with a bad line: nothing imported, the line shown.
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD, encoding="utf-8")
    await card.get_by_label("导入名单 五年级（3）班").set_input_files(str(bad))
    await expect(card.get_by_role("alert")).to_contain_text("名单没有导入")
    await expect(card.locator(".roster-rejected")).to_contain_text("第 3 行")
    good = tmp_path / "good.csv"
    good.write_text(GOOD, encoding="utf-8")
    await card.get_by_label("导入名单 五年级（3）班").set_input_files(str(good))
    await expect(card.locator(".roster-result")).to_contain_text("已导入 1 行")
    await expect(card.locator(".roster-result")).to_contain_text("sun_mom")

    await card.get_by_role("button", name="邀请二维码").click()
    qr = card.get_by_role("img", name="五年级（3）班 的家长邀请二维码")
    await expect(qr).to_be_visible()
    assert await qr.evaluate("img => img.naturalWidth") > 100  # the SVG really loaded
    await screenshot(admin, "school-admin-pc")

    # A parent scans it on a phone: the join page, the code filled in.
    code = (await card.locator("code.code-big").text_content() or "").strip()
    parent = await web.signed_in("wang_mom", PHONE)
    await parent.goto(f"{server.url}/#/join/{code}")
    await expect(parent.get_by_label("班级邀请码")).to_have_value(code)
    # The roster says "孙悦"; she types it with a space, and gives her phone.
    await parent.get_by_label("孩子的姓名").fill("孙 悦")
    await parent.get_by_label("与孩子的关系").select_option("grandmother")
    await parent.get_by_label("你的手机号（选填）").fill("139 0000 0001")
    await screenshot(parent, "join-from-qr-phone")
    await parent.get_by_role("button", name="提交申请").click()
    await expect(parent.locator(".toast")).to_contain_text("申请已提交")

    # The new head teacher vets it: the phone given, and the roster lists that number.
    chen = await web.signed_in("chen", PC)
    class_id = int(await card.get_attribute("data-class-id") or 0)
    await chen.goto(f"{server.url}/#/class/{class_id}/links")
    item = chen.locator(".link-item", has_text="孙悦")
    await expect(item).to_contain_text("电话 139 0000 0001")
    await expect(item).to_contain_text("奶奶 / 外婆")
    await expect(item).to_contain_text("名单上有此家长")

    # Every pending request of the school, with what vets it.
    stranger = await server.client(None)
    await stranger.http(
        "POST",
        "/api/v1/auth/register",
        {
            "username": "zhao_aunt",
            "password": "long-enough-pw",
            "display_name": "赵磊姑姑",
            "join_code": server.demo["join_code"],
        },
        auth=False,
    )
    await stranger.login("zhao_aunt", "long-enough-pw")
    await stranger.http(
        "POST",
        "/api/v1/join",
        {
            "join_code": server.demo["join_code"],
            "child_name": "赵磊 Zhao Lei",
            "relationship": "aunt",
        },
    )
    await admin.reload()
    links = admin.locator(".school-links")
    await expect(links).to_contain_text(re.compile("赵磊姑姑 申请关联 赵磊 Zhao Lei"))


async def test_admin_opens_the_guardians_chat_history_to_new_guardians(
    server: Server, web: Browser
) -> None:
    admin = await web.signed_in("admin", PC)
    await admin.goto(f"{server.url}/#/school")
    history = admin.get_by_label("新加入的家长可以看到加入前的家长群聊天")
    await expect(history).not_to_be_checked()  # closed unless the school opens it
    await history.check()
    await expect(admin.locator(".toast")).to_contain_text("已保存")
    await admin.reload()
    await expect(admin.get_by_label("新加入的家长可以看到加入前的家长群聊天")).to_be_checked()
    api = await server.client("admin", connect=False)
    assert (await api.http("GET", "/api/v1/school"))["school"]["guardian_chat_history"] is True

    # The school's time zone (times in CSV exports): Asia/Shanghai unless set; a made-up one is
    # refused in Chinese.
    zone = admin.get_by_label("学校时区（导出表格中的时间）")
    await expect(zone).to_have_value("Asia/Shanghai")
    await zone.fill("Mars/Base")
    await zone.press("Enter")
    await expect(admin.locator(".toast.toast-error")).to_be_visible()
    await expect(admin.locator(".toast.toast-error")).not_to_contain_text("time zone")
    await zone.fill("Asia/Urumqi")
    await zone.press("Enter")
    await expect(admin.locator(".toast", has_text="已保存")).to_be_visible()
    assert (await api.http("GET", "/api/v1/school"))["school"]["time_zone"] == "Asia/Urumqi"


async def test_admin_moves_a_student_to_another_class_on_a_tablet(
    server: Server, web: Browser
) -> None:
    """The start of a year: Wang Hao moves to a new class in the web app; his mother follows."""
    admin = await web.signed_in("admin", PAD)
    await admin.goto(f"{server.url}/#/school")
    await admin.get_by_label("新班级名称").fill("六年级（2）班")
    await admin.get_by_role("button", name="创建班级").click()
    new = admin.get_by_role("listitem", name="六年级（2）班")
    await expect(new).to_contain_text("0 名学生")
    old = admin.get_by_role("listitem", name="五年级二班 / Grade 5 Class 2")
    await expect(old).to_contain_text("6 名学生")

    await old.get_by_role("button", name="转班").click()
    form = old.get_by_role("form", name="从 五年级二班 / Grade 5 Class 2 转出学生")
    await form.get_by_label("学生", exact=True).select_option(label="王浩 Wang Hao")
    await form.get_by_label("转入班级").select_option(label="六年级（2）班")
    await expect(form).to_contain_text("家长随学生一起转入")
    await screenshot(admin, "school-admin-move-pad")
    await form.get_by_role("button", name="确定转班").click()
    await expect(admin.locator(".toast", has_text="已转入")).to_contain_text(
        "王浩 Wang Hao 已转入 六年级（2）班"
    )
    await expect(old).to_contain_text("5 名学生")
    await expect(new).to_contain_text("1 名学生")
    await expect(form).to_have_count(0)

    # His mother is now in the new class, with him, and no longer in the old one.
    class_id = int(await new.get_attribute("data-class-id") or 0)
    mom = await server.client("wang_mom", connect=False)
    members = await mom.http("GET", f"/api/v1/classes/{class_id}/members")
    assert "王浩 Wang Hao" in [m["name"] for m in members["members"]]
    mine = await mom.http("GET", "/api/v1/me")
    assert class_id in [c["id"] for c in mine["classes"]]
    assert server.class_id not in [c["id"] for c in mine["classes"]]

    # The old year's class is archived: it says so and offers no more changes.
    await old.get_by_role("button", name="归档 五年级二班 / Grade 5 Class 2").click()
    await expect(old.locator(".tag")).to_have_text("已归档")
    await expect(old.get_by_role("button", name="转班")).to_have_count(0)
    await admin.get_by_label("新学年名称").fill("2025-2026学年")
    await admin.get_by_role("button", name="添加学年").click()
    await admin.get_by_role("button", name="归档 2025-2026学年").click()
    years = admin.locator(".pending-item", has_text="2025-2026学年")
    await expect(years.locator(".tag")).to_have_text("已归档")
    school = await (await server.client("admin", connect=False)).http("GET", "/api/v1/school")
    assert [c["archived"] for c in school["classes"] if c["id"] == server.class_id] == [True]
