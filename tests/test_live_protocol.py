"""The live session's requests as plain data: what each one tells whom, and what media follows.

No server, no sockets: the rules (realtime/domain/live.py) and their effects
(realtime/domain/live_protocol.py) are called directly, as websockets tests its protocol.
"""

from __future__ import annotations

import json

import msgspec
import pytest

from realtime.domain import live_protocol as p
from realtime.domain.live import LiveSession, SessionKind
from realtime.domain.live_protocol import (
    DropMedia,
    Effect,
    Follow,
    SyncMedia,
    Tell,
    TellSession,
    Unfollow,
)
from realtime.errors import HomeroomError
from realtime.live import schemas as s

HOST, STUDENT, OTHER = 1, 2, 3


def lesson() -> LiveSession:
    session = LiveSession(7, SessionKind.LESSON, 10, HOST, "t", {10: "5-2"})
    p.join(session, HOST, "Ms. Li", {10: {"head_teacher"}}, new_connection=False)
    for uid in (STUDENT, OTHER):
        p.join(session, uid, f"s{uid}", {10: {"student"}}, new_connection=False)
    return session


def told(effects: list[Effect], event: str) -> list[int]:
    return [e.user_id for e in effects if isinstance(e, Tell) and e.event == event]


def test_joining_follows_the_session_and_everyone_sees_the_new_state() -> None:
    session = LiveSession(7, SessionKind.LESSON, 10, HOST, "t", {10: "5-2"})
    out = p.join(session, STUDENT, "kid", {10: {"student"}}, new_connection=False)
    assert out.effects[0] == Follow(STUDENT, ["qa:10:s7"])
    assert out.effects[1] == TellSession("session.state", session.view())
    assert out.reply["you"]["role"] == "student" and out.reply["qa_streams"] == ["qa:10:s7"]
    # The same person again from another connection: their old media is dropped first.
    again = p.join(session, STUDENT, "kid", {10: {"student"}}, new_connection=True)
    assert again.effects[0] == DropMedia(STUDENT)
    with pytest.raises(HomeroomError) as err:
        p.join(session, 99, "stranger", {}, new_connection=False)
    assert err.value.code == "forbidden"


def test_the_lobby_is_told_apart_and_follows_only_once_admitted() -> None:
    session = LiveSession(8, SessionKind.MEETING, 10, HOST, "m", {10: "5-2"})
    p.join(session, HOST, "host", {10: {"teacher"}}, new_connection=False)
    out = p.join(session, 5, "mom", {10: {"guardian"}}, new_connection=False)
    assert not any(isinstance(e, Follow) for e in out.effects)
    assert told(out.effects, "session.lobby") == [5]
    assert "participants" not in out.reply["session"]  # the lobby sees only the summary
    with pytest.raises(HomeroomError) as err:
        p.raise_hand(session, 5, s.Hand(session_id=8))
    assert err.value.code == "forbidden"  # nothing but waiting from the lobby
    p.join(session, 6, "dad", {10: {"guardian"}}, new_connection=False)
    admitted = p.admit(session, HOST, s.Admit(session_id=8, user_ids=[5]))
    assert Follow(5, []) in admitted.effects and told(admitted.effects, "session.lobby") == [5, 6]
    assert admitted.reply["admitted"] == [5]
    declined = p.decline_lobby(session, HOST, s.Decline(session_id=8, user_ids=[6]))
    assert declined.effects[:2] == [
        Tell(6, "session.lobby", {"session_id": 8, "status": "declined"}),
        Unfollow(6),
    ]
    assert 6 not in session.participants


