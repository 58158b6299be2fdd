"""The school's attachment storage in the web app (zh-CN): the school admin sees the space its
files take of the quota, on a PC and on a phone, and changes how long attached files are kept.
"""

from __future__ import annotations

from playwright.async_api import Locator, Page, expect

from tests.attachment_files import pdf_bytes
from tests.chromium import PC, PHONE
from tests.conftest import Server
from tests.web.conftest import Browser, screenshot

MIB = 1024 * 1024

# What sticks out on the right of the screen (named, for the failure's message).
WIDER_THAN_SCREEN = """() => [...document.querySelectorAll('*')]
    .filter((e) => e.getBoundingClientRect().right > innerWidth + 1)
    .slice(0, 8)
    .map((e) => `${e.tagName}.${e.className}: ${(e.textContent || '').slice(0, 30)}`)"""


def _pdf_of(size: int) -> bytes:
    base = len(pdf_bytes(pad=1)) - 1
    data = pdf_bytes(pad=size - base)
    assert len(data) == size
    return data


async def _storage_card(page: Page, open_page: bool = True) -> Locator:
    if open_page:
        await page.get_by_role("link", name="学校管理").click()
    await expect(page.get_by_role("heading", name="学校管理")).to_be_visible()
    card = page.locator("section", has=page.get_by_role("heading", name="附件存储"))
    await card.scroll_into_view_if_needed()
    return card


async def test_admin_sees_storage_and_changes_retention(server: Server, web: Browser) -> None:
    # A 3 MB worksheet sent by a student, the school's only file: 3 MB of the default 20 GB.
    wang = await server.client("wanghao")
    await wang.upload(_pdf_of(3 * MIB), "期末复习.pdf")

    admin = await web.signed_in("admin", PC)
    card = await _storage_card(admin)
    await expect(card.locator(".storage-used")).to_have_text("已用 3 MB，配额 20 GB（0%）")
    meter = card.get_by_role("meter", name="已用的附件存储空间")
    await expect(meter).to_have_attribute("value", str(3 * MIB))
    await expect(card.locator(".storage-retention")).to_have_text("文件永久保留，不会自动删除")
    retention = card.get_by_label("附件保留天数（0 表示永久保留）")
    await expect(retention).to_have_value("0")

    await retention.fill("30")
    await card.get_by_role("button", name="保存").click()
    await expect(admin.locator(".toast").last).to_contain_text("已保存")
    await expect(card.locator(".storage-retention")).to_have_text(
        "附加超过 30 天的文件会被自动删除"
    )
    await screenshot(admin, "school-storage-pc")
    # Stored, not only shown: the server says so, and so does the page after a reload.
    admin_api = await server.client("admin", connect=False)
    assert (await admin_api.http("GET", "/api/v1/school/storage"))["retention_days"] == 30
    await admin.reload()
    card = await _storage_card(admin, open_page=False)
    await expect(card.get_by_label("附件保留天数（0 表示永久保留）")).to_have_value("30")

    # Another upload of 2 MB: the phone shows 5 MB, and keeps files for ever again.
    await wang.upload(_pdf_of(2 * MIB), "复习答案.pdf")
    phone = await web.signed_in("admin", PHONE)
    card = await _storage_card(phone)
    await expect(card.locator(".storage-used")).to_have_text("已用 5 MB，配额 20 GB（0%）")
    await expect(card.locator(".storage-retention")).to_have_text(
        "附加超过 30 天的文件会被自动删除"
    )
    # Nothing wider than the phone's screen.
    width = await phone.evaluate("document.documentElement.scrollWidth")
    wide = await phone.evaluate(WIDER_THAN_SCREEN)
    assert width <= PHONE["width"], (width, wide)
    retention = card.get_by_label("附件保留天数（0 表示永久保留）")
    await retention.fill("0")
    await card.get_by_role("button", name="保存").click()
    await expect(card.locator(".storage-retention")).to_have_text("文件永久保留，不会自动删除")
    await screenshot(phone, "school-storage-phone")
    assert (await admin_api.http("GET", "/api/v1/school/storage"))["retention_days"] == 0
