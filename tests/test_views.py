"""realtime/views.py is what a real server sends, and the web app's types.ts is generated from it.

Each answer below comes from a real server over REST or Socket.IO and is converted to its view
with unknown fields refused and required fields required: a field the server adds, drops or
changes the type of fails here, and the web app's types (generated) follow the views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from realtime import views
from realtime.tools.gen_types import generate
from tests.conftest import Server

ROOT = Path(__file__).resolve().parent.parent
TYPES_TS = ROOT / "clients" / "web" / "src" / "api" / "types.ts"


def test_the_committed_types_ts_is_the_generated_one() -> None:
    assert TYPES_TS.read_text("utf-8") == generate(), (
        "clients/web/src/api/types.ts is out of date: run "
        "`python -m realtime.tools.gen_types > clients/web/src/api/types.ts`"
    )


def check(view: type[views.View], answer: dict[str, Any]) -> Any:
    """The answer (an ack's ``ok`` aside) as its view; raises on any difference."""
    return msgspec.convert({k: v for k, v in answer.items() if k != "ok"}, view)


async def test_real_answers_are_their_views(server: Server) -> None:
    teacher = await server.client()
    check(views.Tokens, await teacher.login("li", "demo1234"))
    await teacher.connect()
    guardian = await server.client("wang_mom")
    student = await server.client("wanghao")
    cid = server.class_id

    me = check(views.Me, await teacher.http("GET", "/api/v1/me"))
    assert me.classes and me.classes[0].id == cid
    check(views.Me, await guardian.http("GET", "/api/v1/me"))
    members = check(views.Members, await teacher.http("GET", f"/api/v1/classes/{cid}/members"))
    assert members.members
    for school_class in (await teacher.http("GET", "/api/v1/classes"))["classes"]:
        check(views.SchoolClass, school_class)

    stream = f"class:{cid}:students"
    message = check(views.Message, await teacher.send_chat(stream, "早上好"))
    assert message.body == "早上好"
    history = await teacher.history(stream)
    assert [check(views.Message, m) for m in history["messages"]]

    notice = await teacher.publish_notice(
        cid, "春游", kind="reply_required", choices=["去", "不去"]
    )
    check(views.Notice, notice)
    await guardian.reply_notice(notice["id"], "去")
    for listed in (await teacher.request("notice.list", {"class_id": cid}))["notices"]:
        assert check(views.Notice, listed).counts is not msgspec.UNSET
    for listed in (await guardian.request("notice.list", {"class_id": cid}))["notices"]:
        check(views.Notice, listed)
    rollup = check(views.Rollup, await teacher.receipts(notice["id"]))
    assert rollup.counts.replies == {"去": 1, "不去": 0}
    page = check(views.RollupPage, await teacher.receipts(notice["id"], page_of="covered"))
    assert page.covered is not msgspec.UNSET and page.receipts is msgspec.UNSET

    question = check(views.Question, await student.ask(cid, "明天几点到校？"))
    listed_questions = await teacher.request("question.list", {"class_id": cid})
    assert [check(views.Question, q) for q in listed_questions["questions"]]

    sync = check(views.SyncAck, await teacher.sync())
    assert any(info.stream == stream for info in sync.streams)
    # The events of the stream as they arrived (broadcast, or in a sync's answer).
    await teacher.wait_for(lambda e: e["type"] == "chat.message", 10)
    arrived = [check(views.StreamEvent, e) for e in teacher.events[stream]]
    assert any(e.type == "chat.message" for e in arrived)
    assert question.id


async def test_live_session_answers_are_their_views(server: Server) -> None:
    teacher = await server.client("li")
    student = await server.client("wanghao")
    started = await teacher.request(
        "session.start", {"class_id": server.class_id, "kind": "lesson", "title": "数学"}
    )
    session = check(views.SessionSummary, started["session"])
    joined = check(views.JoinAck, await student.request("session.join", {"session_id": session.id}))
    # A participant (not waiting in the lobby) gets the whole view.
    assert msgspec.convert(joined.session, views.SessionView).participants
    assert joined.you.role == "student"
    await teacher.request("session.end", {"session_id": session.id})
