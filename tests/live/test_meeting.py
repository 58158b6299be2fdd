"""A parent meeting: lobby, admission, everyone sees everyone, host controls."""

from __future__ import annotations

import asyncio

import pytest

from clients.homeroom import RequestError
from clients.live import LiveParticipant
from tests.conftest import Server
from tests.live.helpers import Watch, advancing, eventually
from tests.media.peers import CounterVideoTrack


@pytest.mark.timeout(120)
async def test_meeting_lobby_grid_and_mute(live_server: Server) -> None:
    srv = live_server
    host_c = await srv.client("li")
    sid = (
        await host_c.request(
            "session.start", {"class_id": srv.class_id, "kind": "meeting", "title": "家长会"}
        )
    )["session"]["id"]
    host = LiveParticipant(host_c, sid)
    await host.join()

    guardians = {}
    for name in ("wang_mom", "li_mom", "zhang_mom"):
        p = LiveParticipant(await srv.client(name), sid)
        joined = await p.join()
        assert joined["you"]["in_lobby"] is True
        assert "participants" not in joined["session"]  # the lobby sees nothing yet
        guardians[name] = p
    # A student is not invited to a parent meeting.
    student = await srv.client("wanghao")
    with pytest.raises(RequestError) as err:
        await student.request("session.join", {"session_id": sid})
    assert err.value.code == "forbidden"
    # Nobody in the lobby may publish.
    with pytest.raises(RequestError) as err:
        await guardians["wang_mom"].publish({CounterVideoTrack(): "camera"})
    assert err.value.code == "forbidden"

    await eventually(lambda: len(host.state.get("lobby", [])) == 3, 5, "the host seeing the lobby")
    ack = await host_c.request(
        "lobby.admit", {"session_id": sid, "user_ids": [srv.uid("wang_mom")]}
    )
    assert ack["admitted"] == [srv.uid("wang_mom")]
    await host_c.request("lobby.decline", {"session_id": sid, "user_ids": [srv.uid("zhang_mom")]})

    def declined() -> bool:
        return any(d.get("status") == "declined" for _, d in guardians["zhang_mom"].notices)

    await eventually(declined, 5, "the decline")
    await host_c.request("lobby.admit", {"session_id": sid})  # everyone left: li_mom
    for name in ("wang_mom", "li_mom"):
        await eventually(
            lambda n=name: any(d.get("status") == "admitted" for _, d in guardians[n].notices),
            5,
            f"{name} admitted",
        )

    # Four participants: host + two guardians publish; all receive each other.
    members = {"li": host, "wang_mom": guardians["wang_mom"], "li_mom": guardians["li_mom"]}
    watches: dict[str, Watch] = {}
    for p in members.values():
        await p.publish({CounterVideoTrack(): "camera"})
    chen = LiveParticipant(await srv.client("chen"), sid)  # a co-teacher joins directly
    await chen.join()
    await chen.publish({CounterVideoTrack(): "camera"})
    members["chen"] = chen
    for name, p in members.items():
        w = Watch()
        w.attach(p)
        watches[name] = w
        await p.subscribe()
    publishers = ("li", "wang_mom", "li_mom", "chen")  # four people, each sees the other three
    for viewer, w in watches.items():
        for pub in publishers:
            if pub == viewer:
                continue
            await eventually(
                lambda w=w, pub=pub: advancing(w.video_from(srv.uid(pub))),
                15,
                f"{viewer} decoding {pub}",
            )

    # The host mutes a guardian's camera: forwarding stops and the guardian is told.
    mom_id = srv.uid("wang_mom")
    await host_c.request("moderate.mute", {"session_id": sid, "user_id": mom_id, "video": True})
    await eventually(
        lambda: any(n == "media.muted" for n, _ in guardians["wang_mom"].notices),
        5,
        "the guardian being told",
    )
    await asyncio.sleep(0.5)
    before = len(watches["li_mom"].video_from(mom_id))
    await asyncio.sleep(1.0)
    assert len(watches["li_mom"].video_from(mom_id)) <= before + 1
    # With unmuting locked the guardian cannot unmute; once unlocked they can.
    await host_c.request("moderate.lock", {"session_id": sid, "unmute_locked": True})
    with pytest.raises(RequestError) as err:
        await guardians["wang_mom"].client.request(
            "media.mute_self", {"session_id": sid, "video": False}
        )
    assert err.value.code == "forbidden"
    await host_c.request("moderate.lock", {"session_id": sid, "unmute_locked": False})
    await guardians["wang_mom"].client.request(
        "media.mute_self", {"session_id": sid, "video": False}
    )
    await eventually(
        lambda: len(watches["li_mom"].video_from(mom_id)) > before + 10,
        10,
        "forwarding resuming after unmute",
    )

    # Lock the meeting: a newcomer cannot even wait in the lobby.
    await host_c.request("moderate.lock", {"session_id": sid, "locked": True})
    with pytest.raises(RequestError) as err:
        await (await srv.client("liu_mom")).request("session.join", {"session_id": sid})
    assert err.value.code == "forbidden"
    # Remove someone; hand host rights to the other teacher.
    await host_c.request("moderate.remove", {"session_id": sid, "user_id": srv.uid("li_mom")})
    await eventually(
        lambda: any(n == "session.removed" for n, _ in guardians["li_mom"].notices),
        5,
        "removal notice",
    )
    with pytest.raises(RequestError) as err:
        await guardians["wang_mom"].client.request(
            "host.transfer", {"session_id": sid, "user_id": srv.uid("chen")}
        )
    assert err.value.code == "forbidden"
    ack = await host_c.request("host.transfer", {"session_id": sid, "user_id": srv.uid("chen")})
    assert ack["session"]["host_id"] == srv.uid("chen")
    # The hand-over is stored and announced in the guardians' chat like the start and the end.
    handed = await guardians["wang_mom"].client.wait_for(lambda e: e["type"] == "session.host")
    assert handed["data"]["id"] == sid and handed["data"]["host_id"] == srv.uid("chen")
    await chen.client.request("session.end", {"session_id": sid})
    for w in watches.values():
        w.stop()
    for p in (*members.values(), *guardians.values()):
        await p.close()
