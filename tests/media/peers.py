"""Real aiortc client peers for the media tests: synthetic publisher, decoding subscribers.

Everything runs on 127.0.0.1 (``media.ice.configure_host_addresses`` plus no ICE servers);
the clients' peer connections are configured as the Python client's (``clients.live``).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from bench.sfu.video import source_frames
from clients.live import configuration
from signaling import PublishAnswer, PublishSession, SubscribeOffer, SubscribeSession

WIDTH, HEIGHT = 192, 144
COUNTER_BITS = 12  # one horizontal stripe per bit, 12 px tall
FPS = 20
VIDEO_CLOCK = 90000


def client_configuration() -> RTCConfiguration:
    """The Python client's own (clients/live.py): no ICE servers (aiortc would otherwise add
    Google's STUN server), everything bundled on one transport."""
    return configuration([])


class CounterVideoTrack(MediaStreamTrack):
    """Video whose frames show their own number as black/white stripes (survives VP8/H.264)."""

    kind = "video"

    def __init__(self, fps: int = FPS) -> None:
        super().__init__()
        self.counter = 0
        self._fps = fps
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        else:
            due = self._start + self.counter / self._fps
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = self.picture(self.counter)
        frame.pts = self.counter * (VIDEO_CLOCK // self._fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.counter += 1
        return frame

    def picture(self, counter: int) -> av.VideoFrame:
        return counter_frame(counter)


def counter_frame(counter: int) -> av.VideoFrame:
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    stripe = HEIGHT // COUNTER_BITS
    y_plane = frame.planes[0]
    rows = bytearray()
    for row in range(HEIGHT):
        bit = (counter >> min(row // stripe, COUNTER_BITS - 1)) & 1
        rows += bytes([235 if bit else 16]) * y_plane.line_size
    y_plane.update(bytes(rows))
    for plane in frame.planes[1:]:
        plane.update(bytes([128]) * plane.buffer_size)
    return frame


def read_counter(frame: av.VideoFrame) -> int:
    frame = frame.reformat(format="yuv420p") if frame.format.name != "yuv420p" else frame
    plane = frame.planes[0]
    data = bytes(plane)
    stripe = frame.height // COUNTER_BITS
    value = 0
    for bit in range(COUNTER_BITS):
        row = bit * stripe + stripe // 2
        start = row * plane.line_size + frame.width // 4
        samples = data[start : start + frame.width // 2]
        if sum(samples) / len(samples) > 128:
            value |= 1 << bit
    return value


class ToneAudioTrack(MediaStreamTrack):
    """A 440 Hz tone, 20 ms Opus-sized frames."""

    kind = "audio"

    def __init__(self, hz: int = 440) -> None:
        super().__init__()
        samples = 960
        self._pcm = b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / 48000)))
            for i in range(samples)
        )
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        else:
            due = self._start + self._pts / 48000
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(self._pcm)
        frame.sample_rate = 48000
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, 48000)
        self._pts += 960
        return frame


# A browser's voice: Opus at about 32 kbit/s (Chrome's default for a microphone), mono.
VOICE_BITRATE = 32_000


