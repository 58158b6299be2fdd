"""A node-to-node leg with real aiortc peers on 127.0.0.1: publisher -> origin -> edge -> viewer.

The origin feeds the edge through an ordinary subscribe leg; the edge publishes what arrives
into its own router under the origin's track ids (signaling/relay.py). Viewers on the edge
decode the teacher's counter video and tone like viewers on the origin, a keyframe request from
a new edge viewer travels up the leg, and a track the origin ends ends on the edge too.
"""

from __future__ import annotations

import asyncio
import statistics

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from clients.simulcast import SimulcastCamera
from media import MediaRouter
from media.internals import route_keyframe_requests
from media.simulcast import LayeredTrack
from realtime.cluster import cascade as rule
from signaling import PublishSession, SubscribeSession
from signaling.relay import RelayIngest, negotiate
from tests.media.peers import (
    CounterVideoTrack,
    Publisher,
    Subscriber,
    TextureVideoTrack,
    ToneAudioTrack,
    client_configuration,
    selected_pair,
    wait_for,
)
from tests.media.test_forwarding import advancing


async def close_all(
    viewers: list[Subscriber],
    leg: SubscribeSession,
    ingest: RelayIngest,
    publisher: Publisher,
    routers: tuple[MediaRouter, ...],
) -> None:
    for v in viewers:
        await v.close()
    await leg.close()
    await ingest.close()
    await publisher.close()
    for router in routers:
        router.close()


def hops_ms(at_origin: Subscriber, at_edge: Subscriber, video_id: str) -> list[float]:
    """Decode time at the edge viewer minus at the origin viewer, per frame (by counter)."""
    origin_rx = at_origin.by_track(video_id)
    origin_seen = dict(zip(origin_rx.counters, origin_rx.times, strict=True))
    edge_rx = at_edge.by_track(video_id)
    return [
        (t - origin_seen[c]) * 1000
        for c, t in zip(edge_rx.counters, edge_rx.times, strict=True)
        if c in origin_seen
    ]


@pytest.mark.timeout(30)
async def test_edge_viewers_see_and_hear_the_origin_and_tracks_end_with_it() -> None:
    origin, edge = MediaRouter(), MediaRouter()
    edge_events: list[tuple[str, str]] = []
    edge.add_listener(lambda event, info: edge_events.append((event, info.track_id)))
    publisher = Publisher(PublishSession("teacher", origin))
    video, audio = CounterVideoTrack(), ToneAudioTrack()
    publisher.pc.addTrack(video)
    publisher.pc.addTrack(audio)
    leg = SubscribeSession("edge:B", origin)
    ingest = RelayIngest("origin:A", edge)
    viewers: list[Subscriber] = []
    try:
        answer = await publisher.negotiate()
        ids = [t.track_id for t in answer.published]
        video_id = next(t.track_id for t in answer.published if t.kind == "video")
        audio_id = next(t.track_id for t in answer.published if t.kind == "audio")

        await negotiate(leg, ingest, await leg.set_tracks(ids))
        # The edge holds the origin's tracks under the same ids, publisher and source.
        assert {(t.track_id, t.publisher_id, t.source) for t in edge.tracks()} == {
            (video_id, "teacher", "camera"),
            (audio_id, "teacher", "microphone"),
        }
        assert ingest.relayed().keys() == {t.mid for t in leg.tracks()}

        at_origin = Subscriber(SubscribeSession("o1", origin))
        at_edge = Subscriber(SubscribeSession("e1", edge))
        viewers += [at_origin, at_edge]
        await asyncio.gather(at_origin.subscribe(ids), at_edge.subscribe(ids))
        await wait_for(
            lambda: all(advancing(v.by_track(video_id).counters) for v in viewers),
            10,
            "an advancing counter at the origin viewer and at the edge viewer",
        )
        await wait_for(
            lambda: at_edge.by_track(audio_id).frames > 10, 5, "the teacher's audio at the edge"
        )
        # The leg stayed on loopback at both ends.
        for pc in (leg.pc, ingest.pc):
            local, remote = selected_pair(pc)
            assert local[0] == "127.0.0.1" and remote[0] == "127.0.0.1", (local, remote)

        # The same frames reach the edge viewer a hop later: compare arrival per counter.
        hops = hops_ms(at_origin, at_edge, video_id)
        assert len(hops) >= 10
        assert statistics.median(hops) < 100, hops  # generous on a loaded 2-core machine

        # A late viewer on the edge needs a keyframe: served at the edge (its join GOP) or
        # asked for up the leg.
        late = Subscriber(SubscribeSession("e2", edge))
        viewers.append(late)
        await late.subscribe([video_id])
        await wait_for(
            lambda: advancing(late.by_track(video_id).counters, 5),
            5,
            "a late edge viewer decoding (a keyframe came through the leg)",
        )
        assert edge.stats()[video_id]["keyframe_requests"] >= 1
        # The edge asked upstream (its requests coalesced into PLIs up the leg), and the origin
        # counted them as the edge subscriber's, like any viewer's.
        assert edge.stats()[video_id]["plis_sent"] >= 1
        assert origin.stats()[video_id]["subscribers"]["edge:B"]["keyframe_requests"] >= 1

        # The origin stops relaying the audio: the edge's copy ends and its router says so.
        await negotiate(leg, ingest, await leg.set_tracks([video_id]))
        await wait_for(
            lambda: ("unpublished", audio_id) in edge_events, 3, "the edge's audio copy ended"
        )
        assert {t.track_id for t in edge.tracks()} == {video_id}
        frames = at_edge.by_track(video_id).frames
        await wait_for(
            lambda: at_edge.by_track(video_id).frames > frames + 10, 3, "video goes on at the edge"
        )

        # Dropping the leg ends every copy on the edge.
        await ingest.close()
        await wait_for(lambda: not edge.tracks(), 3, "no tracks left on the edge")
        assert ("unpublished", video_id) in edge_events
    finally:
        await close_all(viewers, leg, ingest, publisher, (origin, edge))


