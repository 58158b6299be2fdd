"""A dual-teacher lesson: a master teacher streams into linked village classrooms."""

from __future__ import annotations

import pytest

from clients.homeroom import RequestError
from clients.live import LiveParticipant
from tests.conftest import Server
from tests.live.helpers import Watch, advancing, eventually
from tests.media.peers import CounterVideoTrack


@pytest.mark.timeout(120)
async def test_dual_lesson_classrooms_stage_hands_and_questions(live_server: Server) -> None:
    srv = live_server
    linked = srv.demo["linked_class_ids"]
    master_c = await srv.client("chen")
    with pytest.raises(RequestError) as err:
        await (await srv.client("wu")).request(
            "session.start",
            {
                "class_id": srv.class_id,
                "kind": "dual_lesson",
                "title": "x",
                "linked_class_ids": linked,
            },
        )
    assert err.value.code == "forbidden"  # a local teacher cannot start the host class's lesson
    started = (
        await master_c.request(
            "session.start",
            {
                "class_id": srv.class_id,
                "kind": "dual_lesson",
                "title": "English",
                "linked_class_ids": linked,
            },
        )
    )["session"]
    sid = started["id"]
    # The classrooms are only asked: each joins when its own teacher does.
    assert [c["class_id"] for c in started["pending_classrooms"]] == linked

    master = LiveParticipant(master_c, sid)
    await master.join()
    await master.publish({CounterVideoTrack(): "camera"})
    with pytest.raises(RequestError) as err:
        await (await srv.client("xiaohong")).request("session.join", {"session_id": sid})
    assert err.value.code == "forbidden"  # before Ms. Wu brings her classroom in
    local = {}
    for name in ("wu", "zhou"):
        p = LiveParticipant(await srv.client(name), sid)
        you = (await p.join())["you"]
        assert you["role"] == "local_teacher"
        await p.publish({CounterVideoTrack(): "camera"})  # the classroom camera
        local[name] = p
    xiaohong = LiveParticipant(await srv.client("xiaohong"), sid)  # a student of classroom A
    assert (await xiaohong.join())["you"]["class_id"] == linked[0]

    watches = {}
    for name, p in {"chen": master, **local, "xiaohong": xiaohong}.items():
        w = Watch()
        w.attach(p)
        watches[name] = w
        await p.subscribe()
    chen_id, wu_id, zhou_id = srv.uid("chen"), srv.uid("wu"), srv.uid("zhou")
    # The master teacher sees every classroom; every classroom sees the master teacher.
    for room in (wu_id, zhou_id):
        await eventually(
            lambda r=room: advancing(watches["chen"].video_from(r)),
            15,
            f"master decoding classroom {room}",
        )
    for name in ("wu", "zhou", "xiaohong"):
        await eventually(
            lambda n=name: advancing(watches[n].video_from(chen_id)),
            15,
            f"{name} decoding the master teacher",
        )
    # Classrooms do not see each other until one is put on stage.
    assert watches["zhou"].video_from(wu_id) == []

    # A classroom raises its hand as a classroom; the master puts it on stage.
    with pytest.raises(RequestError) as err:
        await xiaohong.client.request("hand.raise", {"session_id": sid, "classroom": True})
    assert err.value.code == "forbidden"
    await local["wu"].client.request("hand.raise", {"session_id": sid, "classroom": True})
    await eventually(
        lambda: master.state.get("hands") == [f"classroom:{linked[0]}"], 5, "the classroom's hand"
    )
    await master_c.request("classroom.stage", {"session_id": sid, "class_id": linked[0]})
    await eventually(
        lambda: advancing(watches["zhou"].video_from(wu_id)),
        15,
        "the other classroom seeing the classroom on stage",
    )
    assert master.state["hands"] == []

    # Students raise hands; a local teacher lowers only their own classroom's.
    xiaoming = LiveParticipant(await srv.client("xiaoming"), sid)  # classroom B
    await xiaoming.join()
    await xiaohong.client.request("hand.raise", {"session_id": sid})
    await xiaoming.client.request("hand.raise", {"session_id": sid})
    with pytest.raises(RequestError) as err:
        await local["wu"].client.request(
            "hand.lower", {"session_id": sid, "hand": f"user:{srv.uid('xiaoming')}"}
        )
    assert err.value.code == "forbidden"
    await local["wu"].client.request(
        "hand.lower", {"session_id": sid, "hand": f"user:{srv.uid('xiaohong')}"}
    )

    # A question asked in a classroom carries that classroom to the master teacher.
    q = await xiaohong.client.ask(linked[0], "How do you say 分数?", session_id=sid)
    ev = await master_c.wait_for(lambda e: e["type"] == "question.asked")
    assert ev["stream"] == f"qa:{linked[0]}:s{sid}" and ev["data"]["class_id"] == linked[0]
    assert ev["data"]["asker_id"] == srv.uid("xiaohong")
    # The local teacher of the other classroom cannot answer it; the master and wu can.
    with pytest.raises(RequestError) as err:
        await local["zhou"].client.answer(q["id"], "no")
    assert err.value.code == "forbidden"
    listed = await master_c.request("question.list", {"class_id": linked[0], "session_id": sid})
    assert [x["id"] for x in listed["questions"]] == [q["id"]]
    answered = await master_c.answer(q["id"], "fraction")
    assert answered["status"] == "answered"

    await master_c.request("session.end", {"session_id": sid})
    for w in watches.values():
        w.stop()
    for p in (master, *local.values(), xiaohong, xiaoming):
        await p.close()
