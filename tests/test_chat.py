"""Class chat and private conversations, end to end through a real server and real clients."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clients.homeroom import RequestError
from tests.conftest import Server


async def test_student_message_reaches_classmates_and_teacher(server: Server) -> None:
    srv = server
    stream = f"class:{srv.class_id}:students"
    teacher = await srv.client("li")
    wang = await srv.client("wanghao")
    liming = await srv.client("liming")
    msg = await wang.send_chat(stream, "老师，分数怎么约分？")
    assert msg["seq"] >= 1 and msg["sender_name"].startswith("王浩")
    for c in (teacher, liming):
        ev = await c.wait_for(
            lambda e: e["type"] == "chat.message" and e["data"]["id"] == msg["id"]
        )
        assert ev["data"]["body"] == "老师，分数怎么约分？"
    # Guardians follow their own stream, not the students' one.
    mom = await srv.client("wang_mom")
    with pytest.raises(RequestError) as err:
        await mom.send_chat(stream, "hello")
    assert err.value.code == "forbidden"
    assert stream not in mom.cursors


async def test_resend_with_same_client_id_gets_original(server: Server) -> None:
    stream = f"class:{server.class_id}:students"
    wang = await server.client("wanghao")
    first = await wang.send_chat(stream, "once", client_id="c-1")
    again = await wang.request("chat.send", {"stream": stream, "client_id": "c-1", "body": "once"})
    assert again["duplicate"] is True and again["message"]["id"] == first["id"]
    hist = await wang.history(stream)
    assert [m["body"] for m in hist["messages"]].count("once") == 1


async def test_resend_after_a_mute_still_gets_its_original(server: Server) -> None:
    """The ack of a message was lost and the student was muted meanwhile: the resend is
    answered with the stored message, not refused, and nothing is stored twice."""
    stream = f"class:{server.class_id}:students"
    teacher = await server.client("li")
    wang = await server.client("wanghao")
    first = await wang.send_chat(stream, "sent before the mute", client_id="c-mute")
    await teacher.request(
        "chat.mute", {"class_id": server.class_id, "user_id": server.uid("wanghao"), "minutes": 5}
    )
    again = await wang.request(
        "chat.send", {"stream": stream, "client_id": "c-mute", "body": "sent before the mute"}
    )
    assert again["duplicate"] is True and again["message"]["id"] == first["id"]
    with pytest.raises(RequestError) as err:
        await wang.send_chat(stream, "a new one", client_id="c-new")
    assert err.value.code == "forbidden"
    hist = await teacher.history(stream)
    assert [m["body"] for m in hist["messages"]] == ["sent before the mute"]


async def test_catch_up_after_being_offline(server: Server) -> None:
    stream = f"class:{server.class_id}:students"
    wang = await server.client("wanghao")
    liming = await server.client("liming")
    await wang.send_chat(stream, "before")
    await liming.wait_for(lambda e: e["data"].get("body") == "before")
    await liming.sio.disconnect()
    sent = [await wang.send_chat(stream, f"missed {i}") for i in range(5)]
    await liming.connect()
    got = [e["data"]["body"] for e in liming.events[stream] if e["type"] == "chat.message"]
    assert got == ["before"] + [m["body"] for m in sent]
    seqs = [e["seq"] for e in liming.events[stream]]
    assert seqs == sorted(set(seqs))


async def test_edit_delete_and_moderation(server: Server) -> None:
    stream = f"class:{server.class_id}:students"
    wang = await server.client("wanghao")
    liming = await server.client("liming")
    teacher = await server.client("li")
    m = await wang.send_chat(stream, "typo")
    await wang.request("chat.edit", {"message_id": m["id"], "body": "fixed"})
    ev = await liming.wait_for(lambda e: e["type"] == "chat.edited")
    assert ev["data"]["body"] == "fixed"
    with pytest.raises(RequestError) as err:
        await liming.request("chat.edit", {"message_id": m["id"], "body": "hijack"})
    assert err.value.code == "forbidden"
    await teacher.request("chat.delete", {"message_id": m["id"]})
    await liming.wait_for(lambda e: e["type"] == "chat.deleted")
    hist = await liming.history(stream)
    assert hist["messages"][-1]["deleted"] is True and hist["messages"][-1]["body"] == ""
    # Catch-up from the start does not bring the deleted text (nor its earlier versions) back.
    late = await server.client("zhangwei", connect=False)
    late.follow(stream, 0)
    await late.connect()
    texts = [e["data"].get("body") for e in late.events[stream]]
    assert "typo" not in texts and "fixed" not in texts
    original = next(e for e in late.events[stream] if e["type"] == "chat.message")
    assert original["data"]["deleted"] is True


async def test_teacher_mutes_a_student(server: Server) -> None:
    stream = f"class:{server.class_id}:students"
    teacher = await server.client("li")
    wang = await server.client("wanghao")
    await teacher.request(
        "chat.mute", {"class_id": server.class_id, "user_id": server.uid("wanghao"), "minutes": 5}
    )
    with pytest.raises(RequestError) as err:
        await wang.send_chat(stream, "let me talk")
    assert err.value.code == "forbidden"
    await teacher.request(
        "chat.mute", {"class_id": server.class_id, "user_id": server.uid("wanghao"), "minutes": 0}
    )
    await wang.send_chat(stream, "thanks")
    with pytest.raises(RequestError) as err:
        await wang.request(
            "chat.mute",
            {"class_id": server.class_id, "user_id": server.uid("liming"), "minutes": 5},
        )
    assert err.value.code == "forbidden"


async def test_private_conversation_teacher_guardian(server: Server) -> None:
    teacher = await server.client("li")
    mom = await server.client("wang_mom")
    other = await server.client("li_mom")
    conv = await mom.open_conversation(server.class_id, server.uid("li"))
    for c in (teacher, mom):
        await c.wait_for(lambda e: e["type"] == "conversation.opened")
        await c.sync()
    await mom.send_chat(conv["stream"], "王浩今天发烧了，请假一天")
    ev = await teacher.wait_for(lambda e: e["stream"] == conv["stream"])
    assert "请假" in ev["data"]["body"]
    assert conv["stream"] not in other.cursors
    with pytest.raises(RequestError) as err:
        await other.send_chat(conv["stream"], "let me in")
    assert err.value.code == "forbidden"
    # Guardian to guardian and student to student are refused.
    with pytest.raises(RequestError) as err:
        await mom.open_conversation(server.class_id, server.uid("li_mom"))
    assert err.value.code == "forbidden"


async def test_unread_counts_and_read_position(server: Server) -> None:
    stream = f"class:{server.class_id}:students"
    wang = await server.client("wanghao")
    liming = await server.client("liming")
    for i in range(3):
        await wang.send_chat(stream, f"m{i}")
    ack = await liming.sync()
    entry = next(s for s in ack["streams"] if s["stream"] == stream)
    assert entry["unread"] == 3
    res = await liming.request("chat.read", {"stream": stream, "seq": entry["last_seq"]})
    assert res["unread"] == 0


async def test_typing_is_not_persisted(server: Server) -> None:
    stream = f"class:{server.class_id}:students"
    wang = await server.client("wanghao")
    liming = await server.client("liming")
    await wang.request("chat.typing", {"stream": stream})
    for _ in range(50):
        if any(ev == "typing" for ev, _ in liming.ephemeral):
            break
        await asyncio.sleep(0.02)
    assert any(
        ev == "typing" and d["user_id"] == server.uid("wanghao") for ev, d in liming.ephemeral
    )
    assert not any(ev == "typing" for ev, _ in wang.ephemeral)
    hist = await liming.history(stream)
    assert hist["messages"] == []


async def test_too_long_message_is_refused(server: Server) -> None:
    wang = await server.client("wanghao")
    with pytest.raises(RequestError) as err:
        await wang.send_chat(f"class:{server.class_id}:students", "x" * 2001)
    assert err.value.code == "too_large"


async def test_sender_hears_stored_before_the_class_and_order_holds(server: Server) -> None:
    """A message is acknowledged (stored) before the server writes it to the class, and a burst
    of messages still reaches every member once each, in order."""
    stream = f"class:{server.class_id}:students"
    wang = await server.client("wanghao")
    liming = await server.client("liming")
    teacher = await server.client("li")
    arrivals: list[tuple[str, int]] = []
    wang.on_event(lambda ev: arrivals.append(("event", ev["data"]["id"])))
    acked = asyncio.get_running_loop().create_future()

    def on_ack(ack: dict[str, Any]) -> None:
        arrivals.append(("ack", ack["message"]["id"]))
        acked.set_result(ack)

    payload = {"stream": stream, "client_id": "first", "body": "作业写完了 Homework done"}
    await wang.sio.emit("chat.send", payload, callback=on_ack)
    first = (await asyncio.wait_for(acked, 10))["message"]
    await wang.wait_for(lambda e: e["type"] == "chat.message" and e["data"]["id"] == first["id"])
    assert arrivals == [("ack", first["id"]), ("event", first["id"])]

    # Thirty at once: every member gets every one, once, in sequence order.
    sent = await asyncio.gather(*(wang.send_chat(stream, f"第{i}条 #{i}") for i in range(30)))
    ids = {m["id"] for m in sent}
    for member in (liming, teacher, wang):
        await member.wait_for(lambda e: e["type"] == "chat.message" and e["data"]["id"] == max(ids))
        got = [e for e in member.events[stream] if e["data"]["id"] in ids]
        assert sorted(e["data"]["id"] for e in got) == sorted(ids)
        seqs = [e["seq"] for e in member.events[stream]]
        assert seqs == sorted(set(seqs))


async def test_an_event_with_two_arguments_gets_bad_request(server: Server) -> None:
    """As docs/protocol.md says: answered with bad_request, and nothing is sent."""
    stream = f"class:{server.class_id}:students"
    wang = await server.client("wanghao")
    ack = await wang.sio.call(
        "chat.send", ({"stream": stream, "client_id": "two", "body": "hi"}, "extra"), timeout=10
    )
    assert ack["ok"] is False and ack["error"]["code"] == "bad_request"
    assert "one payload" in ack["error"]["message"]
    assert (await wang.history(stream))["messages"] == []