@pytest.mark.timeout(40)
async def test_a_frame_crosses_each_node_without_waiting_for_the_next_frame() -> None:
    """At 2 fps a frame interval is 500 ms: aiortc's own jitter buffer would hold every frame
    that long at the origin's ingest and again at the edge's (until the next frame starts).
    Released on its marker packet, a frame reaches an origin viewer one interval after capture
    (that viewer's own stock receiver waits for the next frame), not two, and the edge hop adds
    milliseconds, not a frame interval."""
    origin, edge = MediaRouter(), MediaRouter()
    publisher = Publisher(PublishSession("teacher", origin))
    video = CounterVideoTrack(fps=2)
    publisher.pc.addTrack(video)
    leg = SubscribeSession("edge:B", origin)
    ingest = RelayIngest("origin:A", edge)
    viewers: list[Subscriber] = []
    try:
        answer = await publisher.negotiate()
        (video_id,) = [t.track_id for t in answer.published]
        await negotiate(leg, ingest, await leg.set_tracks([video_id]))
        at_origin = Subscriber(SubscribeSession("o1", origin))
        at_edge = Subscriber(SubscribeSession("e1", edge))
        viewers += [at_origin, at_edge]
        await asyncio.gather(at_origin.subscribe([video_id]), at_edge.subscribe([video_id]))
        await wait_for(
            lambda: len(at_edge.by_track(video_id).counters) >= 3, 15, "frames at the edge viewer"
        )

        # Capture to decode at the origin's viewer: its own (stock aiortc) receiver holds a
        # frame one interval until the next arrives (500 ms); the origin adds nothing more
        # (aiortc's release would add another 500 ms there).
        assert video._start is not None
        origin_rx = at_origin.by_track(video_id)
        latency = [
            (t - (video._start + c / 2)) * 1000
            for c, t in zip(origin_rx.counters, origin_rx.times, strict=True)
        ]
        assert statistics.median(latency) < 750, latency

        # The same frames decoded at both viewers: the hop is far under a frame interval.
        hops = hops_ms(at_origin, at_edge, video_id)
        assert len(hops) >= 3
        assert statistics.median(hops) < 150, hops  # aiortc's release: ~500 ms
    finally:
        await close_all(viewers, leg, ingest, publisher, (origin, edge))


@pytest.mark.timeout(40)
async def test_a_meetings_first_offer_with_several_videos_and_voices_plays_each_on_the_edge() -> (
    None
):
    """A meeting's leg and its edge viewer get several videos and microphones in their first
    offer (the host's camera and microphone, a co-teacher's camera, a guardian's camera and
    microphone). Each m-line plays its own track at the edge viewer and at an origin viewer.

    aiortc's default bundle policy (``balanced``) gives the second m-line of a kind the
    transport of the first of that kind before BUNDLE is applied, and then never moves it to
    the bundle's transport: that m-line's receiver never started (its transport closed), its
    SSRC was learnt by the first receiver of its kind, which got two streams at once (videos
    that did not decode, voices nobody heard). The Python client bundles everything instead."""
    origin, edge = MediaRouter(), MediaRouter()
    publishers = []
    for name, voice in (("host", True), ("co", False), ("guardian", True)):
        publisher = Publisher(PublishSession(name, origin))
        publisher.pc.addTrack(CounterVideoTrack())
        if voice:
            publisher.pc.addTrack(ToneAudioTrack())
        publishers.append(publisher)
    leg = SubscribeSession("edge:B", origin)
    ingest = RelayIngest("origin:A", edge)
    viewers: list[Subscriber] = []
    try:
        ids: list[str] = []
        for publisher in publishers:
            ids += [t.track_id for t in (await publisher.negotiate()).published]
        kinds = {t.track_id: t.kind for t in origin.tracks()}
        assert sorted(kinds.values()) == ["audio", "audio", "video", "video", "video"]
        await negotiate(leg, ingest, await leg.set_tracks(ids))
        at_origin = Subscriber(SubscribeSession("o1", origin))
        at_edge = Subscriber(SubscribeSession("e1", edge))
        viewers += [at_origin, at_edge]
        await asyncio.gather(at_origin.subscribe(ids), at_edge.subscribe(ids))
        for viewer, where in ((at_edge, "edge"), (at_origin, "origin")):
            for track_id, kind in kinds.items():
                if kind == "video":
                    await wait_for(
                        lambda v=viewer, t=track_id: advancing(v.by_track(t).counters),
                        10,
                        f"the {where} viewer decoding video {track_id}",
                    )
                else:
                    await wait_for(
                        lambda v=viewer, t=track_id: v.by_track(t).frames > 10,
                        10,
                        f"the {where} viewer hearing {track_id}",
                    )
        # Each video plays alone on its m-line: its counter never goes back (two streams on
        # one receiver would interleave two counters, when they decode at all).
        for track_id, kind in kinds.items():
            if kind == "video":
                counters = at_edge.by_track(track_id).counters
                assert counters == sorted(counters), (track_id, counters[:40])
    finally:
        for v in viewers:
            await v.close()
        await leg.close()
        await ingest.close()
        for publisher in publishers:
            await publisher.close()
        for router in (origin, edge):
            router.close()


