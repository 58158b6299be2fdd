"""A camera in layers through the real server: ``rtc.publish`` with ``layers``, one published
track, and a viewer told (``media.layer``) which layer it receives as it climbs."""

from __future__ import annotations

import asyncio
from typing import Any

import av
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from clients.live import LiveParticipant
from clients.simulcast import LayerEncoding, SimulcastCamera
from realtime.transport.rest import LIVE
from tests.conftest import Server
from tests.live.helpers import eventually
from tests.media.peers import TextureVideoTrack, ToneAudioTrack

LAYERS = (
    LayerEncoding(160, 90, 100_000),
    LayerEncoding(320, 180, 300_000),
    LayerEncoding(640, 360, 800_000),
)


@pytest.mark.timeout(90)
async def test_a_camera_in_layers_is_one_track_and_the_viewer_is_told_its_layer(
    live_server: Server,
) -> None:
    srv = live_server
    teacher = await srv.client("li")
    sid = (
        await teacher.request(
            "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "Layers"}
        )
    )["session"]["id"]
    host = LiveParticipant(teacher, sid)
    await host.join()
    camera = SimulcastCamera(TextureVideoTrack(640, 360, 10), LAYERS)
    ack = await host.publish_layers(camera, others={ToneAudioTrack(): "microphone"})
    assert not ack["rejected"], ack
    camera_ids = {t["track_id"] for t in ack["published"] if t["source"] == "camera"}
    assert len(camera_ids) == 1 and len(ack["published"]) == 4  # three m-lines, one track

    student = LiveParticipant(await srv.client("wanghao"), sid)
    await student.join()
    widths: list[int] = []
    audio: list[int] = []
    tasks: list[asyncio.Task[None]] = []

    async def consume(track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    widths.append(frame.width)
                else:
                    audio.append(1)
        except MediaStreamError:
            pass

    def on_track(track: MediaStreamTrack, _info: dict[str, Any]) -> None:
        tasks.append(asyncio.ensure_future(consume(track)))

    student.on_track = on_track
    await student.subscribe()
    # One camera track offered, not three.
    await eventually(lambda: len(student.tracks_by_mid) == 2, 10, "the subscribe offer")
    assert {t["track_id"] for t in student.tracks_by_mid.values()} >= camera_ids

    # The viewer starts on the lowest layer and, its link being open, climbs: it decodes a
    # bigger picture and is told each layer it gets.
    await eventually(lambda: bool(widths), 20, "the first frame")
    assert widths[0] == 160
    await eventually(lambda: max(widths) > 160, 30, "a higher layer decoded")
    layer_notes = [d for name, d in student.notices if name == "media.layer"]
    assert layer_notes, student.notices
    assert all(d["track_id"] in camera_ids and d["session_id"] == sid for d in layer_notes)
    assert layer_notes[0]["layer"] >= 1 and not layer_notes[0]["video_paused"]
    assert audio, "no sound"

    # The host's statistics show the layer each viewer receives.
    stats = srv.app[LIVE].runtimes[sid].stats()
    viewer = stats["tracks"][next(iter(camera_ids))]["subscribers"][str(srv.uid("wanghao"))]
    assert viewer["layer"] >= 1 and viewer["layer_switches"] >= 1
    # ...and so does its participant list (the links it polls).
    link = stats["links"][str(srv.uid("wanghao"))]["subscribe"]
    assert link["layers"] == {next(iter(camera_ids)): viewer["layer"]}

    await teacher.request("session.end", {"session_id": sid})
    for task in tasks:
        task.cancel()
    camera.stop()
    for p in (host, student):
        await p.close()
