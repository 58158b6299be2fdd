"""The subscribe leg under interleaved requests: a change asked while an offer is being made is
remembered and offered next, and one answer cannot be applied twice (real aiortc peers)."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCSessionDescription

from media import MediaRouter
from signaling import PublishSession, SignalingError, SubscribeSession
from signaling.subscriber import SubscribeState
from tests.media.peers import CounterVideoTrack, Publisher, Subscriber, wait_for


@pytest.mark.timeout(30)
async def test_interleaved_subscribe_changes_and_answers() -> None:
    router = MediaRouter()
    publisher = Publisher(PublishSession("teacher", router, authorize=lambda _r: None))
    camera, screen = CounterVideoTrack(), CounterVideoTrack()
    publisher.pc.addTrack(camera)
    publisher.pc.addTrack(screen)
    viewer = Subscriber(SubscribeSession("viewer", router))
    leg = viewer.session
    try:
        answer = await publisher.negotiate({camera: "camera", screen: "screen"})
        camera_id, screen_id = (t.track_id for t in answer.published)

        # Two changes at once (a subscribe and a renegotiation): one offer is made, the other
        # change waits for its answer instead of racing it at the awaits.
        first, second = await asyncio.gather(
            leg.set_tracks([camera_id]), leg.set_tracks([camera_id, screen_id])
        )
        assert first is not None and second is None
        assert [t.track_id for t in first.tracks] == [camera_id]
        assert leg.state is SubscribeState.HAVE_LOCAL_OFFER

        await viewer.pc.setRemoteDescription(RTCSessionDescription(first.sdp, "offer"))
        await viewer.pc.setLocalDescription(await viewer.pc.createAnswer())
        sdp = viewer.pc.localDescription.sdp
        # The same answer twice at once: applied once, the other refused.
        results = await asyncio.gather(
            leg.apply_answer(sdp), leg.apply_answer(sdp), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, SignalingError)]
        assert len(refused) == 1 and refused[0].code == "conflict", results
        follow_up = next(r for r in results if not isinstance(r, BaseException))
        assert follow_up is not None  # the remembered change
        assert sorted(t.track_id for t in follow_up.tracks) == sorted([camera_id, screen_id])
        await viewer.apply(follow_up)
        assert leg.state is SubscribeState.STABLE
        for track_id in (camera_id, screen_id):
            await wait_for(
                lambda t=track_id: viewer.by_track(t).frames > 3, 10, f"frames of {track_id}"
            )
    finally:
        await viewer.close()
        await publisher.close()
        router.close()