@pytest.mark.timeout(40)
async def test_a_camera_in_layers_crosses_the_leg_as_every_layer() -> None:
    """A leg is not a viewer: it carries each layer of a camera sent in layers on its own
    m-line, and the edge republishes them as one track in layers under the origin's id (so
    its viewers choose per viewer, tests/media/test_relay_layers.py). The leg costs the origin
    one stream per layer in the cascade's rule. A viewer's leg still gets one m-line."""
    origin, edge = MediaRouter(), MediaRouter()
    publish = PublishSession("teacher", origin)
    pub_pc = RTCPeerConnection(client_configuration())
    camera = SimulcastCamera(TextureVideoTrack(640, 360, 10))
    for track in camera.tracks:
        sender = pub_pc.addTransceiver(track, direction="sendonly").sender
        route_keyframe_requests(sender, track.request_keyframe)
    pub_pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
    leg = SubscribeSession("edge:B", origin, relay=True)
    ingest = RelayIngest("origin:A", edge)
    viewers: list[Subscriber] = []
    try:
        await pub_pc.setLocalDescription(await pub_pc.createOffer())
        mids = [str(t.mid) for t in pub_pc.getTransceivers()]
        answer = await publish.apply_offer(
            pub_pc.localDescription.sdp,
            {m: "camera" for m in mids[:3]} | {mids[3]: "microphone"},
            {m: i for i, m in enumerate(mids[:3])},
        )
        await pub_pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        ids = sorted({t.track_id for t in answer.published})
        camera_id = next(t.track_id for t in answer.published if t.kind == "video")

        offer = await leg.set_tracks(ids)
        assert offer is not None
        assert sorted(t.layer for t in offer.tracks if t.track_id == camera_id) == [0, 1, 2]
        assert [t.layer for t in offer.tracks if t.track_id != camera_id] == [None]
        assert sorted(leg.layer_counts()) == [1, 3]
        assert rule.leg_streams(leg.layer_counts()) == 3
        await negotiate(leg, ingest, offer)

        copy = edge.get(camera_id)
        assert isinstance(copy, LayeredTrack) and len(copy.layers) == 3
        assert (copy.publisher_id, copy.source) == ("teacher", "camera")
        assert set(ingest.relayed().values()) == set(ids)

        at_edge = Subscriber(SubscribeSession("e1", edge))
        at_origin = Subscriber(SubscribeSession("o1", origin))
        viewers += [at_edge, at_origin]
        await asyncio.gather(at_edge.subscribe(ids), at_origin.subscribe(ids))
        # A viewer gets one m-line per track, layered or not, wherever it is served.
        for viewer in viewers:
            assert sorted(t.layer is None for t in viewer.session.tracks()) == [True, True]
        await wait_for(
            lambda: all(v.by_track(camera_id).frames > 10 for v in viewers),
            10,
            "the camera decoding at the edge viewer and at the origin viewer",
        )
        # The edge viewer started on the lowest layer, served by the edge's own selector.
        edge_view = copy.stats.snapshot()["subscribers"]["e1"]
        assert edge_view["layer"] >= 0

        # The camera ends at the origin; the leg, renegotiated (the cascade does after every
        # change), stops sending its layers' m-lines: the edge's copy ends.
        origin.unpublish(camera_id)
        await negotiate(leg, ingest, await leg.set_tracks(ids))
        await wait_for(lambda: copy.ended, 3, "the edge's copy in layers ended")
        assert {t.track_id for t in edge.tracks()} == set(ids) - {camera_id}
    finally:
        for v in viewers:
            await v.close()
        await leg.close()
        await ingest.close()
        camera.stop()
        await pub_pc.close()
        await publish.close()
        origin.close()
        edge.close()
