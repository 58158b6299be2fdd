"""The subscribe peer connection of one participant: the server offers, the client answers.

The caller says which published tracks this participant should receive
(:meth:`SubscribeSession.set_tracks`); the session adds, reuses or deactivates send-only
transceivers and returns an offer. Only the server ever offers on this connection, so there is
no glare: a change requested while an offer is outstanding is remembered, and
:meth:`SubscribeSession.apply_answer` returns the follow-up offer.

A node-to-node leg (``relay=True``: the participant is another node, signaling/relay.py)
is not a viewer: a track sent in layers crosses it as every layer, one m-line each
(``SubscribedTrack.layer``), so that the receiving node can republish it in layers and choose
per viewer; no layer selector runs on the leg.

Each method checks the state and changes it before its first await (``OFFERING`` while an offer
is being made, ``APPLYING`` while an answer is applied), so two calls that interleave at their
awaits cannot both pass one check: the second is remembered or refused, never applied twice.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidStateError, OperationError

from media import attach_track
from media.forwarder import ForwardedTrack, SubscriberTrack
from media.ice import announce_address, bind_media_ports, rtc_configuration
from media.internals import set_stream_id
from media.router import MediaRouter
from media.screen import ScreenSubscriberTrack
from media.simulcast import LayeredSubscriberTrack, LayeredTrack
from signaling.candidates import CandidateBuffer
from signaling.codecs import CodecPolicy, with_opus_fmtp
from signaling.description import parse_description
from signaling.errors import SignalingError

logger = logging.getLogger(__name__)

RECEIVING_DIRECTIONS = ("recvonly", "sendrecv")


class SubscribeState(enum.Enum):
    STABLE = "stable"
    OFFERING = "offering"  # creating and setting the local offer
    HAVE_LOCAL_OFFER = "have-local-offer"
    APPLYING = "applying"  # applying the client's answer
    CLOSED = "closed"


BUSY = (SubscribeState.OFFERING, SubscribeState.HAVE_LOCAL_OFFER, SubscribeState.APPLYING)


@dataclass(frozen=True)
class SubscribedTrack:
    """A track the client receives, and the m-line (mid) it arrives on.

    ``layer``: on a node-to-node leg, which layer of a track sent in layers this m-line
    carries (0 = lowest; every layer has its own m-line); None on a viewer's leg.
    """

    track_id: str
    mid: str
    publisher_id: str
    source: str
    kind: str
    layer: int | None = None


# What one transceiver sends: a track id, and the layer of it on a relay leg (else None).
StreamKey = tuple[str, int | None]


@dataclass(frozen=True)
class SubscribeOffer:
    """The server's offer and the complete mid mapping once the client applies it."""

    sdp: str
    tracks: list[SubscribedTrack]


