"""Renegotiation on both legs and late joiners, with real aiortc peers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc.mediastreams import AudioStreamTrack

from media import MediaRouter
from media.router import TrackInfo
from signaling import PublishSession, SubscribeSession, TrackRequest
from tests.media.peers import CounterVideoTrack, Publisher, Subscriber, wait_for


@pytest.mark.timeout(20)
async def test_late_joiner_and_screen_share_on_off() -> None:
    router = MediaRouter()
    events: list[tuple[str, str]] = []
    router.add_listener(lambda event, info: events.append((event, info.source)))

    def only_camera_and_screen(request: TrackRequest) -> str | None:
        return None if request.source in ("camera", "screen") else "not allowed in this lesson"

    publisher = Publisher(PublishSession("teacher", router, authorize=only_camera_and_screen))
    camera = CounterVideoTrack()
    publisher.pc.addTrack(camera)
    viewer = Subscriber(SubscribeSession("early", router))
    late: Subscriber | None = None
    try:
        answer = await publisher.negotiate({camera: "camera"})
        camera_id = answer.published[0].track_id
        await viewer.subscribe([camera_id])
        await wait_for(lambda: viewer.by_track(camera_id).frames > 5, 5, "early viewer video")

        # A late joiner decodes within a second: its join asks the publisher for a keyframe.
        await asyncio.sleep(1.0)
        late = Subscriber(SubscribeSession("late", router))
        joined_at = time.monotonic()
        await late.subscribe([camera_id])
        await wait_for(lambda: late.by_track(camera_id).frames > 0, 3, "late joiner video")
        first = late.by_track(camera_id).first_frame_at
        assert first is not None and first - joined_at < 1.0, first - joined_at

        # Screen share on: the client adds a track and offers again.
        screen = CounterVideoTrack()
        publisher.pc.addTrack(screen)
        answer = await publisher.negotiate({camera: "camera", screen: "screen"})
        assert [t.source for t in answer.published] == ["screen"]
        screen_id = answer.published[0].track_id
        await viewer.subscribe([camera_id, screen_id])
        await wait_for(lambda: viewer.by_track(screen_id).frames > 5, 5, "screen share video")

        # Screen share off: the m-line stops sending, the track is unpublished.
        screen_transceiver = next(
            t for t in publisher.pc.getTransceivers() if t.sender.track is screen
        )
        screen_transceiver.sender.replaceTrack(None)
        screen_transceiver.direction = "inactive"
        answer = await publisher.negotiate({camera: "camera"})
        assert answer.unpublished == [screen_id]
        assert ("unpublished", "screen") in events
        assert [t.track_id for t in router.tracks()] == [camera_id]
        await viewer.subscribe([t.track_id for t in router.tracks()])
        assert [t.track_id for t in viewer.session.tracks()] == [camera_id]

        # Screen share on again, on the same m-line: a new track, offered to authorize again.
        screen2 = CounterVideoTrack()
        screen_transceiver.sender.replaceTrack(screen2)
        screen_transceiver.direction = "sendonly"
        answer = await publisher.negotiate({camera: "camera", screen2: "screen"})
        assert [t.source for t in answer.published] == ["screen"]
        screen2_id = answer.published[0].track_id
        # The viewer's freed transceiver is reused for it: no new m-line.
        mids_before = {t.mid for t in viewer.pc.getTransceivers()}
        await viewer.subscribe([camera_id, screen2_id])
        assert {t.mid for t in viewer.pc.getTransceivers()} == mids_before
        frames_before = viewer.by_track(screen2_id).frames
        await wait_for(
            lambda: viewer.by_track(screen2_id).frames > frames_before + 5, 5, "screen again"
        )

        # A source the callback refuses is answered inactive and never published.
        microphone = AudioStreamTrack()
        publisher.pc.addTrack(microphone)
        answer = await publisher.negotiate({microphone: "microphone"})
        assert [(r.source, r.reason) for r in answer.rejected] == [
            ("microphone", "not allowed in this lesson")
        ]
        assert "microphone" not in {t.source for t in router.tracks()}
        assert all(isinstance(t, TrackInfo) for t in router.tracks())
    finally:
        for s in (viewer, late):
            if s is not None:
                await s.close()
        await publisher.close()
        router.close()
    # Closing the publisher ended its tracks.
    assert router.tracks() == []
