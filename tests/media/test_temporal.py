"""A screen share's temporal layers per viewer (media/temporal.py, media/screen.py): the VP8
descriptor read and rewritten, which frames a viewer gets, on synthetic frames (no network)."""

from __future__ import annotations

import asyncio
import fractions
import itertools

import av
import pytest
from aiortc.codecs.vpx import VpxPayloadDescriptor, vp8_depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.forwarder import ForwardedTrack, LegSubscriberTrack, SubscriberTrack
from media.internals import Packetizer
from media.internals.ingest import IngestQueue
from media.internals.jitter import ReleasedFrame
from media.layers import VIDEO_OFF
from media.rewrite import vp8_picture_id
from media.router import MediaRouter
from media.screen import ScreenSubscriberTrack
from media.temporal import (
    PAUSED,
    FrameLayer,
    TemporalFilter,
    TemporalRates,
    frame_layer,
    frame_rate_step,
    parse_descriptor,
    rewrite_descriptor,
    screen_target,
    with_frame_layer,
)

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


def descriptor(**fields: object) -> bytes:
    """A VP8 payload descriptor as aiortc writes one (RFC 7741), then two payload bytes."""
    d = VpxPayloadDescriptor(partition_start=1, partition_id=0, **fields)  # type: ignore[arg-type]
    return bytes(d) + b"\x9d\x01"


# The L1T3 pattern libvpx/Chromium send: TIDs 0 2 1 2, repeated; the first frame of each upper
# layer after a TL0 frame is a layer sync frame in this synthetic stream where marked.
PATTERN = (0, 2, 1, 2)


def l1t3(count: int, sync: set[int] | None = None) -> list[FrameLayer]:
    """``count`` frames' layers; frame i is a sync frame if i is in ``sync``."""
    out, tl0 = [], 0
    for i, tid in zip(range(count), itertools.cycle(PATTERN), strict=False):
        if tid == 0:
            tl0 = (tl0 + 1) & 0xFF
        out.append(FrameLayer(tid, i in (sync or set()), tl0))
    return out


def test_the_descriptor_is_read_as_aiortc_writes_it() -> None:
    payload = descriptor(picture_id=0x1234, tl0picidx=200, tid=(2, 1), keyidx=5)
    d = parse_descriptor(payload)
    assert d is not None
    assert (d.start, d.picture_id, d.long_picture_id, d.tl0picidx) == (True, 0x1234, True, 200)
    assert (d.tid, d.sync, d.keyidx, d.size) == (2, True, 5, 6)
    assert frame_layer(payload) == FrameLayer(2, True, 200)
    # A 7-bit picture id, no TL0PICIDX.
    short = bytes([0x90, 0xA0, 0x05, 0x40]) + b"xx"
    d = parse_descriptor(short)
    assert d is not None and (d.picture_id, d.long_picture_id, d.tid, d.sync) == (5, False, 1, 0)
    assert frame_layer(short) == FrameLayer(1, False, None)


def test_no_temporal_layer_without_a_tid() -> None:
    assert frame_layer(descriptor(picture_id=7)) is None  # aiortc's own packetizer
    assert frame_layer(b"\x10\x9d\x01\x2a") is None  # no extension at all
    assert frame_layer(b"\x65\x88\x84\x00") is None  # an H.264 IDR NAL
    assert frame_layer(b"\x80\x20") is None  # truncated
    assert parse_descriptor(b"\x80\xc0\x80") is None


def test_rewriting_moves_picture_id_and_tl0picidx_and_keeps_the_rest() -> None:
    payload = descriptor(picture_id=2, tl0picidx=1, tid=(1, 0), keyidx=3)
    out = rewrite_descriptor(payload, -5, -2)
    parsed, rest = VpxPayloadDescriptor.parse(out)
    assert parsed.picture_id == 0x7FFD and parsed.tl0picidx == 0xFF  # wrapped: 15 and 8 bits
    assert parsed.tid == (1, 0) and parsed.keyidx == 3 and rest == b"\x9d\x01"
    assert len(out) == len(payload)
    # A 7-bit picture id wraps at 7 bits.
    short = bytes([0x90, 0x80, 0x01]) + b"xy"
    assert rewrite_descriptor(short, -2, 0) == bytes([0x90, 0x80, 0x7F]) + b"xy"
    assert rewrite_descriptor(b"", -1, -1) == b""