def test_a_removal_happens_once_and_lets_the_person_go() -> None:
    session = lesson()
    session.raise_hand("user:2")
    out = p.remove(session, HOST, s.Person(session_id=7, user_id=STUDENT))
    assert out.effects[:4] == [
        Tell(STUDENT, "session.removed", {"session_id": 7}),
        DropMedia(STUDENT),
        Unfollow(STUDENT),
        SyncMedia(),
    ]
    assert STUDENT not in session.participants and session.hands == []
    assert [x["user_id"] for x in out.reply["session"]["participants"]] == [HOST, OTHER]
    with pytest.raises(HomeroomError) as err:  # a student cannot remove anyone
        p.remove(session, OTHER, s.Person(session_id=7, user_id=HOST))
    assert err.value.code == "forbidden"


def test_a_host_mute_tells_the_muted_and_media_follows() -> None:
    session = lesson()
    out = p.mute(session, HOST, s.Mute(session_id=7, user_id=STUDENT, audio=True))
    assert out.effects[0] == Tell(
        STUDENT, "media.muted", {"session_id": 7, "by": HOST, "muted_by_host": ["audio"]}
    )
    assert SyncMedia() in out.effects
    assert told(p.mute_all(session, HOST, s.SessionRef(session_id=7)).effects, "media.muted") == [
        STUDENT,
        OTHER,
    ]
    with pytest.raises(HomeroomError) as err:
        p.mute(session, HOST, s.Mute(session_id=7, user_id=STUDENT))
    assert err.value.code == "bad_request"


def test_a_dropped_connection_keeps_the_place_and_the_end_lets_everyone_go() -> None:
    session = lesson()
    out = p.disconnected(session, STUDENT)
    # Away, not gone: the media goes on (they may resume with the same peer connections) and
    # they still receive the teacher.
    assert not any(isinstance(e, DropMedia) for e in out.effects)
    assert not session.participants[STUDENT].connected
    assert STUDENT in session.receivers(HOST)
    back = p.join(session, STUDENT, "kid", {10: {"student"}}, new_connection=False)
    assert session.participants[STUDENT].connected
    assert not any(isinstance(e, DropMedia) for e in back.effects)
    end = p.ended(session, "ended_by_host")
    assert session.ended
    assert end.effects[0] == TellSession(
        "session.ended", {"session_id": 7, "reason": "ended_by_host"}
    )
    assert {e.user_id for e in end.effects if isinstance(e, Unfollow)} == {HOST, STUDENT, OTHER}


def test_effects_are_plain_data_that_cross_a_bus_as_msgpack() -> None:
    session = lesson()
    out = p.remove(session, HOST, s.Person(session_id=7, user_id=STUDENT))
    wire = msgspec.msgpack.encode(out)
    assert msgspec.msgpack.decode(wire, type=p.Outcome) == out
    request = s.Hand(session_id=7)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(request), type=s.Hand) == request
    for event, (schema, rule) in p.RULES.items():
        assert callable(rule) and issubclass(schema, msgspec.Struct), event


def test_a_classroom_asked_to_link_is_not_in_the_lesson_until_its_teacher_accepts() -> None:
    session = LiveSession(
        9, SessionKind.DUAL_LESSON, 10, HOST, "d", {10: "host"}, pending_links={20: "A", 30: "B"}
    )
    assert [c["class_id"] for c in session.summary()["pending_classrooms"]] == [20, 30]  # type: ignore[index, union-attr]
    with pytest.raises(HomeroomError) as err:  # its students cannot join yet
        p.join(session, 22, "kid", {20: {"student"}}, new_connection=False)
    assert err.value.code == "forbidden"
    session.accept_link(20)
    assert session.classrooms == {10: "host", 20: "A"} and session.pending_links == {30: "B"}
    assert (
        p.join(session, 22, "kid", {20: {"student"}}, new_connection=False).reply["you"]["class_id"]
        == 20
    )
    session.decline_link(30)
    assert session.pending_links == {}
    with pytest.raises(HomeroomError) as err:
        session.accept_link(20)
    assert err.value.code == "conflict"  # already linked
    with pytest.raises(HomeroomError) as err:
        session.accept_link(30)
    assert err.value.code == "not_found"  # declined: no request any more


