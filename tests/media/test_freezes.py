"""Freezes and audio level for the host: the rules alone, then with real aiortc peers."""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from media import MediaRouter
from media.audio_level import AudioLevel
from media.forwarder import SubscriberTrack
from media.freezes import FREEZE_GAP_S, FreezeMeter
from media.internals.egress import oldest_missing
from media.link import assess, participant_links
from signaling import PublishSession, SubscribeSession
from tests.media.peers import CounterVideoTrack, Publisher, Subscriber, ToneAudioTrack, wait_for


def test_a_decoder_waiting_for_a_keyframe_is_a_freeze_from_half_a_second() -> None:
    meter = FreezeMeter()
    meter.decoder_stopped(10.0)
    meter.decoder_stopped(10.2)  # a second PLI of the same stop
    assert meter.frozen_for(10.3) == 0.0  # not (yet) a freeze
    assert meter.frozen_for(10.6) == pytest.approx(0.6)
    meter.keyframe_sent(10.8)
    assert (meter.count, meter.duration) == (1, pytest.approx(0.8))
    assert meter.frozen_for(11.0) == 0.0 and meter.recent(11.0) and not meter.recent(21.0)
    meter.decoder_stopped(30.0)
    meter.keyframe_sent(30.0 + FREEZE_GAP_S - 0.01)  # a short stop is no freeze
    assert meter.count == 1


def test_receiver_reports_that_fall_behind_are_a_freeze_and_overlaps_count_once() -> None:
    meter = FreezeMeter()
    meter.received(5.0, None)
    meter.received(6.0, 5.8)  # the oldest frame not received was sent 0.2 s ago: in flight
    assert meter.frozen_for(6.0) == 0.0
    meter.received(7.0, 5.9)  # 1.1 s behind: frozen since 5.9
    meter.decoder_stopped(6.5)  # and the decoder asked for a keyframe meanwhile
    assert meter.frozen_for(7.0) == pytest.approx(1.1)
    meter.received(8.0, None)  # caught up: 5.9-8.0
    meter.keyframe_sent(8.4)  # the decoder's stop (6.5-8.4) overlaps it: one freeze
    assert meter.count == 1
    assert meter.duration == pytest.approx(2.5)


def test_paused_video_and_mute_are_no_freezes() -> None:
    meter = FreezeMeter()
    meter.received(1.0, 0.0)
    meter.decoder_stopped(1.0)
    meter.idle()  # video paused for the connection (audio first)
    meter.received(3.0, None)
    meter.keyframe_sent(3.0)
    assert (meter.count, meter.duration, meter.frozen_for(3.0)) == (0, 0.0, 0.0)


def test_oldest_missing_frame_from_the_highest_sequence_number_received() -> None:
    # Frames starting at these sequence numbers (wrapping at 65536), sent at these times.
    frames = deque([(65530, 1.0), (65534, 1.05), (2, 1.1), (6, 1.15)])
    assert oldest_missing(frames, 9) is None  # everything received
    assert oldest_missing(frames, 6) is None  # the last frame's first packet: it started
    assert oldest_missing(frames, 5) == 1.15
    assert oldest_missing(frames, 65535) == 1.1  # across the wrap
    assert oldest_missing(frames, 65000) == 1.0  # behind all that is kept: the oldest


def test_the_console_flags_freezes() -> None:
    assert assess(2_000_000, 0.0, 0.03, freezing=True) == ["freezes"]
    assert assess(100_000, 0.0, 0.03, freezing=True) == ["bandwidth", "freezes"]
    assert assess(2_000_000, 0.0, 0.03, video_paused=True) == ["bandwidth"]


def test_audio_level_is_the_loudest_of_the_last_second() -> None:
    level = AudioLevel()
    assert level.snapshot(0.0) is None
    level.packet(0.0, False, 60)
    level.packet(0.5, True, 20)  # -20 dBov, voice
    level.packet(0.9, False, 127)
    snap = level.snapshot(0.95)
    assert snap == {"audio_level": pytest.approx(0.1), "dbov": -20, "voice": True}
    level.packet(1.1, False, 127)  # a new window starts silent: the last one still shows
    assert level.snapshot(1.2) == snap
    level.packet(2.2, False, 127)
    assert level.snapshot(2.3) == {"audio_level": 0.0, "dbov": -127, "voice": False}
    assert level.snapshot(5.0) is None  # nothing for seconds (muted)


