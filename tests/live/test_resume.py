"""A dropped Socket.IO connection does not stop the media: coming back, a participant resumes.

The viewer's Socket.IO connection goes through a TCP proxy of the test's own, which is cut (as a
Wi-Fi blip, a load balancer restarting or the node holding the connection draining would cut it)
and restored. Media never passed through that connection: the viewer keeps decoding the teacher
while it is down, and when it comes back it joins with ``resume`` and keeps its peer
connections (no new negotiation, no freeze). A student put on stage while the viewer was away
reaches it too: the offer it missed is sent again on resuming.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.homeroom import HomeroomClient
from clients.live import LiveParticipant
from realtime.demo import DEMO_PASSWORD
from realtime.transport.rest import LIVE
from tests.conftest import free_port, make_settings, start_server, stop_server
from tests.live.helpers import Watch, advancing, eventually
from tests.media.peers import CounterVideoTrack, ToneAudioTrack
from tests.tcpproxy import TcpProxy


@pytest.mark.timeout(120)
async def test_a_viewer_whose_connection_drops_keeps_watching_and_resumes(
    tmp_path: Path,
) -> None:
    srv = await start_server(
        make_settings(tmp_path, ice_host_addresses="127.0.0.1", session_grace_s=30)
    )
    proxy = TcpProxy("127.0.0.1", srv.settings.port, free_port())
    await proxy.start()
    viewer: LiveParticipant | None = None
    watch = Watch()
    try:
        teacher = await srv.client("li")
        sid = (
            await teacher.request(
                "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "科学"}
            )
        )["session"]["id"]
        host = LiveParticipant(teacher, sid)
        await host.join()
        await host.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
        student = LiveParticipant(await srv.client("liming"), sid)
        await student.join()

        client = HomeroomClient(f"http://127.0.0.1:{proxy.port}")
        await client.login("wanghao", DEMO_PASSWORD)
        await client.connect()
        viewer = LiveParticipant(client, sid)
        watch.attach(viewer)
        await viewer.join()
        await viewer.subscribe()
        li, liming, wang = srv.uid("li"), srv.uid("liming"), srv.uid("wanghao")
        await eventually(lambda: advancing(watch.video_from(li)), 15, "the viewer watching")
        rt = srv.app[LIVE].runtimes[sid]
        leg = rt.subscribers[wang]

        # The connection drops; the server hears of it (the viewer is listed as away).
        await proxy.cut()
        await eventually(
            lambda: not rt.session.participants[wang].connected, 10, "the server seeing it drop"
        )
        # Its media goes on meanwhile.
        seen = len(watch.video_from(li))
        await eventually(
            lambda: len(watch.video_from(li)) >= seen + 30, 10, "frames while disconnected"
        )
        # A student goes on stage while the viewer is away: the offer for his camera is
        # made to a connection that is not there.
        await teacher.request("stage.invite", {"session_id": sid, "user_id": liming})
        await eventually(
            lambda: any(n == "stage.invited" for n, _ in student.notices), 10, "the invitation"
        )
        await student.client.request("stage.accept", {"session_id": sid})
        await student.publish({CounterVideoTrack(): "camera"})
        await eventually(lambda: leg.outstanding() is not None, 10, "the offer made meanwhile")
        assert viewer.resumes == 0 and viewer.rejoins == 0

        await proxy.restore()
        await eventually(lambda: viewer is not None and viewer.resumes == 1, 20, "the resume")
        assert viewer.rejoins == 0  # nothing started over
        assert rt.subscribers[wang] is leg  # the same peer connection on the server
        assert rt.session.participants[wang].connected
        # The missed offer came again: the viewer decodes the student on stage, and still
        # the teacher, on the same peer connection.
        await eventually(
            lambda: advancing(watch.video_from(liming)), 15, "the student on stage reaching it"
        )
        await eventually(lambda: advancing(watch.video_from(li)), 5, "the teacher still")
        assert leg.outstanding() is None
    finally:
        watch.stop()
        if viewer is not None:
            await viewer.close()
            await viewer.client.close()
        await proxy.close()
        await stop_server(srv)
