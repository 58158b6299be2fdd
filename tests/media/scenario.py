"""What the media scenarios (``tests/media/*_scenario.py``) share: a ``main()`` that parses the
scenario's options, runs it and prints ``RESULT <json>`` last (what
``tests.chromium.run_in_loopback_namespace`` reads), and the publisher of a camera in three
layers and a tone.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from clients.simulcast import SimulcastCamera
from media.internals import route_keyframe_requests
from media.router import MediaRouter
from media.simulcast import LayeredTrack
from signaling import PublishSession
from tests.chromium import print_result
from tests.media.peers import TextureVideoTrack, VoiceAudioTrack, client_configuration

Scenario = Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]


def scenario_main(run: Scenario, parser: argparse.ArgumentParser) -> int:
    """Parse the options with ``parser``, run ``run(options)`` and print its result."""
    args = parser.parse_args()
    print_result(asyncio.run(run(args)))
    return 0


@dataclass
class LayeredPublisher:
    """An aiortc publisher (``SimulcastCamera``: three m-lines, one RTX payload type, as the
    web app's layers; then a tone) published through ``session``."""

    session: PublishSession
    pc: RTCPeerConnection
    camera: SimulcastCamera
    mids: list[str]  # the camera's three layers, lowest first, then the microphone
    track_ids: list[str]  # camera and microphone
    camera_id: str

    def layered(self, router: MediaRouter) -> LayeredTrack:
        """The camera as ``router`` forwards it."""
        track = router.get(self.camera_id)
        assert isinstance(track, LayeredTrack), track
        return track

    async def close(self) -> None:
        self.camera.stop()
        await self.pc.close()
        await self.session.close()


async def publish_layers(router: MediaRouter, fps: int) -> LayeredPublisher:
    """Ms. Li ("teacher") publishes a 640x360 camera in three layers and a browser-like voice
    (``VoiceAudioTrack``) on ``router``."""
    session = PublishSession("teacher", router)
    pc = RTCPeerConnection(client_configuration())
    camera = SimulcastCamera(TextureVideoTrack(640, 360, fps))
    for track in camera.tracks:
        sender = pc.addTransceiver(track, direction="sendonly").sender
        route_keyframe_requests(sender, track.request_keyframe)
    pc.addTransceiver(VoiceAudioTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    mids = [str(t.mid) for t in pc.getTransceivers()]
    sources = {m: "camera" for m in mids[:3]} | {mids[3]: "microphone"}
    layers = {m: i for i, m in enumerate(mids[:3])}
    answer = await session.apply_offer(pc.localDescription.sdp, sources, layers)
    await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    track_ids = sorted({t.track_id for t in answer.published})
    assert len(track_ids) == 2, answer
    camera_id = next(t.track_id for t in router.tracks() if t.source == "camera")
    return LayeredPublisher(session, pc, camera, mids, track_ids, camera_id)