def forward(f: TemporalFilter, layers: list[FrameLayer], first_key: bool = True) -> list[int]:
    """Indexes of the frames ``f`` admits (frame 0 a keyframe if ``first_key``)."""
    return [i for i, layer in enumerate(layers) if f.admit(layer, first_key and i == 0)]


def test_each_target_forwards_its_share_of_the_frames() -> None:
    layers = l1t3(16)
    assert forward(TemporalFilter(2), layers) == list(range(16))
    assert forward(TemporalFilter(1), layers) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert forward(TemporalFilter(0), layers) == [0, 4, 8, 12]
    assert forward(TemporalFilter(PAUSED), layers) == []
    assert [frame_rate_step(k) for k in (2, 1, 0, -1)] == ["1", "1/2", "1/4", "paused"]
    assert frame_rate_step(0, 2) == "1/2"


def test_a_frames_layer_is_written_into_every_payload_and_read_back() -> None:
    """What a node-to-node leg sends: aiortc's packets of a frame, each with the publisher's
    TID, Y and TL0PICIDX written in; aiortc's depacketizer gets the same frame back."""
    packet = av.Packet(b"\x11" + bytes(range(256)) * 12)  # three packets
    packet.pts = 9000
    packet.time_base = fractions.Fraction(1, 90000)
    payloads = Packetizer(VP8).pack(packet).payloads
    assert len(payloads) == 3 and frame_layer(payloads[0]) is None  # aiortc writes no layer
    layer = FrameLayer(1, True, 77)
    out = with_frame_layer(payloads, layer)
    for before, after in zip(payloads, out, strict=True):
        was, data = VpxPayloadDescriptor.parse(before)
        now, rest = VpxPayloadDescriptor.parse(after)
        assert (now.partition_start, now.partition_id, now.picture_id) == (
            was.partition_start,
            was.partition_id,
            was.picture_id,
        )
        assert (now.tl0picidx, now.tid, now.keyidx) == (77, (1, 1), None) and rest == data
        assert frame_layer(after) == layer
    assert b"".join(map(vp8_depayload, out)) == bytes(packet)
    # A 7-bit picture id and a KEYIDX are kept; a layer without TL0PICIDX writes no L.
    short = descriptor(picture_id=5, keyidx=3)
    (after,) = with_frame_layer([short], FrameLayer(2, False, None))
    parsed, rest = VpxPayloadDescriptor.parse(after)
    assert (parsed.picture_id, parsed.tl0picidx, parsed.tid, parsed.keyidx) == (5, None, (2, 0), 3)
    assert rest == b"\x9d\x01" and frame_layer(after) == FrameLayer(2, False, None)
    # A payload that already has a layer gets this one; no descriptor at all gets one.
    (again,) = with_frame_layer([descriptor(picture_id=300, tl0picidx=1, tid=(0, 0))], layer)
    assert frame_layer(again) == layer and vp8_picture_id(again) == 300
    (bare,) = with_frame_layer([b"\x10\x9d\x01"], FrameLayer(0, False, 4))
    assert frame_layer(bare) == FrameLayer(0, False, 4) and vp8_depayload(bare) == b"\x9d\x01"
    assert with_frame_layer([], layer) == []


def test_both_rewrites_agree() -> None:
    """The forwarding path's payloads (aiortc's layout) take a fast path: same bytes."""
    f = TemporalFilter(1)
    f.picture_id_delta = -5
    payloads = [descriptor(picture_id=3), descriptor(picture_id=3)[:2] + b"\x80\x03xyz"]
    assert f.rewrite(payloads) == [rewrite_descriptor(p, -5, 0) for p in payloads]
    assert vp8_picture_id(f.rewrite(payloads)[1]) == 0x7FFE


def test_picture_ids_stay_continuous_when_frames_are_left_out() -> None:
    layers = l1t3(24)
    f = TemporalFilter(0)
    sent = []
    for pid, layer in enumerate(layers):
        if f.admit(layer, pid == 0):
            payload = descriptor(picture_id=pid + 100)
            (out,) = f.rewrite([payload])
            sent.append(vp8_picture_id(out))
        if pid == 9:
            f.retarget(1)  # wanted more: from the next sync frame of TID 1
    assert f.current == 0  # no sync frame in this stream: still TL0 only
    assert sent == list(range(100, 100 + len(sent)))


