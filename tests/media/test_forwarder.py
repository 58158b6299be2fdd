"""ForwardedTrack rules on synthetic frames: no network, real event loop."""

from __future__ import annotations

import asyncio
import fractions

import av
import pytest
from aiortc.codecs.vpx import vp8_depayload
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media import forwarder
from media.forwarder import ForwardedTrack

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
KEY, DELTA = b"\x10" + bytes(3000), b"\x11" + bytes(500)


class Publisher:
    """Feeds VP8-shaped frames and counts PLIs."""

    def __init__(self, **kwargs: object) -> None:
        self.plis = 0
        self.track = ForwardedTrack("video", self._pli, **kwargs)  # type: ignore[arg-type]
        self.pts = 0

    async def _pli(self) -> bool:
        self.plis += 1
        return True

    def send(self, keyframe: bool) -> None:
        packet = av.Packet(KEY if keyframe else DELTA)
        packet.pts = self.pts
        packet.time_base = fractions.Fraction(1, 90000)
        packet.is_keyframe = keyframe
        self.pts += 3000
        self.track.on_packet(VP8, packet)


@pytest.mark.timeout(5)
async def test_subscriber_joins_on_first_request_and_waits_for_keyframe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forwarder, "JOIN_GOP_MAX_AGE", 0.05)
    pub = Publisher(pli_interval=0.05)
    sub = pub.track.subscribe("a")
    assert pub.track.stats.keyframe_requests == 1  # creating it asked for a keyframe at once
    pub.send(keyframe=True)  # before the sender asked: not queued, no backlog
    pub.send(keyframe=False)
    await asyncio.sleep(0.1)  # older than the join GOP's age limit: not used
    recv = asyncio.ensure_future(sub.recv_encoded())
    await asyncio.sleep(0.01)
    assert pub.track.stats.keyframe_requests == 2  # joining asked again
    pub.send(keyframe=False)  # skipped: the subscriber has no reference frame
    pub.send(keyframe=True)
    frame = await asyncio.wait_for(recv, 1)
    assert len(frame.payloads) == 3  # 3001-byte frame -> 3 RTP payloads of <= 1300
    assert sub.stats.frames_skipped == 1
    pub.send(keyframe=False)
    assert (await sub.recv_encoded()).payloads
    assert pub.track.stats.frames_forwarded == 2
    assert sub.stats.packets_forwarded == 4
    assert pub.track.stats.join_gop_starts == 0


@pytest.mark.timeout(5)
async def test_a_joining_subscriber_starts_at_the_keyframe_asked_for_while_it_connected() -> None:
    """The keyframe requested when the subscriber was created arrives before its sender asks
    for a frame (ICE/DTLS still under way): it starts there, with the frames since, and waits
    for no other keyframe."""
    pub = Publisher(pli_interval=0.05)
    pub.send(keyframe=True)  # an old keyframe, before anyone subscribed: not kept
    pub.send(keyframe=False)
    sub = pub.track.subscribe("a")
    await asyncio.sleep(0.01)
    assert pub.plis == 1
    pub.send(keyframe=True)  # the answer to that PLI
    pub.send(keyframe=False)
    pub.send(keyframe=False)
    got = [await asyncio.wait_for(sub.recv_encoded(), 1) for _ in range(3)]
    assert vp8_depayload(got[0].payloads[0])[:1] == b"\x10"  # the keyframe first
    assert all(vp8_depayload(f.payloads[0])[:1] == b"\x11" for f in got[1:])
    assert sub.stats.frames_skipped == 0
    assert pub.track.stats.join_gop_starts == 1
    await asyncio.sleep(0.1)
    assert pub.plis == 1  # no second PLI: nothing waited
    pub.send(keyframe=False)  # and it follows the live stream from there
    assert vp8_depayload((await sub.recv_encoded()).payloads[0])[:1] == b"\x11"


@pytest.mark.timeout(5)
async def test_payloads_are_packetized_once_and_shared() -> None:
    pub = Publisher()
    subs = [pub.track.subscribe(str(i)) for i in range(3)]
    pending = [asyncio.ensure_future(s.recv_encoded()) for s in subs]
    await asyncio.sleep(0)
    pub.send(keyframe=True)
    frames = await asyncio.gather(*pending)
    assert frames[0] is frames[1] is frames[2]


@pytest.mark.timeout(5)
async def test_full_queue_drops_and_waits_for_next_keyframe() -> None:
    pub = Publisher(queue_frames=4, pli_interval=10)
    slow = pub.track.subscribe("slow")
    fast = pub.track.subscribe("fast")
    first = [asyncio.ensure_future(s.recv_encoded()) for s in (slow, fast)]
    await asyncio.sleep(0)
    pub.send(keyframe=True)
    await asyncio.gather(*first)
    got = 0
    for _ in range(10):
        pub.send(keyframe=False)
        await fast.recv_encoded()  # the fast one keeps up
        got += 1
    assert got == 10
    assert slow.stats.queue_drops == 1 and slow.waiting_keyframe
    assert pub.track.stats.keyframe_requests >= 2  # join + drop
    pub.send(keyframe=False)
    assert slow.stats.frames_skipped >= 1
    pub.send(keyframe=True)
    frame = await slow.recv_encoded()
    assert vp8_depayload(frame.payloads[0])[:1] == b"\x10"  # the keyframe
    assert fast.stats.queue_drops == 0