def test_the_media_plan_says_which_tracks_go_where() -> None:
    session = lesson()
    tracks = [
        p.Track("host-cam", HOST, "camera", paused=False),
        p.Track("host-mic", HOST, "microphone", paused=False),
        p.Track("kid-cam", STUDENT, "camera", paused=False),  # not on stage: refused
    ]
    plan = p.media_plan(session, tracks, [HOST, STUDENT, OTHER])
    assert plan.unpublish == [
        p.Unpublish("kid-cam", STUDENT, "camera", "students publish only when invited on stage")
    ]
    assert plan.receive == {
        HOST: [],
        STUDENT: ["host-cam", "host-mic"],
        OTHER: ["host-cam", "host-mic"],
    }
    assert plan.pause == [] and plan.resume == []
    # On stage, the student reaches everyone else; a host mute pauses without renegotiating.
    session.invite(HOST, STUDENT)
    session.accept(STUDENT)
    session.host_mute(HOST, STUDENT, {"video"}, True)
    plan = p.media_plan(session, tracks, [HOST, OTHER])
    assert plan.unpublish == [] and plan.pause == ["kid-cam"]
    assert plan.receive == {HOST: ["kid-cam"], OTHER: ["host-cam", "host-mic", "kid-cam"]}
    session.host_mute(HOST, STUDENT, {"video"}, False)
    paused = [p.Track("kid-cam", STUDENT, "camera", paused=True)]
    assert p.media_plan(session, paused, []).resume == ["kid-cam"]
    # Someone whose connection dropped still receives (within the grace period: the media
    # goes on, to resume); someone who left receives nothing.
    p.disconnected(session, OTHER)
    assert p.media_plan(session, tracks, [OTHER]).receive == {
        OTHER: ["host-cam", "host-mic", "kid-cam"]
    }
    p.leave(session, OTHER)
    assert p.media_plan(session, tracks, [OTHER]).receive == {OTHER: []}


def moved(session: LiveSession) -> LiveSession:
    """The session as its next node rebuilds it: from its row, and what it kept (as JSON)."""
    kept = json.loads(json.dumps(session.kept()))
    fresh = LiveSession(
        session.id, session.kind, session.class_id, session.host_id, "t", dict(session.classrooms)
    )
    fresh.restore(kept)
    return fresh


def test_a_moved_lesson_keeps_hands_in_order_the_stage_and_mutes_and_forgets_the_rest() -> None:
    session = lesson()
    for uid in (4, 5):
        p.join(session, uid, f"s{uid}", {10: {"student"}}, new_connection=False)
    p.raise_hand(session, OTHER, s.Hand(session_id=7))
    p.raise_hand(session, STUDENT, s.Hand(session_id=7))
    p.stage_places(session, HOST, s.StagePlaces(session_id=7, places=3))
    p.invite(session, HOST, s.Person(session_id=7, user_id=4))
    p.accept(session, 4, s.SessionRef(session_id=7))
    p.invite(session, HOST, s.Person(session_id=7, user_id=5))  # invited, not yet answered
    p.mute(session, HOST, s.Mute(session_id=7, user_id=OTHER, audio=True))
    p.mute_self(session, STUDENT, s.SelfMute(session_id=7, video=True))
    p.lock(session, HOST, s.Lock(session_id=7, unmute_locked=True))
    session.participants[4].publishing.add("camera")

    after = moved(session)
    assert after.hands == [f"user:{OTHER}", f"user:{STUDENT}"]
    people = after.participants
    # Only people whose place is more than "joined" are kept: the host joins again as new.
    assert sorted(people) == [STUDENT, OTHER, 4, 5]
    assert not any(x.connected for x in people.values())  # away until they join again
    assert people[4].on_stage and people[5].invited and not people[5].on_stage
    assert people[4].publishing == set()  # media is never kept: he publishes again
    assert people[OTHER].muted_by_host == {"audio"} and people[STUDENT].self_muted == {"video"}
    assert after.stage_places == 3 and after.unmute_locked and not after.locked
    # Joining again takes the kept place back: on stage, he may publish at once.
    p.join(after, 4, "s4", {10: {"student"}}, new_connection=False)
    assert people[4].connected and after.publish_refusal(4, "camera") is None
    assert after.publish_refusal(5, "camera") is not None  # invited only
    # The stage's places count the kept ones.
    p.accept(after, 5, s.SessionRef(session_id=7))
    assert after.on_stage() == [4, 5]
    # The kept state is small: the people in it, each once.
    assert len(json.dumps(after.kept())) < 400


