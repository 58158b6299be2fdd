"""Real aiortc peers on 127.0.0.1: publisher -> SFU (forwarding only) -> subscribers."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from media import MediaRouter
from signaling import PublishSession, SubscribeSession
from tests.media.peers import (
    CounterVideoTrack,
    Publisher,
    Subscriber,
    ToneAudioTrack,
    selected_pair,
    wait_for,
)


def advancing(counters: list[int], last: int = 10) -> bool:
    """The decoded counter went up over the last frames (the stream is live, in order)."""
    tail = counters[-last:]
    return len(tail) == last and all(b > a for a, b in itertools.pairwise(tail))


@pytest.mark.timeout(20)
async def test_three_subscribers_decode_forwarded_video_and_audio() -> None:
    router = MediaRouter()
    publisher = Publisher(PublishSession("teacher", router))
    video, audio = CounterVideoTrack(), ToneAudioTrack()
    publisher.pc.addTrack(video)
    publisher.pc.addTrack(audio)
    subscribers: list[Subscriber] = []
    try:
        answer = await publisher.negotiate()
        assert {t.source for t in answer.published} == {"camera", "microphone"}
        assert not answer.rejected
        track_ids = [t.track_id for t in answer.published]
        video_id = next(t.track_id for t in answer.published if t.kind == "video")
        audio_id = next(t.track_id for t in answer.published if t.kind == "audio")

        subscribers = [Subscriber(SubscribeSession(f"s{i}", router)) for i in range(3)]
        await asyncio.gather(*(s.subscribe(track_ids) for s in subscribers))
        await wait_for(
            lambda: all(advancing(s.by_track(video_id).counters) for s in subscribers),
            8,
            "three subscribers decoding an advancing counter",
        )
        await wait_for(
            lambda: all(s.by_track(audio_id).frames > 10 for s in subscribers),
            3,
            "audio frames at every subscriber",
        )

        # Media stayed on loopback on both ends of every leg.
        for pc in [publisher.pc, publisher.session.pc] + [
            p for s in subscribers for p in (s.pc, s.session.pc)
        ]:
            local, remote = selected_pair(pc)
            assert local[0] == "127.0.0.1" and remote[0] == "127.0.0.1", (local, remote)

        # The server forwarded, packet counters add up per subscriber.
        stats = router.stats()[video_id]
        assert stats["frames_received"] >= 10
        assert stats["keyframes_received"] >= 1
        assert set(stats["subscribers"]) == {"s0", "s1", "s2"}
        for sub in stats["subscribers"].values():
            assert sub["frames_forwarded"] >= 10
            assert sub["packets_forwarded"] >= sub["frames_forwarded"]
            assert sub["queue_drops"] == 0
        # Three joins close together were coalesced into fewer PLIs than requests.
        # (or served by the keyframe kept while they connected: the join GOP)
        assert stats["plis_sent"] <= stats["keyframe_requests"], stats
        assert stats["plis_sent"] + stats["join_gop_starts"] >= 1, stats

        # A server-side subscriber whose sender stopped reading: drops, nobody slowed.
        stuck = router.subscribe("stuck", video_id)
        await asyncio.wait_for(stuck.recv_encoded(), 2)  # joined the fan-out, then stalls
        before = [s.by_track(video_id).frames for s in subscribers]
        await wait_for(lambda: stuck.stats.queue_drops >= 1, 6, "queue drop of a stalled one")
        after = [s.by_track(video_id).frames for s in subscribers]
        assert all(b - a > 30 for a, b in zip(before, after, strict=True)), (before, after)
        assert all(advancing(s.by_track(video_id).counters) for s in subscribers)
        assert router.stats()[video_id]["queue_drops"] >= 1
        stuck.stop()

        # Mute: nothing is forwarded while paused, forwarding resumes with a keyframe.
        router.pause(video_id)
        await asyncio.sleep(0.2)  # frames already in flight
        paused_at = [s.by_track(video_id).frames for s in subscribers]
        await asyncio.sleep(0.5)
        assert [s.by_track(video_id).frames for s in subscribers] == paused_at
        assert router.stats()[video_id]["frames_paused"] > 5
        router.resume(video_id)
        await wait_for(
            lambda: all(
                s.by_track(video_id).frames > n + 5
                for s, n in zip(subscribers, paused_at, strict=True)
            ),
            3,
            "video again after resume",
        )
    finally:
        for s in subscribers:
            await s.close()
        await publisher.close()
        router.close()
