"""A live lesson end to end: the teacher streams, students watch, a student goes on stage."""

from __future__ import annotations

import asyncio

import pytest

from clients.homeroom import RequestError
from clients.live import LiveParticipant
from media.internals.nack import _RECEIVER_NACK_GENERATOR, RetryingNackGenerator
from tests.conftest import Server
from tests.live.helpers import Watch, advancing, eventually
from tests.media.peers import CounterVideoTrack, ToneAudioTrack


@pytest.mark.timeout(90)
async def test_lesson_stream_hands_and_stage(live_server: Server) -> None:
    srv = live_server
    teacher = await srv.client("li")
    wang_c = await srv.client("wanghao")
    start = await teacher.request(
        "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "数学：分数"}
    )
    sid = start["session"]["id"]

    # Members of the class see the lesson start in their class stream.
    ev = await wang_c.wait_for(lambda e: e["type"] == "session.started")
    assert ev["data"]["id"] == sid

    host = LiveParticipant(teacher, sid)
    await host.join()
    camera = CounterVideoTrack()
    ack = await host.publish({camera: "camera", ToneAudioTrack(): "microphone"})
    assert {t["source"] for t in ack["published"]} == {"camera", "microphone"}

    watches = {}
    students = {}
    for name in ("wanghao", "liming", "zhangwei"):
        c = wang_c if name == "wanghao" else await srv.client(name)
        p = LiveParticipant(c, sid)
        w = Watch()
        w.attach(p)
        await p.join()
        await p.subscribe()
        students[name] = p
        watches[name] = w
    host_id = srv.uid("li")
    for name, w in watches.items():
        await eventually(
            lambda w=w: advancing(w.video_from(host_id)),
            10,
            f"{name} decoding the teacher's camera",
        )
        await eventually(
            lambda w=w: w.audio_frames.get(host_id, 0) > 10, 5, f"{name} hearing the teacher"
        )

    # The client's video receivers ask again for a lost retransmission (media.internals.nack).
    pc = students["liming"].subscribe_pc
    assert pc is not None
    generators = [
        getattr(t.receiver, _RECEIVER_NACK_GENERATOR)
        for t in pc.getTransceivers()
        if t.kind == "video"
    ]
    assert generators and all(isinstance(g, RetryingNackGenerator) for g in generators)

    # A student without rights who publishes is not forwarded, and is told why.
    wang = students["wanghao"]
    refused = await wang.publish({CounterVideoTrack(): "camera"})
    assert refused["published"] == []
    assert "stage" in refused["rejected"][0]["reason"]

    # Hands: raise, the teacher sees the queue, invites; the student accepts.
    await wang.client.request("hand.raise", {"session_id": sid})
    await eventually(
        lambda: host.state.get("hands") == [f"user:{srv.uid('wanghao')}"],
        5,
        "the teacher seeing the raised hand",
    )
    with pytest.raises(RequestError) as err:
        await students["liming"].client.request(
            "stage.invite", {"session_id": sid, "user_id": srv.uid("zhangwei")}
        )
    assert err.value.code == "forbidden"
    await teacher.request("stage.invite", {"session_id": sid, "user_id": srv.uid("wanghao")})
    await eventually(
        lambda: any(n == "stage.invited" for n, _ in wang.notices), 5, "the invitation"
    )
    await wang.client.request("stage.accept", {"session_id": sid})
    assert host.state["hands"] == []
    wang_cam = CounterVideoTrack()
    on_stage = await wang.publish({wang_cam: "camera"})
    assert [t["source"] for t in on_stage["published"]] == ["camera"]

    # Everyone (the teacher included) now receives Wang Hao's camera.
    host_watch = Watch()
    host_watch.attach(host)
    await host.subscribe()
    wang_id = srv.uid("wanghao")
    await eventually(
        lambda: advancing(host_watch.video_from(wang_id)),
        10,
        "the teacher decoding the student on stage",
    )
    await eventually(
        lambda: advancing(watches["liming"].video_from(wang_id)),
        10,
        "a classmate decoding the student on stage",
    )

    # The teacher ends the stage turn: the student's video stops being forwarded.
    await teacher.request("stage.remove", {"session_id": sid, "user_id": wang_id})
    await eventually(
        lambda: any(n == "rtc.unpublished" for n, _ in wang.notices),
        5,
        "the student being told the camera stopped",
    )
    await asyncio.sleep(0.5)
    seen = len(host_watch.video_from(wang_id))
    await asyncio.sleep(1.0)
    assert len(host_watch.video_from(wang_id)) <= seen + 1

    # Stats for the host only.
    stats = await teacher.http("GET", f"/api/v1/sessions/{sid}/stats")
    cam = next(
        t
        for t in stats["tracks"].values()
        if t["source"] == "camera" and t["publisher_id"] == str(host_id)
    )
    assert cam["frames_forwarded"] > 0 and len(cam["subscribers"]) >= 3
    with pytest.raises(RequestError) as err:
        await students["liming"].client.http("GET", f"/api/v1/sessions/{sid}/stats")
    assert err.value.code == "forbidden"

    # The teacher ends the lesson; everyone is told.
    await teacher.request("session.end", {"session_id": sid})
    await eventually(
        lambda: any(n == "session.ended" for n, _ in wang.notices),
        5,
        "the student being told the lesson ended",
    )
    for w in (*watches.values(), host_watch):
        w.stop()
    for p in (*students.values(), host):
        await p.close()


