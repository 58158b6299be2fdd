"""A Python participant in a live session: join, publish and receive media with aiortc.

Used by the tests and benchmarks; a script can use it to join a lesson as a camera.
The publish leg offers to the server; the subscribe leg answers the server's offers, which
arrive in the ``rtc.subscribe`` acknowledgement and later as ``rtc.offer`` events.

The participant joins again by itself, publishing the same tracks and subscribing again, when
the session moved to another node (a ``session.moved`` event in a class stream: its node was
lost or is restarting), or when its Socket.IO connection came back and the server no longer has
its peer connections. ``rejoins`` counts how often. When the server still has them (the
connection dropped, the media did not), it *resumes*: joins with ``resume`` and keeps its peer
connections as they are; ``resumes`` counts how often. When the server that delivered
its media as an edge of the lesson is lost (``rtc.resubscribe``), it opens its subscribe
connection again (the lesson places it on another server); ``resubscribes`` counts how often.
When it published on that server (``rtc.republish``, after ``rtc.resubscribe`` when it was
served there too), it publishes the same tracks again on a new publish connection, after its
subscribe connection is placed again (so on the server that serves it next); ``republishes``
counts how often.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)

from clients.homeroom import HomeroomClient, RequestError, retry_delay_s
from clients.simulcast import EncodedLayerTrack, SimulcastCamera
from media.internals import retry_nacks, route_keyframe_requests

log = logging.getLogger(__name__)
# Closing a peer connection whose other end is gone never takes longer than this.
CLOSE_TIMEOUT_S = 2.0

TrackHandler = Callable[[MediaStreamTrack, dict[str, Any]], None]


def configuration(ice_servers: list[dict[str, Any]], relay_only: bool = False) -> RTCConfiguration:
    """The client's peer connections: always an explicit list of ICE servers (aiortc would
    otherwise add Google's public STUN server), and every m-line on one transport.

    ``max-bundle``, not aiortc's default ``balanced``: with ``balanced``, an offer whose
    m-lines include two or more of a kind that is not the first m-line's (a meeting's second
    microphone after a camera, or two more cameras after a microphone) gives those the
    transport of the first m-line of their kind, which BUNDLE then closes without moving them
    (aiortc 1.16 skips m-lines it already marked bundled): their receivers never start, and
    their packets go to the first receiver of their kind, which gets two streams at once
    (videos that do not decode, voices not heard). The server offers BUNDLE always.
    """
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers
        ],
        # Relay only: gather no host candidates and use only the TURN server's relayed address,
        # as a client behind a firewall that lets nothing but TURN through.
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )


class LiveParticipant:
    def __init__(
        self, client: HomeroomClient, session_id: int, *, relay_only: bool = False
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.relay_only = relay_only
        self.ice_servers: list[dict[str, Any]] = []
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self.tracks_by_mid: dict[str, dict[str, Any]] = {}
        self.received: dict[str, MediaStreamTrack] = {}  # mid -> remote track
        self.on_track: TrackHandler | None = None
        self.state: dict[str, Any] = {}
        self.notices: list[tuple[str, dict[str, Any]]] = []
        self._offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._offer_task: asyncio.Task[None] | None = None
        for name in (
            "rtc.offer",
            "rtc.resubscribe",
            "rtc.republish",
            "session.state",
            "session.lobby",
            "session.ended",
            "stage.invited",
            "media.muted",
            "media.layer",
            "rtc.unpublished",
            "session.removed",
            "session.qa_streams",
        ):
            client.sio.on(name, self._handler(name))
        self._follows: set[asyncio.Task[None]] = set()
        # What to restore when joining again: the tracks published, whether subscribed.
        self.published: dict[MediaStreamTrack, str] = {}
        self.published_layers: dict[MediaStreamTrack, int] = {}
        self.subscribed = False
        self.joined = False
        self.rejoins = 0
        self.resumes = 0
        self.resubscribes = 0
        self.republishes = 0
        self._moved_to: str | None = None
        self._rejoin_lock = asyncio.Lock()
        client.on_event(self._on_stream_event)
        client.on_reconnect(self._on_reconnect)

    async def _follow(self, streams: list[str]) -> None:
        fresh = [x for x in streams if x not in self.client.cursors]
        for stream in fresh:
            self.client.follow(stream, 0)
        if fresh:
            await self.client.sync()

    def _handler(self, name: str) -> Callable[[dict[str, Any]], Any]:
        async def handle(data: dict[str, Any]) -> None:
            if data.get("session_id", self.session_id) != self.session_id and name != (
                "session.state"
            ):
                return
            if name == "rtc.offer":
                await self._offers.put(data)
            elif name == "rtc.resubscribe":
                self._spawn(self.resubscribe())
            elif name == "rtc.republish":
                self._spawn(self.republish())  # after the resubscribe told before it (the lock)
            elif name == "session.state":
                if data.get("id") == self.session_id:
                    self.state = data
            elif name == "session.qa_streams":
                # A classroom was linked: its questions too, from the session's start.
                task = asyncio.get_running_loop().create_task(self._follow(data["qa_streams"]))
                self._follows.add(task)
                task.add_done_callback(self._follows.discard)
            else:
                self.notices.append((name, data))

        return handle

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._follows.add(task)
        task.add_done_callback(self._follows.discard)

    def _on_stream_event(self, ev: dict[str, Any]) -> None:
        data = ev.get("data") or {}
        if ev.get("type") != "session.moved" or data.get("id") != self.session_id:
            return
        # A dual lesson announces the move in every classroom's stream: join again once.
        if not self.joined or data.get("node") == self._moved_to:
            return
        self._moved_to = data.get("node")
        self._spawn(self.rejoin())

    async def _on_reconnect(self) -> None:
        if self.joined:
            await self.rejoin(resume=True)

    def _resumable(self) -> bool:
        """It has every peer connection it should (a join interrupted half-way has not), each
        negotiated and up, and the publish one not in the middle of a negotiation it started
        (its answer may have been lost with the connection)."""
        wanted = [(self.published, self.publish_pc), (self.subscribed, self.subscribe_pc)]
        pcs = [pc for want, pc in wanted if want]
        if not pcs or any(pc is None or pc.remoteDescription is None for pc in pcs):
            return False
        if self.publish_pc is not None and self.publish_pc.signalingState != "stable":
            return False
        return all(pc.connectionState not in ("failed", "closed") for pc in pcs if pc)

    async def rejoin(self, *, resume: bool = False) -> None:
        """Join again and restore the media: publish the same tracks, subscribe again.

        ``resume`` (its Socket.IO connection came back): if the server still has its peer
        connections too, they go on as they are (``resumes`` counts it) and nothing else is
        done; otherwise it starts over."""
        async with self._rejoin_lock:
            resume = resume and self._resumable()
            ack = await self._join_retrying(resume)
            if ack.get("resumed"):
                self.resumes += 1
                return
            old = [pc for pc in (self.publish_pc, self.subscribe_pc) if pc is not None]
            self.publish_pc = self.subscribe_pc = None
            if self._offer_task is not None:
                self._offer_task.cancel()
                self._offer_task = None
            self._offers = asyncio.Queue()
            for pc in old:  # its server may be gone: closing may wait, joining need not
                self._spawn(self._close_quietly(pc))
            if self.published:
                await self.publish(dict(self.published), dict(self.published_layers))
            if self.subscribed:
                await self.subscribe()
            self.rejoins += 1

    async def _join_retrying(self, resume: bool) -> dict[str, Any]:
        for attempt in range(20):
            try:
                return await self.join(resume=resume)
            except RequestError as exc:
                # The session's new node may not be known everywhere yet: try again
                # (after the wait a busy server asks for, with jitter, when it names one).
                if exc.code not in ("unavailable", "not_found") or attempt == 19:
                    raise
                busy = "retry_after_s" in exc.details
                await asyncio.sleep(retry_delay_s(exc.details) if busy else 0.25)
        raise AssertionError("unreachable")

    async def join(self, *, resume: bool = False) -> dict[str, Any]:
        request: dict[str, Any] = {"session_id": self.session_id}
        if resume:
            request["resume"] = True
        ack = await self.client.request("session.join", request)
        self.joined = True
        self.ice_servers = ack["ice_servers"]
        if "participants" in ack["session"]:
            self.state = ack["session"]
        if ack["qa_streams"]:
            # The session's Q&A: follow it from its start.
            for stream in ack["qa_streams"]:
                if stream not in self.client.cursors:
                    self.client.follow(stream, 0)
            await self.client.sync()
        return ack

    async def publish(
        self,
        tracks: Mapping[MediaStreamTrack, str],
        layers: Mapping[MediaStreamTrack, int] | None = None,
    ) -> dict[str, Any]:
        """Publish tracks (track -> source: camera, microphone, screen), renegotiating if needed.

        ``layers`` (track -> index, 0 = lowest) marks video tracks that are the same source in
        several qualities (see :meth:`publish_layers`)."""
        layers = layers or {}
        self.published.update(tracks)
        self.published_layers.update(layers)
        if self.publish_pc is None:
            self.publish_pc = RTCPeerConnection(configuration(self.ice_servers, self.relay_only))
        pc = self.publish_pc
        senders = {s.track for s in pc.getSenders() if s.track is not None}
        for track in tracks:
            if track not in senders:
                sender = pc.addTransceiver(track, direction="sendonly").sender
                if isinstance(track, EncodedLayerTrack):
                    # Pre-encoded: the server's PLI must reach the layer's own encoder.
                    route_keyframe_requests(sender, track.request_keyframe)
        await pc.setLocalDescription(await pc.createOffer())
        by_mid = {
            t.mid: t.sender.track
            for t in pc.getTransceivers()
            if t.mid is not None and t.sender.track in tracks
        }
        request: dict[str, Any] = {
            "session_id": self.session_id,
            "sdp": pc.localDescription.sdp,
            "sources": {mid: tracks[track] for mid, track in by_mid.items()},
        }
        if layers:
            request["layers"] = {mid: layers[t] for mid, t in by_mid.items() if t in layers}
        ack = await self.client.request("rtc.publish", request)
        await pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], "answer"))
        return ack

    async def publish_layers(
        self,
        camera: SimulcastCamera,
        source: str = "camera",
        others: Mapping[MediaStreamTrack, str] | None = None,
    ) -> dict[str, Any]:
        """Publish ``camera``'s layers as one ``source`` (each viewer gets the layer its link
        carries), with ``others`` (e.g. the microphone) in the same offer."""
        tracks: dict[MediaStreamTrack, str] = {t: source for t in camera.tracks}
        tracks.update(others or {})
        return await self.publish(tracks, {t: t.index for t in camera.tracks})

    async def subscribe(self) -> None:
        """Open the subscribe leg; later offers are answered as they come."""
        self.subscribed = True
        if self.subscribe_pc is None:
            self.subscribe_pc = RTCPeerConnection(configuration(self.ice_servers, self.relay_only))
            self.subscribe_pc.on("track", self._track)
            self._offer_task = asyncio.get_running_loop().create_task(self._answer_offers())
        ack = await self.client.request("rtc.subscribe", {"session_id": self.session_id})
        if ack["offer"] is not None:
            await self._offers.put(ack["offer"])

    async def resubscribe(self) -> None:
        """A fresh subscribe connection (the one it had lost its server)."""
        async with self._rejoin_lock:
            old, self.subscribe_pc = self.subscribe_pc, None
            if self._offer_task is not None:
                self._offer_task.cancel()
                self._offer_task = None
            self._offers = asyncio.Queue()
            if old is not None:  # its server is gone: closing may wait, the new one need not
                self._spawn(self._close_quietly(old))
            if self.subscribed:
                await self.subscribe()
            self.resubscribes += 1

    async def republish(self) -> None:
        """Publish the same tracks again on a fresh publish connection (the one it had lost its
        server, and its tracks ended for everyone)."""
        async with self._rejoin_lock:
            old, self.publish_pc = self.publish_pc, None
            if old is not None:  # its server is gone: closing may wait, the new one need not
                self._spawn(self._close_quietly(old))
            if self.published:
                await self.publish(dict(self.published), dict(self.published_layers))
            self.republishes += 1

    @staticmethod
    async def _close_quietly(pc: RTCPeerConnection) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await pc.close()

    async def _answer_offers(self) -> None:
        while True:
            offer = await self._offers.get()
            pc = self.subscribe_pc
            assert pc is not None
            for t in offer["tracks"]:
                self.tracks_by_mid[t["mid"]] = t
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            try:
                await self.client.request(
                    "rtc.answer", {"session_id": self.session_id, "sdp": pc.localDescription.sdp}
                )
            except Exception:
                continue

    def _track(self, track: MediaStreamTrack) -> None:
        assert self.subscribe_pc is not None
        transceiver = next(
            t for t in self.subscribe_pc.getTransceivers() if t.receiver.track is track
        )
        mid = transceiver.mid
        assert mid is not None
        # Before its first packet: a lost retransmission is asked for again (a decoder waits
        # on the hole otherwise; media.internals.nack).
        retry_nacks(transceiver.receiver)
        self.received[mid] = track
        if self.on_track is not None:
            self.on_track(track, self.tracks_by_mid.get(mid, {"mid": mid}))

    def info(self, mid: str) -> dict[str, Any]:
        return self.tracks_by_mid.get(mid, {})

    async def close(self) -> None:
        self.joined = False
        for task in list(self._follows):
            task.cancel()
        if self._offer_task is not None:
            self._offer_task.cancel()
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                await pc.close()
