"""The receiving end of a node-to-node leg: an edge node's copy of an origin's tracks.

A lesson bigger than one node (issue #13) keeps one origin node, where its publishers publish,
and grows edge nodes for more viewers. The origin feeds an edge exactly as it feeds a viewer:
through an ordinary :class:`~signaling.subscriber.SubscribeSession` whose participant is the
edge (so an edge costs the origin one subscribe leg, and keyframe requests from the edge are
coalesced with every other viewer's). This module is the other end: it answers the origin's
offers and publishes every track that arrives into the edge's own :class:`MediaRouter` under
the *origin's* track id, publisher and source, so the edge's viewers subscribe to it like any
local track and see the same ids wherever they are served.

Encoded media only: frames arrive reassembled but still encoded (the same ingest hook a
publisher leg uses, which hands a frame on as soon as its marker packet completes it, so the
hop adds the network time, not a frame interval) and leave the edge packetized afresh for its
viewers. A keyframe request
from an edge viewer goes up this leg as a PLI, where the origin coalesces it.

A track sent in layers crosses the leg as every layer, one m-line each (the offer's ``tracks``
says which layer each m-line carries): this end republishes them as one
:class:`~media.simulcast.LayeredTrack` with the origin's track id, so each viewer here gets the
layer its own link carries, as at the origin, and a keyframe request for one layer goes up as a
PLI on that layer's m-line only.

The origin only ever offers on this connection (it is a subscribe leg there), so there is no
glare: every offer, with its ``tracks`` list naming what each m-line carries, goes through
:meth:`RelayIngest.apply_offer`, which returns the answer. An m-line the origin stops sending
on (a track ended, unsubscribed, or its transceiver about to be reused for another track) ends
the edge's copy, and the edge's router tells its listeners ``unpublished``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamTrack

from media.ice import announce_address, bind_media_ports, rtc_configuration
from media.internals import install_ingest
from media.router import MediaRouter
from signaling.candidates import CandidateBuffer
from signaling.codecs import CodecPolicy, with_opus_fmtp
from signaling.description import parse_description
from signaling.errors import SignalingError
from signaling.publisher import IngestSlot
from signaling.subscriber import SubscribedTrack, SubscribeOffer, SubscribeSession

logger = logging.getLogger(__name__)

SENDING_DIRECTIONS = ("sendonly", "sendrecv")


class RelayState(enum.Enum):
    STABLE = "stable"
    APPLYING = "applying"  # inside apply_offer()
    CLOSED = "closed"


class RelayIngest:
    """The edge end of one leg from an origin node. All methods run on the event loop."""

    def __init__(
        self,
        leg_id: str,
        router: MediaRouter,
        *,
        codecs: CodecPolicy | None = None,
        configuration: RTCConfiguration | None = None,
        public_address: str | None = None,
    ) -> None:
        self.leg_id = leg_id
        self.state = RelayState.STABLE
        self._router = router
        self._codecs = codecs or CodecPolicy()
        self._public_address = public_address
        self.pc = RTCPeerConnection(configuration or rtc_configuration())
        self._candidates = CandidateBuffer(self.pc)
        self._slots: dict[str, IngestSlot] = {}
        self.pc.on("track", self._on_track)

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    def relayed(self) -> dict[str, str]:
        """mid -> track id of the origin tracks this leg currently carries."""
        return {mid: slot.track_id for mid, slot in self._slots.items() if slot.live}

    async def apply_offer(self, offer: SubscribeOffer) -> str:
        """Apply the origin's offer (its SDP and what each m-line carries); returns the answer."""
        if self.state is RelayState.CLOSED:
            raise SignalingError("closed", "relay leg is closed")
        if self.state is RelayState.APPLYING:
            raise SignalingError("conflict", "another offer is being applied")
        description = parse_description(offer.sdp)
        for media in description.media:
            if media.direction in SENDING_DIRECTIONS:
                self._codecs.check(media)
        self.state = RelayState.APPLYING
        try:
            return await self._apply(offer, description)
        finally:
            if self.state is RelayState.APPLYING:
                self.state = RelayState.STABLE

    async def add_ice_candidate(self, candidate: Mapping[str, Any] | None) -> None:
        if self.state is RelayState.CLOSED:
            raise SignalingError("closed", "relay leg is closed")
        await self._candidates.add(candidate)

    async def close(self) -> None:
        """Drop the leg: every track it carried ends on this edge."""
        if self.state is RelayState.CLOSED:
            return
        self.state = RelayState.CLOSED
        for slot in self._slots.values():
            slot.stop()
        await self.pc.close()

    # -- internals --------------------------------------------------------------------------

    async def _apply(self, offer: SubscribeOffer, description: Any) -> str:
        known = {t.mid for t in self.pc.getTransceivers()}
        for media in description.media:
            if media.kind in ("audio", "video") and media.rtp.muxId not in known:
                created = self.pc.addTransceiver(media.kind, direction="recvonly")
                created.setCodecPreferences(self._codecs.preferences(media.kind))
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        except (InvalidStateError, InternalError, OperationError, ValueError) as exc:
            raise SignalingError("bad_request", f"offer rejected: {exc}") from None
        await self._candidates.flush()

        carried: dict[str, SubscribedTrack] = {t.mid: t for t in offer.tracks}
        # track id -> [(layer, slot)] of the m-lines carrying the layers of one track.
        layered: dict[str, list[tuple[int, IngestSlot]]] = {}
        firsts: dict[str, SubscribedTrack] = {}
        for media in description.media:
            mid = media.rtp.muxId
            slot = self._slots.get(mid)
            if slot is None or media.kind not in ("audio", "video"):
                continue
            sending = media.port != 0 and media.direction in SENDING_DIRECTIONS
            track = carried.get(mid) if sending else None
            if track is None or track.kind != media.kind:
                slot.stop()
                continue
            if track.layer is not None and track.kind == "video":
                layered.setdefault(track.track_id, []).append((track.layer, slot))
                firsts.setdefault(track.track_id, track)
                continue
            if slot.live and slot.track_id == track.track_id:
                continue
            self._replace(slot, track.track_id)
            slot.target = self._router.publish(
                track.publisher_id,
                track.source,
                track.kind,
                slot.request_pli,
                track_id=track.track_id,
            )
            slot.track_id = track.track_id
        for track_id, members in layered.items():
            self._publish_layers(firsts[track_id], sorted(members, key=lambda m: m[0]))

        local = await self.pc.createAnswer()
        bind_media_ports(self.pc)  # no-op unless the node has one media UDP or TCP port
        await self.pc.setLocalDescription(local)
        sdp_out = with_opus_fmtp(self.pc.localDescription.sdp)
        if self._public_address:
            sdp_out = announce_address(sdp_out, self._public_address)
        return sdp_out

    def _replace(self, slot: IngestSlot, track_id: str) -> None:
        """Free ``slot`` and every other copy of ``track_id`` for a new copy of it."""
        slot.stop()  # the origin reused this m-line for another track
        for other in self._slots.values():  # a stale copy on another m-line
            if other.target is not None and other.track_id == track_id:
                other.stop()

    def _publish_layers(
        self, track: SubscribedTrack, members: list[tuple[int, IngestSlot]]
    ) -> None:
        """The layers of one track (their m-lines, lowest first) as one track in layers."""
        slots = [slot for _, slot in members]
        if all(s.live and s.track_id == track.track_id for s in slots) and len(slots) == len(
            [s for s in self._slots.values() if s.live and s.track_id == track.track_id]
        ):
            return  # the same layers on the same m-lines: carried already
        for slot in slots:
            self._replace(slot, track.track_id)
        if [index for index, _ in members] != list(range(len(members))):
            logger.warning(
                "relay %s: layers %s of %s", self.leg_id, [m[0] for m in members], track.track_id
            )
            return  # the feeding node sends every layer, numbered from 0, or nothing is right
        _, layers = self._router.publish_layers(
            track.publisher_id,
            track.source,
            [slot.request_pli for slot in slots],
            track_id=track.track_id,
        )
        for slot, layer in zip(slots, layers, strict=True):
            slot.target = layer
            slot.track_id = track.track_id

    def _on_track(self, track: MediaStreamTrack) -> None:
        # Inside setRemoteDescription, before the receiver starts: the only moment to hook it.
        for transceiver in self.pc.getTransceivers():
            receiver = transceiver.receiver
            if receiver.track is track and transceiver.mid is not None:
                slot = IngestSlot(receiver)
                self._slots[transceiver.mid] = slot
                install_ingest(receiver, slot.on_packet, slot.on_end, slot.on_gap)
                return
        logger.warning("relay %s: track %s without a transceiver", self.leg_id, track)


async def negotiate(
    origin: SubscribeSession, edge: RelayIngest, offer: SubscribeOffer | None
) -> None:
    """Carry offers and answers between the two ends of a leg held by one process.

    Across nodes the same exchange crosses the bus; here (tests, benches) it is direct.
    """
    while offer is not None:
        answer = await edge.apply_offer(offer)
        offer = await origin.apply_answer(answer)