@pytest.mark.timeout(60)
async def test_outsiders_cannot_join_and_session_questions_move_to_board(
    live_server: Server,
) -> None:
    srv = live_server
    teacher = await srv.client("li")
    sid = (
        await teacher.request(
            "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "科学"}
        )
    )["session"]["id"]
    outsider = await srv.client("xiaohong")  # a student of another class
    with pytest.raises(RequestError) as err:
        await outsider.request("session.join", {"session_id": sid})
    assert err.value.code == "forbidden"
    mom = await srv.client("wang_mom")
    with pytest.raises(RequestError) as err:
        await mom.request("session.join", {"session_id": sid})
    assert err.value.code == "forbidden"
    for payload in ({}, {"audio": True}):
        with pytest.raises(RequestError) as err:
            await outsider.request(
                "moderate.mute", {"session_id": sid, "user_id": srv.uid("li"), **payload}
            )
        assert err.value.code in ("bad_request", "forbidden", "not_found")

    wang = await srv.client("wanghao")
    joined = await wang.request("session.join", {"session_id": sid})
    assert joined["qa_streams"] == [f"qa:{srv.class_id}:s{sid}"]
    q_open = await wang.ask(srv.class_id, "live question", session_id=sid)
    q_done = await wang.ask(srv.class_id, "answered live", session_id=sid)
    await teacher.answer(q_done["id"], live=True)
    with pytest.raises(RequestError) as err:
        await wang.ask(srv.class_id, "wrong session", session_id=sid + 100)
    assert err.value.code == "not_found"
    await teacher.request("session.end", {"session_id": sid})
    await eventually(lambda: bool(wang.events), 1, "events")
    board = await wang.request("question.list", {"class_id": srv.class_id})
    statuses = {q["id"]: q["status"] for q in board["questions"]}
    assert statuses == {q_open["id"]: "open", q_done["id"]: "answered_live"}


@pytest.mark.timeout(60)
async def test_a_restart_ends_the_nodes_sessions_and_keeps_their_questions(tmp_path) -> None:
    from tests.conftest import make_settings, start_server, stop_server

    settings = make_settings(tmp_path, ice_host_addresses="127.0.0.1")
    srv = await start_server(settings)
    teacher = await srv.client("li")
    wang = await srv.client("wanghao")
    sid = (
        await teacher.request(
            "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "x"}
        )
    )["session"]["id"]
    q = await wang.ask(srv.class_id, "asked just before the crash", session_id=sid)
    cursors = dict(wang.cursors)
    class_id = srv.class_id
    await stop_server(srv)

    srv = await start_server(settings)  # same database, same node
    try:
        again = await srv.client("wanghao", connect=False)
        await again.login("wanghao", "demo1234")
        again.cursors.update(cursors)
        await again.connect()
        ended = await again.wait_for(lambda e: e["type"] == "session.ended")
        assert ended["data"]["id"] == sid and ended["data"]["reason"] == "server_restart"
        board = await again.request("question.list", {"class_id": class_id})
        assert [x["id"] for x in board["questions"]] == [q["id"]]
        with pytest.raises(RequestError) as err:
            await again.request("session.join", {"session_id": sid})
        assert err.value.code == "not_found"
    finally:
        await stop_server(srv)


@pytest.mark.timeout(60)
async def test_a_lesson_nobody_streams_in_ends_by_itself_and_the_class_is_told(tmp_path) -> None:
    """The idle end runs on a timer started while answering ``session.start``; its
    ``session.ended`` must still reach the class (events of a request are held until its ack,
    never those of a task that outlives it)."""
    from tests.conftest import make_settings, start_server, stop_server

    settings = make_settings(tmp_path, ice_host_addresses="127.0.0.1", session_idle_end_s=1)
    srv = await start_server(settings)
    try:
        teacher = await srv.client("li")
        wang = await srv.client("wanghao")
        start = await teacher.request(
            "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "自习 Study"}
        )
        sid = start["session"]["id"]
        ended = await wang.wait_for(
            lambda e: e["type"] == "session.ended" and e["data"]["id"] == sid, timeout=10
        )
        assert ended["data"]["reason"] == "idle"
        with pytest.raises(RequestError) as err:
            await wang.request("session.join", {"session_id": sid})
        assert err.value.code == "not_found"
    finally:
        await stop_server(srv)


@pytest.mark.timeout(60)
async def test_a_publish_leg_that_ends_by_itself_is_seen_by_everyone(live_server: Server) -> None:
    """Ms. Li's publish connection ends without her asking (her browser's connection failed,
    or the edge node it went through died) and she publishes nothing again: the students'
    people list no longer says she streams her camera and microphone."""
    srv = live_server
    teacher = await srv.client("li")
    start = await teacher.request(
        "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "语文"}
    )
    sid = start["session"]["id"]
    host = LiveParticipant(teacher, sid)
    await host.join()
    await host.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
    student = LiveParticipant(await srv.client("wanghao"), sid)
    await student.join()
    li = srv.uid("li")

    def publishing() -> list[str] | None:
        people = {p["user_id"]: p for p in student.state.get("participants", [])}
        return people[li]["publishing"] if li in people else None

    await eventually(lambda: publishing() == ["camera", "microphone"], 10, "her streams shown")
    assert host.publish_pc is not None
    await host.publish_pc.close()
    await eventually(lambda: publishing() == [], 10, "her streams shown as ended")
    # She is still in the lesson (her Socket.IO connection is up): only her media ended.
    people = {p["user_id"]: p for p in student.state["participants"]}
    assert people[li]["connected"] is True
    await student.close()
    await host.close()