def test_switch_up_one_layer_at_a_time_at_sync_frames_and_down_at_once() -> None:
    # Sync frames: 6 (TID 1), 9 (TID 2), 13 (TID 2).
    layers = l1t3(20, sync={6, 9, 13})
    f = TemporalFilter(0)
    got = []
    for i, layer in enumerate(layers):
        if i == 1:
            f.retarget(2)
        if i == 16:
            f.retarget(0)  # down: at once
        if f.admit(layer, i == 0):
            got.append(i)
    # 1: TID 2 not sync; 2: TID 1 not sync; 5: TID 2 skipped (TID 1 not reached yet); 6: TID 1
    # sync -> current 1; 7: TID 2 not sync; 9: TID 2 sync -> current 2; then everything until
    # 16; from 16 TL0 only.
    assert got == [0, 4, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16]


def test_a_screen_viewer_tries_the_base_layer_before_a_pause() -> None:
    assert screen_target(PAUSED, 2, "queue") == 0  # from the full rate: a quarter first
    assert screen_target(PAUSED, 1, "loss") == 0
    # At the base layer: paused when the link shows it cannot carry it...
    for reason in ("loss", "queue", "saturated"):
        assert screen_target(PAUSED, 0, reason) == PAUSED
    # ...not for a falling estimate alone.
    assert screen_target(PAUSED, 0, "estimate") == 0
    assert screen_target(1, 2, "estimate") == 1


def test_a_keyframe_lets_every_layer_through_and_pause_drops_everything() -> None:
    layers = l1t3(12)
    f = TemporalFilter(0)
    assert not f.admit(layers[1], False)
    f.retarget(2)
    assert f.admit(layers[4], True)  # a keyframe: every reference refreshed
    assert f.current == 2 and f.admit(layers[5], False)
    f.retarget(PAUSED)
    assert not f.admit(layers[8], True)  # paused: not even a keyframe
    assert not f.admit(None, False)
    f.retarget(0)
    assert not f.admit(layers[8], False)  # a TL0 frame whose reference was left out
    assert not f.admit(None, False)
    assert f.admit(layers[8], True) and f.current == 0


def test_tl0picidx_stays_continuous_across_a_pause() -> None:
    f = TemporalFilter(PAUSED)
    layers = l1t3(12)
    for layer in layers[:8]:  # two TL0 frames (TL0PICIDX 1, 2) left out
        f.admit(layer, False)
    f.retarget(0)
    assert f.admit(layers[8], True)
    (out,) = f.rewrite([descriptor(picture_id=50, tl0picidx=3, tid=(0, 0))])
    parsed, _ = VpxPayloadDescriptor.parse(out)
    assert parsed.tl0picidx == 1 and parsed.picture_id == 42  # 8 frames left out


def test_rates_of_each_step_are_cumulative() -> None:
    rates = TemporalRates()
    assert rates.rates(0.0) is None
    now = 0.0
    for tick in range(60):  # 3 s of 20 fps: TL0 4000 B, TL1 2000 B, TL2 1000 B frames
        tid = PATTERN[tick % 4]
        rates.add(tid, {0: 4000, 1: 2000, 2: 1000}[tid])
        now = tick * 0.05
        measured = rates.rates(now)
    assert measured is not None
    # 5 frames/s of TL0 (160 kbit/s), 5 of TL1 (80), 10 of TL2 (80).
    assert measured == pytest.approx([160_000, 240_000, 320_000], rel=0.15)
    for _ in range(4):  # TID 2 stops (L1T2): its step is not sent now
        now += 1.0
        for tid, size in ((0, 4000), (1, 2000)):
            rates.add(tid, size)
        measured = rates.rates(now)
    assert measured is not None and measured[2] == float("inf") and measured[0] < measured[1]


async def test_ingest_reads_the_temporal_layer_before_depacketizing() -> None:
    got: list[object] = []
    queue = IngestQueue("video", lambda codec, packet: got.append(packet.opaque), lambda: None)
    payload = descriptor(picture_id=1, tl0picidx=9, tid=(1, 1))
    queue.put((VP8, ReleasedFrame(b"\x11\x00", 3000, payload)))
    queue.put((VP8, ReleasedFrame(b"\x11\x00", 6000, descriptor(picture_id=2))))
    assert got == [FrameLayer(1, True, 9), None]