def test_a_moved_meeting_keeps_who_waits_and_who_was_admitted() -> None:
    session = LiveSession(8, SessionKind.MEETING, 10, HOST, "m", {10: "5-2"})
    p.join(session, HOST, "host", {10: {"teacher"}}, new_connection=False)
    for uid in (5, 6):
        p.join(session, uid, f"mom{uid}", {10: {"guardian"}}, new_connection=False)
    p.admit(session, HOST, s.Admit(session_id=8, user_ids=[5]))
    p.lock(session, HOST, s.Lock(session_id=8, locked=True))
    after = moved(session)
    assert after.lobby() == [6] and not after.participants[5].in_lobby
    # Back from a locked meeting's lobby: the admitted one is in, the waiting one still waits.
    out = p.join(after, 5, "mom5", {10: {"guardian"}}, new_connection=False)
    assert out.reply["you"]["in_lobby"] is False and "participants" in out.reply["session"]
    out = p.join(after, 6, "mom6", {10: {"guardian"}}, new_connection=False)
    assert out.reply["you"]["in_lobby"] is True


def test_what_a_move_keeps_is_checked_when_taken_back() -> None:
    session = lesson()
    p.raise_hand(session, STUDENT, s.Hand(session_id=7))
    kept = json.loads(json.dumps(session.kept()))
    kept["hands"] += [f"user:{STUDENT}", "user:999", "classroom:77", "bogus"]
    kept["people"].append([8, "x", "emperor", 10, 0, [], []])  # no such role
    kept["stage_places"] = 10_000
    kept["stage_classroom"] = 77  # not one of the lesson's classrooms
    fresh = LiveSession(7, SessionKind.LESSON, 10, HOST, "t", {10: "5-2"})
    assert fresh.restore(kept) == [STUDENT]
    assert fresh.hands == [f"user:{STUDENT}"]
    assert fresh.stage_places == 16 and fresh.stage_classroom is None
    # A newer node's format, or nothing stored: the session starts as rebuilt from its row.
    assert (
        LiveSession(7, SessionKind.LESSON, 10, HOST, "t", {10: "5-2"}).restore({**kept, "v": 99})
        == []
    )
    assert LiveSession(7, SessionKind.LESSON, 10, HOST, "t", {10: "5-2"}).restore(None) == []


def test_a_change_that_could_not_be_stored_is_undone_whole() -> None:
    session = lesson()
    p.raise_hand(session, OTHER, s.Hand(session_id=7))
    session.participants[STUDENT].publishing.add("camera")
    before = session.kept()
    saved = session.save()
    p.raise_hand(session, STUDENT, s.Hand(session_id=7))
    p.remove(session, HOST, s.Person(session_id=7, user_id=OTHER))
    p.join(session, 4, "s4", {10: {"student"}}, new_connection=False)
    session.participants[STUDENT].connected = False  # meanwhile, not part of the change
    session.undo(saved)
    assert session.kept() == before
    assert sorted(session.participants) == [HOST, STUDENT, OTHER]
    assert session.hands == [f"user:{OTHER}"]
    # What is not the change's stays as it is now: the connection, the media.
    assert session.participants[STUDENT].connected is False
    assert session.participants[STUDENT].publishing == {"camera"}