def _client_transport(pc: object) -> asyncio.DatagramTransport:
    """The subscriber client's UDP transport of its nominated ICE pair."""
    transceiver = pc.getTransceivers()[0]  # type: ignore[attr-defined]
    connection = transceiver.receiver.transport.transport._connection
    transport: asyncio.DatagramTransport = connection._nominated[1].protocol.transport
    return transport


@pytest.mark.timeout(30)
async def test_host_sees_a_stalled_viewer_freeze_and_the_publisher_audio_level() -> None:
    router = MediaRouter()
    publisher = Publisher(PublishSession("teacher", router))
    publisher.pc.addTrack(CounterVideoTrack())
    publisher.pc.addTrack(ToneAudioTrack())  # a 440 Hz tone at about -15 dBov
    subscriber = Subscriber(SubscribeSession("student", router))
    try:
        answer = await publisher.negotiate()
        video_id = next(t.track_id for t in answer.published if t.kind == "video")
        await subscriber.subscribe([t.track_id for t in answer.published])
        await wait_for(lambda: subscriber.by_track(video_id).frames > 20, 8, "video decoded")

        def links() -> dict[str, dict[str, dict[str, object]]]:
            return participant_links(
                {1: publisher.session},
                {2: subscriber.session},  # type: ignore[dict-item]
            )

        audio = links()["1"]["publish"]["audio"]
        assert isinstance(audio, dict)
        level = audio["microphone"]
        assert level is not None and -18 <= level["dbov"] <= -12, level
        viewer = links()["2"]["subscribe"]
        assert (viewer["freezes"], viewer["frozen_s"], viewer["bad"]) == (0, 0.0, []), viewer

        # The viewer's link stalls for over a second (its socket is not read; the kernel keeps what
        # arrives): its receiver reports stay behind what the SFU sends.
        transport = _client_transport(subscriber.pc)
        transport.pause_reading()
        await wait_for(lambda: links()["2"]["subscribe"]["frozen_s"] != 0.0, 4, "frozen now")
        assert "freezes" in links()["2"]["subscribe"]["bad"]  # type: ignore[operator]
        await asyncio.sleep(0.8)
        transport.resume_reading()
        await wait_for(lambda: links()["2"]["subscribe"]["freezes"] == 1, 5, "one freeze")
        viewer = links()["2"]["subscribe"]
        assert viewer["frozen_s"] == 0.0 and "freezes" in viewer["bad"]  # type: ignore[operator]
        assert 1.0 <= viewer["freeze_s"] <= 4.5, viewer  # type: ignore[operator]
        track = next(s.track for s in subscriber.session.pc.getSenders() if s.kind == "video")
        assert isinstance(track, SubscriberTrack)
        stats = router.stats()[video_id]["subscribers"]["student"]
        assert stats["freezes"] == 1 and stats["freeze_s"] == round(track.freezes.duration, 3)
    finally:
        await subscriber.close()
        await publisher.close()


async def test_a_muted_track_has_no_freezes_whatever_the_reports_say() -> None:
    async def no_pli() -> bool:
        return False

    router = MediaRouter()
    track = router.publish("teacher", "camera", "video", no_pli)
    viewer = track.subscribe("student")
    viewer._joined, viewer.waiting_keyframe = True, False  # receiving for a while
    now = asyncio.get_running_loop().time()
    viewer.receive_report(now - 2.0)  # 2 s behind: frozen
    assert viewer.freezes.frozen_for(now) >= 1.9
    track.pause()  # the teacher's mute: whatever was in flight, no freeze
    viewer.receive_report(now - 2.0)
    viewer.request_keyframe()
    assert viewer.freezes.frozen_for(now + 1) == 0.0
    track.resume()
    viewer.request_keyframe()  # its decoder waits for the resume's keyframe: counts again
    assert viewer.freezes.frozen_for(asyncio.get_running_loop().time() + 1) >= 0.9
