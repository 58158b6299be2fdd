"""@mentions tell the person wherever they are in the app, and a teacher sees who of the
families has read each message of the guardians' chat."""

from __future__ import annotations

import pytest

from clients.homeroom import RequestError
from tests.conftest import Server, sentinel


async def test_a_mention_tells_the_person_and_stays_with_the_message(server: Server) -> None:
    srv = server
    stream = f"class:{srv.class_id}:guardians"
    li, mom, li_mom = (
        await srv.client("li"),
        await srv.client("wang_mom"),
        await srv.client("li_mom"),
    )
    mom_id = srv.uid("wang_mom")
    msg = await li.send_chat(
        stream, "@王浩妈妈 明天请带王浩的体检表", mentions=[mom_id, srv.uid("li"), mom_id]
    )
    assert msg["mentions"] == [mom_id]  # once each, never the sender
    told = await mom.wait_for(lambda e: e["type"] == "chat.mentioned")
    assert told["stream"] == f"user:{mom_id}"
    assert told["data"] == {
        "stream": stream,
        "message_id": msg["id"],
        "seq": msg["seq"],
        "sender_id": srv.uid("li"),
        "sender_name": "李老师 Ms. Li",
    }
    await sentinel(srv, li_mom, li)
    assert not [e for evs in li_mom.events.values() for e in evs if e["type"] == "chat.mentioned"]
    page = await li_mom.history(stream)
    assert page["messages"][-1]["mentions"] == [mom_id]

    # Someone who cannot read this chat cannot be mentioned in it: refused, nothing sent.
    with pytest.raises(RequestError) as err:
        await li.send_chat(stream, "@王浩 你好", mentions=[srv.uid("wanghao")])
    assert err.value.code == "bad_request"
    assert [m["body"] for m in (await li.history(stream))["messages"]] == [msg["body"]]


async def test_teachers_see_who_has_read_a_message_of_the_guardians_chat(server: Server) -> None:
    srv = server
    stream = f"class:{srv.class_id}:guardians"
    li, chen, mom = await srv.client("li"), await srv.client("chen"), await srv.client("wang_mom")
    msg = await li.send_chat(stream, "周五下午提前放学，请按时来接")
    before = await chen.request("chat.read_by", {"message_id": msg["id"]})
    guardians = {
        "wang_mom", "wang_dad", "li_mom", "li_dad", "zhang_mom", "zhang_grandpa", "liu_mom",
        "liu_dad",
    }  # fmt: skip
    assert before["read"] == []
    assert {p["id"] for p in before["unread"]} == {srv.uid(u) for u in guardians}

    await mom.request("chat.read", {"stream": stream, "seq": msg["seq"]})
    # The teachers are told at once, in the class's staff stream (what the app's "read by"
    # moves with); the families, who do not follow it, are not.
    told = await li.wait_for(lambda e: e["type"] == "chat.read_by")
    assert told["stream"] == f"staff:{srv.class_id}"
    assert told["data"] == {
        "stream": stream,
        "user_id": srv.uid("wang_mom"),
        "name": "王浩妈妈 Wang Hao's mother",
        "read_seq": msg["seq"],
    }
    await chen.wait_for(lambda e: e["type"] == "chat.read_by")
    # Reading again up to the same place tells nobody anything new.
    await mom.request("chat.read", {"stream": stream, "seq": msg["seq"]})
    # A teacher's own reading is not "read by".
    await chen.request("chat.read", {"stream": stream, "seq": msg["seq"]})
    await sentinel(srv, li, mom)
    assert [e["type"] for e in li.events[f"staff:{srv.class_id}"]].count("chat.read_by") == 1
    assert not any(e["type"] == "chat.read_by" for evs in mom.events.values() for e in evs)
    after = await li.request("chat.read_by", {"message_id": msg["id"]})
    assert after["read"] == [{"id": srv.uid("wang_mom"), "name": "王浩妈妈 Wang Hao's mother"}]
    assert len(after["unread"]) == len(guardians) - 1
    # Families do not see each other's reading.
    with pytest.raises(RequestError) as err:
        await mom.request("chat.read_by", {"message_id": msg["id"]})
    assert err.value.code == "forbidden"
    # Nor is it kept for the students' chat.
    student_msg = await li.send_chat(f"class:{srv.class_id}:students", "同学们好")
    with pytest.raises(RequestError) as err:
        await li.request("chat.read_by", {"message_id": student_msg["id"]})
    assert err.value.code == "forbidden"
