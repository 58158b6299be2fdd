"""Polls and quizzes: teachers open them, students answer, the host sees counts live (coalesced),
results are published with the correct answer, and nobody sees another student's named answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from clients.homeroom import HomeroomClient, RequestError
from tests.conftest import Server, sentinel
from tests.live.helpers import eventually


def counts_pushes(c: HomeroomClient, poll_id: int) -> list[dict[str, Any]]:
    return [d for e, d in c.ephemeral if e == "poll.counts" and d["poll_id"] == poll_id]


async def test_quiz_answered_changed_and_published(server: Server) -> None:
    srv = server
    teacher = await srv.client("li")
    wang = await srv.client("wanghao")
    liming = await srv.client("liming")
    mom = await srv.client("wang_mom")
    quiz = await teacher.create_poll(
        srv.class_id, "1/2 + 1/4 = ?", "single", ["3/4", "2/6", "1/8"], correct=["3/4"]
    )
    assert quiz["correct"] == ["3/4"] and quiz["status"] == "open"
    stream = f"notices:{srv.class_id}:students"
    for c in (wang, liming):
        ev = await c.wait_for(lambda e: e["type"] == "poll.opened")
        assert ev["stream"] == stream and ev["data"]["id"] == quiz["id"]
        assert "correct" not in ev["data"] and ev["data"]["quiz"] is True
    # The teacher's copy of the same event carries the correct answer.
    ev = await teacher.wait_for(lambda e: e["type"] == "poll.opened")
    assert ev["data"]["correct"] == ["3/4"]

    # Bad answers change nothing; a guardian does not answer a students' quiz.
    with pytest.raises(RequestError) as err:
        await wang.answer_poll(quiz["id"], "4/6")
    assert err.value.code == "bad_request"
    with pytest.raises(RequestError) as err:
        await wang.answer_poll(quiz["id"], ["3/4", "1/8"])
    assert err.value.code == "bad_request"
    with pytest.raises(RequestError) as err:
        await mom.answer_poll(quiz["id"], "3/4")
    assert err.value.code == "forbidden"

    await wang.answer_poll(quiz["id"], "2/6")
    changed = await wang.answer_poll(quiz["id"], "3/4")  # changed until closed
    assert changed["changed"] is True and "correct" not in changed
    await liming.answer_poll(quiz["id"], "1/8")

    # The host sees the counts live and the named answers.
    await eventually(
        lambda: any(d["answered"] == 2 for d in counts_pushes(teacher, quiz["id"])),
        5,
        "the live counts",
    )
    last = counts_pushes(teacher, quiz["id"])[-1]
    assert last["counts"] == {"3/4": 1, "2/6": 0, "1/8": 1} and last["correct_count"] == 1
    got = await teacher.poll(quiz["id"])
    named = {a["user_id"]: a["answer"] for a in got["answers"]}
    assert named == {srv.uid("wanghao"): ["3/4"], srv.uid("liming"): ["1/8"]}
    # Students never see each other's answers, nor the results before they are published.
    seen = await wang.poll(quiz["id"])
    assert seen["mine"] == ["3/4"] and "answers" not in seen and "results" not in seen
    assert "correct" not in seen["poll"]
    assert not counts_pushes(wang, quiz["id"])
    with pytest.raises(RequestError) as err:
        await mom.poll(quiz["id"])
    assert err.value.code == "forbidden"

    await teacher.publish_poll(quiz["id"])
    for c in (wang, liming):
        ev = await c.wait_for(lambda e: e["type"] == "poll.results")
        assert ev["data"]["correct"] == ["3/4"]
        assert ev["data"]["results"]["counts"] == {"3/4": 1, "2/6": 0, "1/8": 1}
        assert "answers" not in ev["data"]
    with pytest.raises(RequestError) as err:
        await liming.answer_poll(quiz["id"], "3/4")
    assert err.value.code == "conflict"
    assert (await wang.poll(quiz["id"]))["results"]["correct_count"] == 1
    with pytest.raises(RequestError) as err:
        await wang.publish_poll(quiz["id"])
    assert err.value.code == "forbidden"


async def test_late_joiner_and_reconnecting_client_get_the_open_poll(server: Server) -> None:
    teacher = await server.client("li")
    wang = await server.client("wanghao")
    await wang.sio.disconnect()
    poll = await teacher.create_poll(server.class_id, "今天的课难吗？", "true_false")
    assert poll["options"] == ["true", "false"]
    # A reconnecting client catches up from its cursors.
    await wang.connect()
    ev = await wang.wait_for(lambda e: e["type"] == "poll.opened")
    assert ev["data"]["id"] == poll["id"]
    # A client that joins later lists the open polls with its own answer.
    zhang = await server.client("zhangwei")
    listed = await zhang.polls(server.class_id)
    assert listed[0]["id"] == poll["id"] and listed[0]["status"] == "open"
    assert listed[0]["mine"] is None
    await zhang.answer_poll(poll["id"], "false")
    assert (await zhang.polls(server.class_id))[0]["mine"] == ["false"]


async def test_anonymous_text_poll_with_time_limit(server: Server) -> None:
    teacher = await server.client("li")
    wang = await server.client("wanghao")
    liming = await server.client("liming")
    poll = await teacher.create_poll(
        server.class_id, "一个词形容今天", "text", anonymous=True, time_limit_s=2
    )
    await wang.answer_poll(poll["id"], "  有趣 ")
    await liming.answer_poll(poll["id"], "有趣")
    got = await teacher.poll(poll["id"])
    assert "answers" not in got  # anonymous: counts only, even for the host
    assert got["results"]["counts"] == {"有趣": 2}
    # The time limit closes it: answers are refused and everyone is told.
    ev = await wang.wait_for(lambda e: e["type"] == "poll.closed", timeout=6)
    assert ev["data"]["id"] == poll["id"]
    with pytest.raises(RequestError) as err:
        await wang.answer_poll(poll["id"], "累")
    assert err.value.code == "conflict"
    await teacher.publish_poll(poll["id"])
    ev = await liming.wait_for(lambda e: e["type"] == "poll.results")
    assert ev["data"]["results"]["counts"] == {"有趣": 2}


async def test_guardians_poll_of_a_class(server: Server) -> None:
    teacher = await server.client("li")
    mom = await server.client("wang_mom")
    wang = await server.client("wanghao")
    poll = await teacher.create_poll(
        server.class_id,
        "家长会哪天合适？",
        "multiple",
        ["周三", "周五", "周六"],
        audience="guardians",
    )
    ev = await mom.wait_for(lambda e: e["type"] == "poll.opened")
    assert ev["stream"] == f"notices:{server.class_id}:guardians"
    assert (await mom.answer_poll(poll["id"], ["周六", "周五"]))["answer"] == ["周五", "周六"]
    with pytest.raises(RequestError) as err:
        await wang.answer_poll(poll["id"], ["周三"])
    assert err.value.code == "forbidden"
    assert not await wang.polls(server.class_id)


async def test_live_counts_are_coalesced_and_end_right(server: Server) -> None:
    """A burst of answers reaches the host as a few pushes, the last one with the final counts."""
    teacher = await server.client("li")
    names = ["wanghao", "liming", "zhangwei", "liuyang", "liuxin", "zhaolei"]
    students = [await server.client(n) for n in names]
    poll = await teacher.create_poll(server.class_id, "A or B?", "single", ["A", "B"])
    started = time.monotonic()
    for round_ in range(5):  # everyone changes their mind five times, all at once
        await asyncio.gather(
            *(
                s.answer_poll(poll["id"], "A" if (round_ + i) % 2 else "B")
                for i, s in enumerate(students)
            )
        )
    elapsed = time.monotonic() - started
    final = {"A": 3, "B": 3}
    await eventually(
        lambda: (
            counts_pushes(teacher, poll["id"])
            and counts_pushes(teacher, poll["id"])[-1]["counts"] == final
        ),
        5,
        "the final counts",
    )
    await asyncio.sleep(0.4)  # any push still pending has gone out
    pushes = counts_pushes(teacher, poll["id"])
    # 30 answers; pushes at most one per 0.15 s (plus the leading one and the trailing one).
    assert len(pushes) <= (elapsed + 0.4) / 0.15 + 2, (len(pushes), elapsed)
    assert len(pushes) < 30
    assert pushes[-1]["answered"] == 6


async def test_dual_lesson_poll_answered_per_classroom(server: Server) -> None:
    """The master teacher chooses classroom answers: each linked classroom (its teacher accepted
    the link) answers once, by its local teacher; its students and the host class do not
    answer."""
    linked = server.demo["linked_class_ids"]
    chen = await server.client("chen")
    sid = (
        await chen.request(
            "session.start",
            {
                "class_id": server.class_id,
                "kind": "dual_lesson",
                "title": "English",
                "linked_class_ids": linked,
            },
        )
    )["session"]["id"]
    # Each linked classroom's local teacher accepts the link (a dual lesson asks first).
    wu = await server.client("wu")
    zhou = await server.client("zhou")
    for teacher, cid in zip((wu, zhou), linked, strict=True):
        await teacher.request(
            "classroom.link", {"session_id": sid, "class_id": cid, "accept": True}
        )
    xiaohong = await server.client("xiaohong")
    poll = await chen.create_poll(
        server.class_id,
        "Which is a fruit?",
        "single",
        ["apple", "chair"],
        correct=["apple"],
        session_id=sid,
        answer_by="classroom",
    )
    assert poll["classrooms"] == [server.class_id, *linked]
    # The linked classrooms see the poll in their own streams.
    ev = await xiaohong.wait_for(lambda e: e["type"] == "poll.opened")
    assert ev["stream"] == f"notices:{linked[0]}:students"
    # Their teachers answer for the classroom: they see it as its students do, without the
    # correct answer (the master's copy has it).
    ev = await wu.wait_for(lambda e: e["type"] == "poll.opened")
    assert "correct" not in ev["data"] and ev["data"]["answer_by"] == "classroom"
    assert "correct" in (await chen.wait_for(lambda e: e["type"] == "poll.opened"))["data"]
    assert [("correct" in p, p["mine"]) for p in await wu.polls(linked[0], sid)] == [(False, None)]
    with pytest.raises(RequestError) as err:
        await xiaohong.answer_poll(poll["id"], "apple")
    assert err.value.code == "forbidden"
    wang = await server.client("wanghao")
    with pytest.raises(RequestError) as err:
        await wang.answer_poll(poll["id"], "apple")
    assert err.value.code == "forbidden"
    await wu.answer_poll(poll["id"], "chair")
    await wu.answer_poll(poll["id"], "apple")  # the classroom changes its mind
    await zhou.answer_poll(poll["id"], "apple")
    got = await chen.poll(poll["id"])
    assert got["results"]["answered"] == 2 and got["results"]["correct_count"] == 2
    assert {a["class_id"] for a in got["answers"]} == set(linked)
    # The classroom's answer, as its teacher lists the lesson's polls; live counts went to the
    # master only.
    assert [p["mine"] for p in await wu.polls(linked[0], sid)] == [["apple"]]
    await eventually(lambda: bool(counts_pushes(chen, poll["id"])), 5, "the master's counts")
    await sentinel(server, wu, zhou)
    assert not counts_pushes(wu, poll["id"]) and not counts_pushes(zhou, poll["id"])
    await chen.publish_poll(poll["id"])
    ev = await wu.wait_for(lambda e: e["type"] == "poll.results")
    assert ev["data"]["correct"] == ["apple"] and ev["data"]["results"]["correct_count"] == 2
    # A classroom-answer poll outside a dual lesson is refused.
    with pytest.raises(RequestError) as err:
        await chen.create_poll(server.class_id, "x?", "true_false", answer_by="classroom")
    assert err.value.code == "bad_request"