class Screen:
    """A screen share's track fed L1T3 frames (about 3 KB TL0, 1 KB others, 20 fps)."""

    def __init__(self) -> None:
        self.track = ForwardedTrack(
            "video", self._pli, source="screen", subscriber=ScreenSubscriberTrack
        )
        self.plis = 0
        self.count = 0

    async def _pli(self) -> bool:
        self.plis += 1
        return True

    def send(self, keyframe: bool = False, sync: bool = False, tl0: int | None = None) -> None:
        tid = 0 if keyframe else PATTERN[self.count % 4]
        packet = av.Packet((b"\x10" if keyframe else b"\x11") + bytes(3000 if tid == 0 else 1000))
        packet.pts = self.count * 4500
        packet.time_base = fractions.Fraction(1, 90000)
        packet.is_keyframe = keyframe
        packet.opaque = FrameLayer(tid, sync, tl0)
        self.count += 1
        self.track.on_packet(VP8, packet)


def drain(sub: ScreenSubscriberTrack) -> list[int]:
    """Picture ids of the frames queued for the viewer (taken off its queue)."""
    out = []
    while sub._queue:
        frame, _size = sub._queue.popleft()
        picture_id = vp8_picture_id(frame.payloads[0])
        assert picture_id is not None
        out.append(picture_id)
    return out


@pytest.mark.timeout(10)
async def test_a_viewer_on_a_short_link_gets_a_lower_frame_rate_not_a_paused_screen() -> None:
    screen = Screen()
    sub = screen.track.subscribe("viewer")
    assert isinstance(sub, ScreenSubscriberTrack)
    sub.selector.up_hold = 0.05
    recv = asyncio.ensure_future(sub.recv_encoded())  # joins the fan-out
    await asyncio.sleep(0)
    screen.send(keyframe=True)
    await recv
    loop = asyncio.get_running_loop()
    for _ in range(40):  # 2 s at 20 fps, measured (as each feedback would)
        screen.send(sync=True)
        screen.track.temporal.rates(loop.time())
        await asyncio.sleep(0.05)
    rates = screen.track.temporal.rates(loop.time())
    assert rates is not None and rates[0] < rates[1] < rates[2]
    assert sub.temporal and sub.layer == 0 and sub.frame_rate == "1/4"  # starts low
    drain(sub)
    # A link that carries everything: one step per hold, at sync frames.
    ids = []
    for _ in range(20):
        sub.link_feedback(5_000_000, 0.1, 0.0, 0.02, True)
        for _ in range(4):
            screen.send(sync=True)
        ids += drain(sub)  # as its sender would
        await asyncio.sleep(0.06)
    assert sub.layer == 2 and sub.frame_rate == "1" and sub.stats.layer_switches == 2
    assert sub.stats.queue_drops == 0
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # continuous
    assert len(ids) > 20 + 20  # a quarter of the frames at first, then more
    # The estimate falls to what a quarter of the frame rate needs plus a little: TL0 only
    # (the selector's rule), yet the screen goes on: every 4th frame, ids continuous.
    rates = screen.track.temporal.rates(loop.time())
    assert rates is not None
    sub.link_feedback(int(rates[0] * 1.3), 0.1, 0.0, 0.02, True)
    assert sub.layer == 0 and sub.frame_rate == "1/4" and not sub.video_paused
    thinned = sub.stats.frames_thinned
    for _ in range(16):
        screen.send()
    ids = drain(sub)
    assert len(ids) == 4 and ids == list(range(ids[0], ids[0] + 4))
    assert sub.stats.frames_thinned == thinned + 12
    # Below a quarter: video paused (audio first), no frame at all, not even a keyframe.
    await asyncio.sleep(2.0)  # settled at the base layer: its loss now counts
    sub.link_feedback(10_000, 0.1, 0.3, 0.02, True)
    assert sub.layer == VIDEO_OFF and sub.frame_rate == "paused" and not sub.waiting_keyframe
    screen.send(keyframe=True)
    screen.send()
    assert drain(sub) == []
    # The link recovers: the base layer is probed, from a keyframe asked for (the TL0 frames
    # left out were the references of the next ones).
    plis = screen.plis
    for _ in range(30):
        sub.link_feedback(None, None, 0.0, 0.02, True)
        if sub.filter.target == 0:
            break
        await asyncio.sleep(0.1)
    assert sub.filter.target == 0 and sub.layer == VIDEO_OFF and sub.waiting_keyframe
    await asyncio.sleep(0.01)
    assert screen.plis > plis
    screen.send()  # a TL0 frame whose reference was never sent: not sent either
    assert drain(sub) == [] and sub.layer == VIDEO_OFF
    screen.send(keyframe=True)
    assert len(drain(sub)) == 1 and sub.layer == 0 and sub.frame_rate == "1/4"
    sub.stop()


