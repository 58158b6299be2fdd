"""A guardian approved today sees the guardians' chat from then on, not the families' earlier
conversation, whatever they ask for (history pages, a catch-up from cursor 0, unread counts);
a school setting opens the earlier conversation to them."""

from __future__ import annotations

from typing import Any

import pytest

from clients.homeroom import HomeroomClient, RequestError
from tests.conftest import Server
from tests.web.test_told import register_and_ask


async def _new_guardian(srv: Server, teacher: HomeroomClient) -> HomeroomClient:
    """赵磊's mother signs up with the join code, asks to be linked, and is approved now."""
    g = await register_and_ask(srv, "zhao_mom", "赵磊妈妈", "赵磊")
    pending = await teacher.http("GET", f"/api/v1/classes/{srv.class_id}/links")
    (link,) = [x for x in pending["links"] if x["guardian_id"] == g.user["id"]]
    await teacher.http("POST", f"/api/v1/links/{link['id']}/approve")
    return g


def _bodies(page: dict[str, Any]) -> list[str]:
    return [m["body"] for m in page["messages"]]


async def test_a_new_guardian_sees_the_guardians_chat_from_their_approval_on(
    server: Server,
) -> None:
    srv = server
    stream = f"class:{srv.class_id}:guardians"
    li = await srv.client("li")
    mom = await srv.client("wang_mom")
    await li.send_chat(stream, "各位家长，下周三开家长会")
    await mom.send_chat(stream, "王浩这周咳嗽，请假一天")
    new = await _new_guardian(srv, li)
    await li.send_chat(stream, "欢迎赵磊妈妈加入家长群")

    await new.connect()
    # Her history starts at her approval; what the families said before stays theirs.
    assert _bodies(await new.history(stream)) == ["欢迎赵磊妈妈加入家长群"]
    # A catch-up from the very start brings nothing older either.
    new.follow(stream, 0)
    ack = await new.sync()
    bodies = [e["data"].get("body") for e in ack["events"] if e["stream"] == stream]
    assert bodies == ["欢迎赵磊妈妈加入家长群"]
    # And she has one unread message, not three.
    (info,) = [s for s in ack["streams"] if s["stream"] == stream]
    assert info["unread"] == 1
    # Families who were there, and teachers, see everything.
    everything = ["各位家长，下周三开家长会", "王浩这周咳嗽，请假一天", "欢迎赵磊妈妈加入家长群"]
    assert _bodies(await mom.history(stream)) == everything
    assert _bodies(await li.history(stream)) == everything

    # The school opens the earlier conversation to new guardians.
    admin = await srv.client("admin", connect=False)
    ack = await admin.http("PUT", "/api/v1/school/settings", {"guardian_chat_history": True})
    assert ack == {"time_zone": "Asia/Shanghai", "guardian_chat_history": True}
    school = await admin.http("GET", "/api/v1/school")
    assert school["school"]["guardian_chat_history"] is True
    assert _bodies(await new.history(stream)) == everything
    # Setting nothing is refused and changes nothing.
    with pytest.raises(RequestError) as refused:
        await admin.http("PUT", "/api/v1/school/settings", {})
    assert refused.value.code == "bad_request"
    assert (await admin.http("GET", "/api/v1/school"))["school"]["guardian_chat_history"]
