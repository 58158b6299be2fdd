"""The push path end to end in real Chromium (zh-CN, a mother on her phone): the app subscribes
with the server's VAPID key, the server encrypts a push (RFC 8291) to a push service the test
runs, which checks the VAPID signature and decrypts it, and the service worker shows what was
decrypted as a notification. tests/test_push.py holds the server side on both databases;
tests/web/test_told.py the notification of a made-up push and the app opening offline."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from playwright.async_api import expect

from realtime.transport.rest import HUB
from tests.chromium import PHONE
from tests.conftest import Server, make_settings, start_server, stop_server
from tests.test_push import PushService
from tests.web.conftest import Browser, launch, screenshot, shown_notification


async def test_the_push_path_end_to_end(tmp_path: Path, chromium: str) -> None:
    """A mother turns notifications on in the app on her phone; the app subscribes with the
    server's VAPID key and hands the subscription to the server. The teacher writes to her: the
    server encrypts a push to the push service of the test, which checks the VAPID signature and
    decrypts it with the subscription's keys, and hands what it decrypted to her service worker,
    which shows it, naming who wrote and never what.

    Headless Chromium has no push service of its own (its subscribe goes to Google's): the
    page's ``PushManager.subscribe`` answers with the test service's endpoint and keys, as a
    browser's push service would."""
    service = PushService()
    await service.start()
    srv = await start_server(make_settings(tmp_path, push_endpoint_hosts="127.0.0.1"))
    try:
        async with launch(srv.url, chromium) as web:
            await _push_path(srv, service, web)
    finally:
        await stop_server(srv)
        await service.stop()


async def _push_path(srv: Server, service: PushService, web: Browser) -> None:
    phone = service.device("mom-phone")
    sub = phone.subscription()
    mom = await web.signed_in("wang_mom", PHONE)
    await mom.context.grant_permissions(["notifications"], origin=srv.url)
    await mom.evaluate(
        """(sub) => {
          let made = null;
          PushManager.prototype.getSubscription = async function () { return made; };
          PushManager.prototype.subscribe = async function (options) {
            const key = options.applicationServerKey;
            window.__subscribedWith = typeof key === "string" ? key : null;
            made = {
              endpoint: sub.endpoint,
              toJSON: () => sub,
              unsubscribe: async () => { made = null; return true; },
            };
            return made;
          };
        }""",
        sub,
    )
    await mom.get_by_role("button", name=re.compile("的账号菜单")).click()
    await mom.get_by_role("menuitem", name="通知设置").click()
    dialog = mom.get_by_role("dialog", name="通知设置")
    await dialog.get_by_role("button", name="在这台设备上接收通知").click()
    await expect(dialog.get_by_role("button", name="停止在这台设备上接收通知")).to_be_visible()
    key = await (await srv.client("wang_mom", connect=False)).http("GET", "/api/v1/push/key")
    assert await mom.evaluate("window.__subscribedWith") == key["public_key"]
    settings = await (await srv.client("wang_mom", connect=False)).http(
        "GET", "/api/v1/push/settings"
    )
    assert settings["devices"] == 1

    li = await srv.client("li")
    conv = await li.open_conversation(srv.class_id, srv.uid("wang_mom"))
    secret = "王浩这次数学考了 58 分"
    await li.send_chat(conv["stream"], secret)
    pusher = srv.app[HUB].pusher
    assert pusher is not None
    await pusher.drain()
    assert phone.received == [
        {"kind": "message", "stream": conv["stream"], "from": "李老师 Ms. Li"}
    ]
    assert secret.encode() not in phone.raw[0]  # encrypted on the wire

    # What the push service decrypted reaches her service worker as a push event.
    cdp = await mom.context.new_cdp_session(mom)
    registered: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_registrations(e: dict[str, list[dict[str, str]]]) -> None:
        for r in e["registrations"]:
            if r["scopeURL"] == srv.url + "/" and not registered.done():
                registered.set_result(r["registrationId"])

    cdp.on("ServiceWorker.workerRegistrationUpdated", on_registrations)
    await cdp.send("ServiceWorker.enable")
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": srv.url + "/",
            "registrationId": await asyncio.wait_for(registered, 10),
            "data": json.dumps(phone.received[0], ensure_ascii=False),
        },
    )
    notification = await shown_notification(mom)
    await screenshot(mom, "guardian-push-subscribed-phone")
    assert notification is not None
    assert notification == {
        "title": "新私信",
        "body": "来自 李老师 Ms. Li 的新消息",
        "url": f"/#/conv/{conv['id']}",
    }
    # Tapped, it opens the conversation, where the message itself is read from the server.
    await mom.goto(srv.url + notification["url"])
    await expect(mom).to_have_url(re.compile(f"#/class/{srv.class_id}/messages/{conv['id']}$"))
    await expect(mom.get_by_role("log")).to_contain_text(secret)