async def test_a_node_to_node_leg_gets_every_frame_of_a_screen() -> None:
    screen = Screen()
    assert type(screen.track.subscribe("edge", whole=True)) is LegSubscriberTrack
    assert type(screen.track.subscribe("viewer")) is ScreenSubscriberTrack
    # The room's router makes every screen a screen (and a camera stays a camera).
    router = MediaRouter()
    shared = router.publish("li", "screen", "video", screen._pli)
    camera = router.publish("li", "camera", "video", screen._pli)
    assert type(shared.subscribe("viewer")) is ScreenSubscriberTrack
    assert type(camera.subscribe("viewer")) is SubscriberTrack


def leg_frames(leg: SubscriberTrack) -> list[tuple[bytes, int, bytes]]:
    """The frames queued for a leg as the next node's ingest gets them: the depacketized
    frame, its timestamp and its first payload (media.internals.jitter.ReleasedFrame)."""
    out = []
    while leg._queue:
        frame, _size = leg._queue.popleft()
        data = b"".join(map(vp8_depayload, frame.payloads))
        out.append((data, frame.timestamp, frame.payloads[0]))
    return out


@pytest.mark.timeout(10)
async def test_a_leg_carries_each_frames_temporal_layer_to_the_next_nodes_viewers() -> None:
    """The origin's leg writes each frame's layer into its payloads; the edge's ingest reads
    it back, and the edge's screen viewers are served by the same rules as the origin's."""
    origin = Screen()
    leg = origin.track.subscribe("node-b", whole=True)
    assert isinstance(leg, LegSubscriberTrack)
    sent: list[FrameLayer] = []

    def send(keyframe: bool = False) -> None:
        tid = 0 if keyframe else PATTERN[origin.count % 4]
        tl0 = (origin.count // 4) & 0xFF
        origin.send(keyframe=keyframe, sync=tid > 0, tl0=tl0)
        sent.append(FrameLayer(tid, tid > 0, tl0))

    # Frames kept for the leg's join (the join GOP) carry their layers too.
    send(keyframe=True)
    for _ in range(3):
        send()
    recv = asyncio.ensure_future(leg.recv_encoded())  # the leg joins: the GOP replayed
    await asyncio.sleep(0)
    first = await recv
    assert first is not None
    for _ in range(36):
        send()
    frames = [(b"".join(map(vp8_depayload, first.payloads)), first.timestamp, first.payloads[0])]
    frames += leg_frames(leg)
    assert [frame_layer(payload) for _, _, payload in frames] == sent

    # The edge: its ingest of the leg, a screen track and one viewer held at the base layer.
    edge = Screen()
    viewer = edge.track.subscribe("wanghao")
    assert isinstance(viewer, ScreenSubscriberTrack)
    ingest = IngestQueue("video", edge.track.on_packet, lambda: None)
    recv = asyncio.ensure_future(viewer.recv_encoded())
    await asyncio.sleep(0)
    viewer.filter.retarget(0)
    for data, timestamp, payload in frames:
        ingest.put((VP8, ReleasedFrame(data, timestamp, payload)))
    await recv
    got = drain(viewer)
    counts = [meter.frames for meter in edge.track.temporal._meters]
    assert counts == [10, 10, 20]  # every frame's TID known on the edge as on the origin
    assert viewer.temporal and viewer.stats.frames_thinned == 30
    assert got == list(range(got[0], got[0] + 9))  # a quarter of the frames, ids continuous
