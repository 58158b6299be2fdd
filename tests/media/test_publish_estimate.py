"""One bandwidth estimate for a publisher's whole connection (REMB over every video stream)."""

from __future__ import annotations

import pytest

from media import MediaRouter
from media.internals.ingest import _RECEIVER_BITRATE_ESTIMATOR
from signaling import PublishSession
from tests.media.peers import CounterVideoTrack, Publisher, ToneAudioTrack, wait_for


@pytest.mark.timeout(20)
async def test_video_receivers_of_a_publisher_share_one_estimator() -> None:
    router = MediaRouter()
    publisher = Publisher(PublishSession("teacher", router))
    camera, screen, mic = CounterVideoTrack(), CounterVideoTrack(), ToneAudioTrack()
    for track in (camera, screen, mic):
        publisher.pc.addTrack(track)
    try:
        answer = await publisher.negotiate({camera: "camera", screen: "screen", mic: "microphone"})
        assert not answer.rejected
        receivers = publisher.session.pc.getReceivers()
        estimators = {
            id(getattr(r, _RECEIVER_BITRATE_ESTIMATOR))
            for r in receivers
            if r.track is not None and r.track.kind == "video"
        }
        assert len(estimators) == 1  # not one per m-line
        estimator = getattr(receivers[0], _RECEIVER_BITRATE_ESTIMATOR)
        # Both streams feed it: its REMB names both SSRCs, with one rate for the two.
        await wait_for(lambda: len(estimator.ssrcs) == 2, 8, "both video SSRCs in the estimate")
        audio = [r for r in receivers if r.track is not None and r.track.kind == "audio"]
        assert audio and getattr(audio[0], _RECEIVER_BITRATE_ESTIMATOR) is None
    finally:
        await publisher.close()