class VoiceAudioTrack(MediaStreamTrack):
    """A browser-like microphone: a 400 Hz tone (eight whole periods per 20 ms frame, so no
    click between frames) that the track encodes itself in Opus at VOICE_BITRATE, mono, for
    speech, and hands to aiortc as encoded packets (aiortc's own encoder sends 96 kbit/s
    stereo, and :class:`ToneAudioTrack`'s tone, cut at every frame, came out at 160 kbit/s:
    more than a 150 kbit/s link carries with nothing else on it)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._tone = ToneAudioTrack(hz=400)
        self._codec = av.CodecContext.create("libopus", "w")
        self._codec.bit_rate = VOICE_BITRATE
        self._codec.format = "s16"
        self._codec.layout = "mono"
        self._codec.sample_rate = 48000
        self._codec.time_base = fractions.Fraction(1, 48000)
        self._codec.options = {"application": "voip"}
        self._first_pts: int | None = None

    async def recv(self) -> av.Packet:
        while True:
            packets = self._codec.encode(await self._tone.recv())
            if packets:
                packet: av.Packet = packets[0]
                if self._first_pts is None:
                    self._first_pts = packet.pts
                packet.pts = (packet.pts or 0) - (self._first_pts or 0)
                packet.time_base = fractions.Fraction(1, 48000)
                return packet


class Publisher:
    """A client that publishes through a server PublishSession."""

    def __init__(self, session: PublishSession) -> None:
        self.session = session
        self.pc = RTCPeerConnection(client_configuration())

    async def negotiate(
        self, sources: Mapping[MediaStreamTrack, str] | None = None
    ) -> PublishAnswer:
        """Offer, with ``sources`` naming tracks (sent to the server by mid, as a browser would)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        by_mid = {
            t.mid: sources[t.sender.track]
            for t in self.pc.getTransceivers()
            if sources and t.mid is not None and t.sender.track in sources
        }
        answer = await self.session.apply_offer(self.pc.localDescription.sdp, by_mid)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        return answer

    async def close(self) -> None:
        await self.pc.close()
        await self.session.close()


@dataclass
class Received:
    """What a subscriber decoded on one track."""

    kind: str
    counters: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    first_frame_at: float | None = None

    @property
    def frames(self) -> int:
        return len(self.times)


class Subscriber:
    """A client that receives and decodes through a server SubscribeSession."""

    def __init__(self, session: SubscribeSession, *, read: bool = True) -> None:
        self.session = session
        self.pc = RTCPeerConnection(client_configuration())
        self.received: dict[str, Received] = {}  # by mid
        self._tasks: list[asyncio.Task[None]] = []
        self._read = read
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in self.pc.getTransceivers() if t.receiver.track is track)
        assert mid is not None
        received = self.received.setdefault(mid, Received(track.kind))
        if self._read:
            self._tasks.append(asyncio.ensure_future(self._consume(track, received)))

    async def _consume(self, track: MediaStreamTrack, received: Received) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if received.first_frame_at is None:
                    received.first_frame_at = now
                received.times.append(now)
                if isinstance(frame, av.VideoFrame):
                    received.counters.append(read_counter(frame))
        except MediaStreamError:
            pass

    async def apply(self, offer: SubscribeOffer | None) -> None:
        while offer is not None:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            offer = await self.session.apply_answer(self.pc.localDescription.sdp)

    async def subscribe(self, track_ids: list[str]) -> None:
        await self.apply(await self.session.set_tracks(track_ids))

    def by_track(self, track_id: str) -> Received:
        mid = next(t.mid for t in self.session.tracks() if t.track_id == track_id)
        return self.received.setdefault(mid, Received("?"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        await self.session.close()


async def wait_for(predicate: object, timeout: float, what: str) -> None:
    """Poll ``predicate()`` every 20 ms until true; fail with ``what`` after ``timeout``."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def selected_pair(pc: RTCPeerConnection) -> tuple[tuple[str, int], tuple[str, int]]:
    """(local, remote) address of the nominated ICE pair of the first transport."""
    transceiver = pc.getTransceivers()[0]
    connection = transceiver.receiver.transport.transport._connection
    pair = connection._nominated.get(1)
    assert pair is not None, "no nominated ICE pair"
    return pair.local_addr, pair.remote_addr


class TextureVideoTrack(CounterVideoTrack):
    """A camera-like picture with detail (a drifting texture and fresh noise, the benchmark's
    source), so a VP8 encoder spends its target bitrate on it at any size it is scaled to."""

    def __init__(self, width: int = 640, height: int = 360, fps: int = 15, loop: int = 30) -> None:
        super().__init__(fps)
        self._frames = source_frames(width, height, loop)

    def picture(self, counter: int) -> av.VideoFrame:
        return self._frames[counter % len(self._frames)]
