"""Q&A: anonymous questions, votes, answers, and questions that outlive the lesson."""

from __future__ import annotations

import pytest

from clients.homeroom import RequestError
from tests.conftest import Server


async def test_anonymous_question_votes_and_answer(server: Server) -> None:
    srv = server
    teacher = await srv.client("li")
    wang = await srv.client("wanghao")
    liming = await srv.client("liming")
    q = await wang.ask(srv.class_id, "为什么分母不能为零？", anonymous=True)
    seen = await liming.wait_for(lambda e: e["type"] == "question.asked")
    assert seen["data"]["asker_id"] is None and seen["data"]["asker_name"] == ""
    staff_view = await teacher.wait_for(lambda e: e["type"] == "question.asked")
    assert staff_view["data"]["asker_id"] == srv.uid("wanghao")

    voted = await liming.vote(q["id"])
    assert voted["votes"] == 1
    again = await liming.vote(q["id"])
    assert again["votes"] == 1 and again["changed"] is False
    with pytest.raises(RequestError) as err:
        await wang.vote(q["id"])
    assert err.value.code == "conflict"
    taken_back = await liming.vote(q["id"], up=False)
    assert taken_back["votes"] == 0

    with pytest.raises(RequestError) as err:
        await liming.answer(q["id"], "I know!")
    assert err.value.code == "forbidden"
    answered = await teacher.answer(q["id"], "因为除以零没有意义。")
    assert answered["status"] == "answered"
    ev = await liming.wait_for(
        lambda e: e["type"] == "question.updated" and e["data"]["status"] == "answered"
    )
    assert ev["data"]["answer"] == "因为除以零没有意义。" and ev["data"]["asker_id"] is None
    listed = await liming.request("question.list", {"class_id": srv.class_id})
    assert all(item["asker_name"] == "" for item in listed["questions"] if item["anonymous"])


async def test_sorting_withdraw_dismiss_reopen(server: Server) -> None:
    teacher = await server.client("li")
    wang = await server.client("wanghao")
    liming = await server.client("liming")
    zhang = await server.client("zhangwei")
    q1 = await wang.ask(server.class_id, "first")
    q2 = await liming.ask(server.class_id, "second")
    q3 = await zhang.ask(server.class_id, "third")
    await wang.vote(q3["id"])
    await liming.vote(q3["id"])
    await zhang.vote(q2["id"])
    listed = await teacher.request("question.list", {"class_id": server.class_id})
    assert [q["id"] for q in listed["questions"]] == [q3["id"], q2["id"], q1["id"]]

    await wang.request("question.edit", {"question_id": q1["id"], "body": "first, edited"})
    with pytest.raises(RequestError) as err:
        await liming.request("question.withdraw", {"question_id": q1["id"]})
    assert err.value.code == "forbidden"
    await wang.request("question.withdraw", {"question_id": q1["id"]})
    await teacher.request("question.dismiss", {"question_id": q2["id"]})
    await teacher.request("question.reopen", {"question_id": q2["id"]})
    await teacher.answer(q3["id"], live=True)
    listed = await teacher.request("question.list", {"class_id": server.class_id})
    by_id = {q["id"]: q for q in listed["questions"]}
    assert q1["id"] not in by_id  # withdrawn questions leave the board
    assert by_id[q2["id"]]["status"] == "open"
    assert by_id[q3["id"]]["status"] == "answered_live"


async def test_session_questions_stay_on_the_class_board_with_their_answers(
    server: Server,
) -> None:
    wang = await server.client("wanghao")
    liming = await server.client("liming")
    teacher = await server.client("li")
    start = await teacher.request(
        "session.start", {"class_id": server.class_id, "kind": "lesson", "title": "Q&A"}
    )
    sid = start["session"]["id"]
    q_open = await wang.ask(server.class_id, "still open", session_id=sid)
    q_done = await wang.ask(server.class_id, "answered", session_id=sid)
    q_gone = await wang.ask(server.class_id, "off topic", session_id=sid)
    await teacher.answer(q_done["id"], "分数的分母不能为零")
    await teacher.request("question.dismiss", {"question_id": q_gone["id"]})
    board = await wang.request("question.list", {"class_id": server.class_id})
    assert board["questions"] == []
    await teacher.request("session.end", {"session_id": sid})
    # A classmate looks back after the lesson: the open question, and the answered one with the
    # teacher's written answer, marked answered; the dismissed one stays with the lesson.
    board = await liming.request("question.list", {"class_id": server.class_id})
    by_id = {q["id"]: q for q in board["questions"]}
    assert sorted(by_id) == sorted([q_open["id"], q_done["id"]])
    assert by_id[q_done["id"]]["status"] == "answered"
    assert by_id[q_done["id"]]["answer"] == "分数的分母不能为零"
    assert by_id[q_done["id"]]["answered_by_name"] == "李老师 Ms. Li"
    assert by_id[q_open["id"]]["status"] == "open"
    ev = await teacher.wait_for(
        lambda e: e["stream"] == f"qa:{server.class_id}" and e["data"].get("id") == q_open["id"]
    )
    assert ev["data"]["session_id"] is None


async def test_guardians_are_not_in_class_qa(server: Server) -> None:
    mom = await server.client("wang_mom")
    with pytest.raises(RequestError) as err:
        await mom.ask(server.class_id, "can parents ask?")
    assert err.value.code == "forbidden"


async def test_a_status_or_kind_not_in_the_rules_is_refused(server: Server) -> None:
    """The schemas take their enumerations from the domain's: an unknown value is a clear
    bad_request, never an empty list."""
    teacher = await server.client("li")
    with pytest.raises(RequestError) as err:
        await teacher.request("question.list", {"class_id": server.class_id, "status": "bogus"})
    assert err.value.code == "bad_request" and "status" in err.value.message
    listed = await teacher.request(
        "question.list", {"class_id": server.class_id, "status": "answered_live"}
    )
    assert listed["questions"] == []
    with pytest.raises(RequestError) as err:
        await teacher.request(
            "notice.publish",
            {
                "class_id": server.class_id,
                "client_id": "n-x",
                "audience": "everyone",
                "kind": "info",
                "title": "t",
            },
        )
    assert err.value.code == "bad_request" and "audience" in err.value.message