@pytest.mark.timeout(5)
async def test_pause_resume_and_end() -> None:
    pub = Publisher(pli_interval=0.01)
    sub = pub.track.subscribe("a")
    recv = asyncio.ensure_future(sub.recv_encoded())
    await asyncio.sleep(0)
    pub.send(keyframe=True)
    await recv
    pub.track.pause()
    for _ in range(5):
        pub.send(keyframe=True)
    assert pub.track.stats.frames_paused == 5
    recv = asyncio.ensure_future(sub.recv_encoded())
    await asyncio.sleep(0.05)
    assert not recv.done()
    plis = pub.plis
    pub.track.resume()
    await asyncio.sleep(0.02)
    assert pub.plis > plis  # resume asks for a keyframe
    pub.send(keyframe=False)  # not decodable after the gap
    pub.send(keyframe=True)
    await asyncio.wait_for(recv, 1)
    recv = asyncio.ensure_future(sub.recv_encoded())
    await asyncio.sleep(0)
    pub.track.stop()
    with pytest.raises(MediaStreamError):
        await recv
    assert sub.readyState == "ended"
    with pytest.raises(MediaStreamError):
        pub.track.subscribe("b")


@pytest.mark.timeout(5)
async def test_a_lost_frame_restarts_every_viewer_at_a_keyframe_asked_for_at_once() -> None:
    pub = Publisher(pli_interval=0.05)
    sub = pub.track.subscribe("a")
    recv = asyncio.ensure_future(sub.recv_encoded())
    await asyncio.sleep(0)
    pub.send(keyframe=True)
    await recv
    await asyncio.sleep(0.06)  # past the PLI interval of the join's request
    recv = asyncio.ensure_future(sub.recv_encoded())
    await asyncio.sleep(0)
    plis, requests = pub.plis, pub.track.stats.keyframe_requests
    pub.track.reference_lost()  # the ingest gave up a hole: a frame is gone
    await asyncio.sleep(0.01)
    assert pub.plis == plis + 1 and pub.track.stats.keyframe_requests == requests + 1
    pub.send(keyframe=False)  # refers to the lost frame: not forwarded
    pub.send(keyframe=False)
    await asyncio.sleep(0.01)
    assert not recv.done()
    pub.send(keyframe=True)
    frame = await asyncio.wait_for(recv, 1)
    assert vp8_depayload(frame.payloads[0])[:1] == b"\x10"  # the keyframe, nothing before it
    assert sub.stats.frames_skipped == 2


@pytest.mark.timeout(5)
async def test_waiting_subscriber_retries_pli_at_most_every_interval() -> None:
    pub = Publisher(pli_interval=0.05)
    sub = pub.track.subscribe("a")
    recv = asyncio.ensure_future(sub.recv_encoded())
    await asyncio.sleep(0.28)  # no keyframe arrives: ask again, but no more than every 50 ms
    assert 3 <= pub.plis <= 7, pub.plis
    pub.send(keyframe=True)
    await recv
    plis = pub.plis
    await asyncio.sleep(0.15)
    assert pub.plis == plis  # nobody waits any more


@pytest.mark.timeout(5)
async def test_a_lossy_viewer_asks_the_publisher_at_most_once_per_interval() -> None:
    """A viewer whose decoder keeps sending PLIs (20 % loss) is passed on once per interval,
    even though the publisher answers each at once (which would allow one per 0.25 s)."""
    pub = Publisher()  # the default interval (0.5 s; 0.25 s once answered)
    lossy, other = pub.track.subscribe("lossy"), pub.track.subscribe("other")
    recv = [asyncio.ensure_future(s.recv_encoded()) for s in (lossy, other)]
    await asyncio.sleep(0)
    pub.send(keyframe=True)
    await asyncio.gather(*recv)
    await asyncio.sleep(0.6)
    plis = pub.plis
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(30):  # a PLI every 50 ms
        lossy.request_keyframe()
        pub.send(keyframe=True)  # every request answered at once: the 0.25 s floor would allow 4/s
        await asyncio.sleep(0.05)
    elapsed = loop.time() - start
    asked = pub.plis - plis
    assert 1 <= asked <= elapsed / 0.5 + 1, (asked, elapsed)
    assert lossy.stats.keyframe_requests == 30
    assert lossy.stats.keyframe_requests_throttled >= 30 - asked
