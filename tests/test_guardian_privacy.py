"""A guardian approved after a message was sent never learns what it says: not its edit's new
text (live or in catch-up after a reconnect), not its deletion, not its files (issue #16).

The new guardian here is a hand-written Socket.IO client (tests/rawsocket.py) whose every frame
is kept: the web app ignores what it should not show, a script reads everything it is sent.
The guardian approved before the message, on the same path, gets every edit in full.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clients.homeroom import HomeroomClient, RequestError
from realtime.domain import policy
from realtime.domain.streams import HIDDEN
from realtime.transport.fanout import HistoryFloors
from tests.attachment_files import pdf_bytes
from tests.conftest import Server
from tests.nodes import two_nodes
from tests.rawsocket import RawSocket
from tests.services import redis_url
from tests.test_guardian_history import _new_guardian

SECRET = "改期：明天改为穿运动服 SECRET-7f3a"


# --- the rule, without a server ----------------------------------------------------------------


def test_the_rule_for_an_event_about_an_earlier_message() -> None:
    edit = {"message_id": 3, "message_seq": 5, "body": "new", "edited_at": 1.0}
    # Approved after seq 9: an event about message 5 is not theirs, even numbered after 9.
    assert not policy.may_see_in_chat(12, edit, 9)
    assert not policy.may_see_in_chat(12, {"message_id": 3, "message_seq": 9, "by": 1}, 9)
    # About a message after their floor, or anyone who sees it all: in full.
    assert policy.may_see_in_chat(12, {**edit, "message_seq": 10}, 9)
    assert policy.may_see_in_chat(12, edit, 0)
    # A message, or an event about no message: from after the floor on.
    assert policy.may_see_in_chat(10, None, 9)
    assert not policy.may_see_in_chat(9, None, 9)
    assert policy.may_see_in_chat(10, {"message_seq": True}, 9)  # not a number: about nothing


def test_history_floors_are_forgotten_with_the_connection() -> None:
    floors = HistoryFloors()
    floors.set("a", {"class:1:guardians": 7, "class:2:guardians": 0})
    floors.set("b", {"class:1:guardians": 3})
    assert dict(floors.of_stream("class:1:guardians")) == {"a": 7, "b": 3}
    assert not floors.of_stream("class:2:guardians")  # 0: sees it all, not kept
    floors.set("a", {})
    floors.forget("b")
    assert not floors.of_stream("class:1:guardians")


# --- through real servers ----------------------------------------------------------------------


async def _raw(srv: Server, token: str, cursors: dict[str, int]) -> tuple[RawSocket, Any]:
    raw = RawSocket(srv.url, token)
    await raw.connect()
    ack = await raw.request("sync", {"cursors": cursors})
    assert ack["ok"], ack
    return raw, ack


def _of(raw: RawSocket, stream: str) -> list[tuple[int, str]]:
    return [(e["seq"], e["type"]) for e in raw.events(stream)]


async def _scenario(home: Server, away: Server) -> None:
    """The teacher and the guardian approved before on ``home``; the guardian approved after
    the message on ``away`` (the same server, or another node)."""
    stream = f"class:{home.class_id}:guardians"
    li = await home.client("li")
    mom = await home.client("wang_mom")  # approved long before (the demo school)
    pdf = await li.upload(pdf_bytes(), "校服通知.pdf")
    old = await li.send_chat(stream, "明天请穿校服", attachments=[pdf["id"]])
    new: HomeroomClient = await _new_guardian(away, li)
    raw, _ack = await _raw(away, str(new.token), {stream: 0})

    # The teacher edits the old message within its window: its new text is not hers.
    edited = await li.request("chat.edit", {"message_id": old["id"], "body": SECRET})
    assert edited["edited"]["body"] == SECRET
    welcome = await li.send_chat(stream, "欢迎赵磊妈妈")
    await raw.wait_for(lambda n, d: n == "event" and d["seq"] == welcome["seq"])
    ev = await mom.wait_for(lambda e: e["type"] == "chat.edited" and e["data"]["body"] == SECRET)
    edit_seq = ev["seq"]
    assert edit_seq == welcome["seq"] - 1
    assert _of(raw, stream) == [(edit_seq, HIDDEN), (welcome["seq"], "chat.message")]
    (hidden,) = [e for e in raw.events(stream) if e["seq"] == edit_seq]
    assert hidden == {"stream": stream, "seq": edit_seq, "type": HIDDEN, "at": ev["at"], "data": {}}

    # An edit of a message sent after her approval is hers, in full.
    await li.request("chat.edit", {"message_id": welcome["id"], "body": "欢迎赵磊妈妈加入"})
    _n, full = await raw.wait_for(lambda n, d: n == "event" and d["type"] == "chat.edited")
    assert full["data"]["body"] == "欢迎赵磊妈妈加入"
    assert full["data"]["message_id"] == welcome["id"]

    # The old message's file: hers to fetch no more than its text; the other mother's, yes.
    with pytest.raises(RequestError) as refused:
        await new.http("POST", "/api/v1/uploads/links", {"ids": [pdf["id"]]})
    assert refused.value.code == "forbidden"
    assert (
        pdf["id"]
        in (await mom.http("POST", "/api/v1/uploads/links", {"ids": [pdf["id"]]}))["links"]
    )

    # The teacher takes the old message down: that it went is not hers either.
    await li.request("chat.delete", {"message_id": old["id"]})
    marker = await li.send_chat(stream, "下午三点放学")
    await raw.wait_for(lambda n, d: n == "event" and d["seq"] == marker["seq"])
    assert _of(raw, stream)[-2:] == [(marker["seq"] - 1, HIDDEN), (marker["seq"], "chat.message")]
    assert not any("SECRET" in f or "明天请穿校服" in f for f in raw.frames)

    # Reconnect and catch up from the very start: the same numbers, the same forms.
    await raw.close()
    again, ack = await _raw(away, str(new.token), {stream: 0})
    caught = [(e["seq"], e["type"]) for e in ack["events"] if e["stream"] == stream]
    assert caught == [
        (edit_seq, HIDDEN),
        (welcome["seq"], "chat.message"),
        (welcome["seq"] + 1, "chat.edited"),
        (marker["seq"] - 1, HIDDEN),
        (marker["seq"], "chat.message"),
    ]
    assert not any("SECRET" in f or "明天请穿校服" in f for f in again.frames)

    # The school opens the earlier conversation to new guardians: her connection is told, and
    # her next catch-up holds the whole of it, each event in full.
    admin = await home.client("admin", connect=False)
    await admin.http("PUT", "/api/v1/school/settings", {"guardian_chat_history": True})
    await again.wait_for(lambda n, _d: n == "resync")
    ack = await again.request("sync", {"cursors": {stream: 0}})
    types = {e["seq"]: e["type"] for e in ack["events"] if e["stream"] == stream}
    assert types[old["seq"]] == "chat.message"
    assert types[edit_seq] == "chat.edited" and types[marker["seq"] - 1] == "chat.deleted"
    # And live: an event about the old message now reaches her in full.
    await li.request("chat.delete", {"message_id": old["id"]})  # staff: already gone, no event
    late = await li.send_chat(stream, "家长会改到周五")
    await li.request("chat.delete", {"message_id": late["id"]})
    _n, gone = await again.wait_for(lambda n, d: n == "event" and d["type"] == "chat.deleted")
    assert gone["data"]["message_id"] == late["id"]
    await again.close()


async def test_a_guardian_approved_later_never_receives_an_old_message_edited(
    server: Server,
) -> None:
    await _scenario(server, server)


@pytest.mark.timeout(60)
async def test_across_two_nodes_the_edit_reaches_only_who_saw_the_message(tmp_path: Path) -> None:
    # The teacher and the earlier mother on node A, the new mother on node B: the edit crosses
    # Redis in full, and node B gives her its number alone.
    async with two_nodes(tmp_path, redis_url()) as (a, b):
        await _scenario(a, b)