class SubscribeSession:
    """Subscribe leg of one participant. All methods run on the event loop."""

    def __init__(
        self,
        participant_id: str,
        router: MediaRouter,
        *,
        codecs: CodecPolicy | None = None,
        configuration: RTCConfiguration | None = None,
        public_address: str | None = None,
        relay: bool = False,
    ) -> None:
        self.participant_id = participant_id
        self.relay = relay
        self.state = SubscribeState.STABLE
        self._router = router
        self._codecs = codecs or CodecPolicy()
        self._public_address = public_address
        self.pc = RTCPeerConnection(configuration or rtc_configuration())
        self._candidates = CandidateBuffer(self.pc)
        self._desired: set[str] = set()
        # (track id, layer) -> (transceiver, subscriber track) currently sent.
        self._sending: dict[StreamKey, tuple[RTCRtpTransceiver, SubscriberTrack]] = {}
        # Deactivated transceivers, reused for the next track of the same kind.
        self._free: list[RTCRtpTransceiver] = []
        self._negotiated = False
        self._offer: SubscribeOffer | None = None  # the last offer made
        # on_layer(track_id, layer): the layer this viewer receives of a track sent in layers
        # changed (-1: video paused for its connection, audio continues).
        self.on_layer: Callable[[str, int], None] | None = None

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    def tracks(self) -> list[SubscribedTrack]:
        """What the client receives (mids are known once an offer has been made)."""
        out = []
        for (track_id, layer), (transceiver, track) in self._sending.items():
            if transceiver.mid is None:
                continue
            source = track.source
            out.append(
                SubscribedTrack(
                    track_id,
                    transceiver.mid,
                    source.publisher_id,
                    source.source,
                    source.kind,
                    layer,
                )
            )
        return out

    def layer_counts(self) -> list[int]:
        """Per track sent, how many streams carry it: its layers on a relay leg, else 1."""
        return list(Counter(track_id for track_id, _ in self._sending).values())

    async def set_tracks(self, track_ids: Iterable[str]) -> SubscribeOffer | None:
        """Receive exactly ``track_ids``; returns an offer, or None if nothing to negotiate now.

        Unknown or ended track ids are left out (see ``SubscribeOffer.tracks``). While an
        offer is outstanding the change is remembered and comes out of :meth:`apply_answer`.
        """
        if self.state is SubscribeState.CLOSED:
            raise SignalingError("closed", "subscribe session is closed")
        self._desired = set(track_ids)
        if self.state in BUSY:
            return None  # comes out of apply_answer() as the follow-up offer
        return await self._offer_if_changed()

    async def apply_answer(self, sdp: str) -> SubscribeOffer | None:
        """Apply the client's answer; returns a follow-up offer if changes are pending."""
        if self.state is SubscribeState.CLOSED:
            raise SignalingError("closed", "subscribe session is closed")
        if self.state is not SubscribeState.HAVE_LOCAL_OFFER:
            raise SignalingError("conflict", "no offer is outstanding")
        description = parse_description(sdp)
        for media in description.media:
            if media.direction in RECEIVING_DIRECTIONS:
                self._codecs.check(media)
        self.state = SubscribeState.APPLYING
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except (InvalidStateError, InternalError, OperationError, ValueError) as exc:
            if self.state is SubscribeState.APPLYING:
                self.state = SubscribeState.HAVE_LOCAL_OFFER  # the offer still waits for an answer
            raise SignalingError("bad_request", f"answer rejected: {exc}") from None
        if self.state is SubscribeState.CLOSED:
            raise SignalingError("closed", "subscribe session is closed")
        self.state = SubscribeState.STABLE
        self._negotiated = True
        await self._candidates.flush()
        return await self._offer_if_changed()

    async def add_ice_candidate(self, candidate: Mapping[str, Any] | None) -> None:
        """A trickled client candidate (``RTCIceCandidateInit`` shape); None = end."""
        if self.state is SubscribeState.CLOSED:
            raise SignalingError("closed", "subscribe session is closed")
        await self._candidates.add(candidate)

    async def close(self) -> None:
        if self.state is SubscribeState.CLOSED:
            return
        self.state = SubscribeState.CLOSED
        for _, track in self._sending.values():
            track.stop()
        self._sending.clear()
        await self.pc.close()

    # -- internals --------------------------------------------------------------------------

    async def _offer_if_changed(self) -> SubscribeOffer | None:
        changed = False
        # Tracks no longer wanted, or ended by their publisher.
        for key, (transceiver, track) in list(self._sending.items()):
            if key[0] in self._desired and track.readyState == "live":
                continue
            # Detach first so the sender's RTP loop idles instead of ending (transceiver reuse).
            transceiver.sender.replaceTrack(None)
            track.stop()
            transceiver.direction = "inactive"
            self._free.append(transceiver)
            del self._sending[key]
            changed = True
        sent = {track_id for track_id, _ in self._sending}
        for track_id in sorted(self._desired - sent):
            try:
                forwarded = self._router.get(track_id)
            except KeyError:
                continue
            if forwarded.ended:
                continue
            for key, track in self._subscribe(track_id, forwarded):
                reused = self._reuse(track)
                if reused is None:
                    reused = attach_track(self.pc, track)
                    reused.setCodecPreferences(self._codecs.preferences(track.kind))
                self._sending[key] = (reused, track)
                changed = True
        if not changed:
            return None
        self.state = SubscribeState.OFFERING
        try:
            offer = await self.pc.createOffer()
            bind_media_ports(self.pc)  # no-op unless the node has one media UDP or TCP port
            await self.pc.setLocalDescription(offer)
        except BaseException:
            if self.state is SubscribeState.OFFERING:
                self.state = SubscribeState.STABLE
            raise
        if self.state is SubscribeState.CLOSED:
            raise SignalingError("closed", "subscribe session is closed")
        self.state = SubscribeState.HAVE_LOCAL_OFFER
        sdp = with_opus_fmtp(self.pc.localDescription.sdp)
        if self._public_address:
            sdp = announce_address(sdp, self._public_address)
        self._offer = SubscribeOffer(sdp, self.tracks())
        return self._offer

    def _subscribe(
        self, track_id: str, forwarded: ForwardedTrack | LayeredTrack
    ) -> list[tuple[StreamKey, SubscriberTrack]]:
        if self.relay and isinstance(forwarded, LayeredTrack):
            # Every layer as it arrived, lowest first: the next node chooses per viewer.
            return [
                ((track_id, index), layer.subscribe(self.participant_id))
                for index, layer in enumerate(forwarded.layers)
            ]
        if self.relay and isinstance(forwarded, ForwardedTrack):
            # Every frame of a screen share too: the next node's viewers choose there.
            return [((track_id, None), forwarded.subscribe(self.participant_id, whole=True))]
        track = forwarded.subscribe(self.participant_id)
        if isinstance(track, LayeredSubscriberTrack | ScreenSubscriberTrack):
            # A screen share's "layer": the temporal layers it gets (its frame rate).
            track.on_change = self._layer_changed
        return [((track_id, None), track)]

    def outstanding(self) -> SubscribeOffer | None:
        """The offer waiting for the client's answer, if one is."""
        return self._offer if self.state is SubscribeState.HAVE_LOCAL_OFFER else None

    def _layer_changed(self, track: LayeredSubscriberTrack | ScreenSubscriberTrack) -> None:
        if self.on_layer is not None:
            self.on_layer(track.source.id, track.layer)

    def _reuse(self, track: SubscriberTrack) -> RTCRtpTransceiver | None:
        for transceiver in self._free:
            if transceiver.kind == track.kind:
                self._free.remove(transceiver)
                transceiver.sender.replaceTrack(track)
                set_stream_id(transceiver.sender, track.source.publisher_id)
                transceiver.direction = "sendonly"
                return transceiver
        return None
