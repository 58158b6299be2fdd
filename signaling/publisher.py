"""The publish peer connection of one participant: the client offers, the server answers.

The client renegotiates whenever it adds or removes a track (camera on, screen share off): each
offer goes through :meth:`PublishSession.apply_offer`. Every m-line the client sends on is
offered to the ``authorize`` callback; an allowed one becomes a ``ForwardedTrack`` in the
router, a refused one is answered ``inactive`` and its frames (if any) are dropped undecoded.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import InternalError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import SessionDescription

from media.audio_level import AudioLevel
from media.forwarder import ForwardedTrack
from media.ice import announce_address, bind_media_ports, rtc_configuration
from media.internals import (
    TransportCcSender,
    install_audio_level,
    install_ingest,
    install_transport_cc,
    negotiate_transport_cc,
    send_pli,
    share_bandwidth_estimate,
)
from media.router import MAX_LAYERS, SOURCES, MediaRouter
from signaling.candidates import CandidateBuffer
from signaling.codecs import CodecPolicy, with_opus_fmtp
from signaling.description import parse_description
from signaling.errors import SignalingError

logger = logging.getLogger(__name__)

SENDING_DIRECTIONS = ("sendonly", "sendrecv")


class PublishState(enum.Enum):
    STABLE = "stable"  # no offer being applied
    APPLYING = "applying"  # inside apply_offer()
    CLOSED = "closed"


@dataclass(frozen=True)
class TrackRequest:
    """An m-line the client wants to publish on; the ``authorize`` callback decides."""

    participant_id: str
    mid: str
    kind: str
    source: str
    # The client's track id from the m-line's msid, if it sent one.
    client_track_id: str | None


@dataclass(frozen=True)
class PublishedTrack:
    mid: str
    kind: str
    source: str
    track_id: str


@dataclass(frozen=True)
class RejectedTrack:
    mid: str
    kind: str
    source: str
    reason: str


@dataclass(frozen=True)
class PublishAnswer:
    """The server's answer, and what this offer changed."""

    sdp: str
    published: list[PublishedTrack] = field(default_factory=list)
    rejected: list[RejectedTrack] = field(default_factory=list)
    # Track ids that this offer ended (the client stopped sending on their m-lines).
    unpublished: list[str] = field(default_factory=list)


# Returns None to allow, or a human-readable reason to refuse.
Authorize = Callable[[TrackRequest], str | None]


class IngestSlot:
    """Per m-line: where the receiver's frames go. The m-line outlives the tracks on it.

    Also the edge end of a node-to-node leg uses it (signaling/relay.py)."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self.receiver = receiver
        self.target: ForwardedTrack | None = None
        # The published track's id: the target's own, or its camera's when it is a layer.
        self.track_id = ""
        # Audio: the publisher's level from its packets' ssrc-audio-level extension.
        self.audio_level: AudioLevel | None = None

    def on_packet(self, codec: RTCRtpCodecParameters, packet: av.Packet) -> None:
        target = self.target
        if target is not None:
            target.on_packet(codec, packet)

    def on_end(self) -> None:
        if self.target is not None:
            self.target.stop()

    def on_gap(self) -> None:
        if self.target is not None:
            self.target.reference_lost()

    def request_pli(self) -> Awaitable[bool]:
        return send_pli(self.receiver)

    def stop(self) -> None:
        """End the track on this m-line; what arrives next is dropped until a new target."""
        if self.target is not None:
            self.target.stop()
            self.target = None

    @property
    def live(self) -> bool:
        return self.target is not None and not self.target.ended


class PublishSession:
    """Publish leg of one participant. All methods run on the event loop."""

    def __init__(
        self,
        participant_id: str,
        router: MediaRouter,
        *,
        authorize: Authorize | None = None,
        codecs: CodecPolicy | None = None,
        configuration: RTCConfiguration | None = None,
        public_address: str | None = None,
    ) -> None:
        self.participant_id = participant_id
        self.state = PublishState.STABLE
        self._router = router
        self._authorize = authorize
        self._codecs = codecs or CodecPolicy()
        self._public_address = public_address
        self.pc = RTCPeerConnection(configuration or rtc_configuration())
        self._candidates = CandidateBuffer(self.pc)
        self._slots: dict[str, IngestSlot] = {}
        # The first video receiver: its bandwidth estimator is every video receiver's (one
        # REMB for the whole connection, as a browser expects: layers on several m-lines).
        self._first_video: RTCRtpReceiver | None = None
        # Transport-wide congestion control when the client offers it (browsers do): its own
        # estimator probes up to what the link carries (docs/media.md).
        self._transport_cc = TransportCcSender()
        self._transport_cc_receivers: set[int] = set()
        self.pc.on("track", self._on_track)

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    def published(self) -> dict[str, str]:
        """mid -> track id of the tracks this participant currently publishes."""
        return {mid: slot.track_id for mid, slot in self._slots.items() if slot.live}

    def audio_levels(self, now: float) -> dict[str, dict[str, Any] | None]:
        """Source (microphone, screen_audio) -> its level now (``AudioLevel.snapshot``; None:
        nothing recent, or the publisher sends no ssrc-audio-level extension)."""
        return {
            slot.target.source: slot.audio_level.snapshot(now)
            for slot in self._slots.values()
            if slot.audio_level is not None and slot.target is not None and slot.live
        }

    async def apply_offer(
        self,
        sdp: str,
        sources: Mapping[str, str] | None = None,
        layers: Mapping[str, int] | None = None,
    ) -> PublishAnswer:
        """Apply the client's offer and return the answer.

        ``sources`` maps the client's mid (or its msid track id) to a source name
        (``camera``, ``microphone``, ``screen``, ``screen_audio``); without one, a video
        m-line is a camera and an audio m-line a microphone.

        ``layers`` maps mids of video m-lines to a layer index (0 = lowest quality): the
        m-lines of one source with layer indexes 0..n-1 (n <= 3) are the same camera or
        screen in n qualities, published as one track whose viewers each get the layer their
        link carries (``media.simulcast``).
        """
        if self.state is PublishState.CLOSED:
            raise SignalingError("closed", "publish session is closed")
        if self.state is PublishState.APPLYING:
            raise SignalingError("conflict", "another offer is being applied")
        description = parse_description(sdp)
        if not any(m.kind in ("audio", "video") for m in description.media):
            raise SignalingError("bad_request", "offer has no audio or video m-line")
        for media in description.media:
            if media.direction in SENDING_DIRECTIONS:
                self._codecs.check(media)
        self.state = PublishState.APPLYING
        try:
            return await self._apply(sdp, description, sources or {}, layers or {})
        finally:
            if self.state is PublishState.APPLYING:
                self.state = PublishState.STABLE

    async def add_ice_candidate(self, candidate: Mapping[str, Any] | None) -> None:
        """A trickled client candidate (``RTCIceCandidateInit`` shape); None = end."""
        if self.state is PublishState.CLOSED:
            raise SignalingError("closed", "publish session is closed")
        await self._candidates.add(candidate)

    def unpublish(self, mid: str) -> None:
        """Stop forwarding what arrives on ``mid`` (the client is told by the caller)."""
        slot = self._slots.get(mid)
        if slot is not None and slot.target is not None:
            slot.target.stop()
            slot.target = None

    def transport_cc_counts(self) -> dict[str, int]:
        """Transport-cc feedback sent on this leg (all 0 if the client did not offer it)."""
        return self._transport_cc.counts()

    async def close(self) -> None:
        if self.state is PublishState.CLOSED:
            return
        self.state = PublishState.CLOSED
        for slot in self._slots.values():
            if slot.target is not None:
                slot.target.stop()
        self._transport_cc.close()
        await self.pc.close()

    # -- internals --------------------------------------------------------------------------

    async def _apply(
        self,
        sdp: str,
        description: SessionDescription,
        sources: Mapping[str, str],
        layers: Mapping[str, int],
    ) -> PublishAnswer:
        # Pre-create receiving transceivers for new m-lines so their codec preferences are in
        # place when setRemoteDescription negotiates (it matches transceivers without a mid).
        known = {t.mid for t in self.pc.getTransceivers()}
        for media in description.media:
            if media.kind in ("audio", "video") and media.rtp.muxId not in known:
                created = self.pc.addTransceiver(media.kind, direction="recvonly")
                created.setCodecPreferences(self._codecs.preferences(media.kind))
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except (InvalidStateError, InternalError, OperationError, ValueError) as exc:
            raise SignalingError("bad_request", f"offer rejected: {exc}") from None
        await self._candidates.flush()
        self._accept_transport_cc(description)

        answer = PublishAnswer(sdp="")
        # source -> [(layer index, mid, transceiver, slot)] of the m-lines sent in layers.
        groups: dict[str, list[tuple[int, str, RTCRtpTransceiver, IngestSlot]]] = {}
        transceivers = {t.mid: t for t in self.pc.getTransceivers()}
        for media in description.media:
            mid = media.rtp.muxId
            transceiver = transceivers.get(mid)
            slot = self._slots.get(mid)
            if transceiver is None or media.kind not in ("audio", "video"):
                continue
            sending = media.port != 0 and media.direction in SENDING_DIRECTIONS
            if not sending:
                if slot is not None and slot.target is not None:
                    if not slot.target.ended:
                        answer.unpublished.append(slot.track_id)
                    self.unpublish(mid)
                continue
            client_track_id = description.webrtc_track_id(media)
            default = "camera" if media.kind == "video" else "microphone"
            source = sources.get(mid) or sources.get(client_track_id or "") or default
            if slot is None or slot.live:
                continue
            if media.kind == "video" and mid in layers:
                groups.setdefault(source, []).append((layers[mid], mid, transceiver, slot))
                continue
            request = TrackRequest(self.participant_id, mid, media.kind, source, client_track_id)
            reason = self._check(request)
            if reason is not None:
                transceiver.direction = "inactive"
                answer.rejected.append(RejectedTrack(mid, media.kind, source, reason))
                continue
            transceiver.direction = "recvonly"
            slot.target = self._router.publish(
                self.participant_id, source, media.kind, slot.request_pli
            )
            slot.track_id = slot.target.id
            answer.published.append(PublishedTrack(mid, media.kind, source, slot.target.id))
        for source, members in groups.items():
            self._publish_layers(source, sorted(members, key=lambda m: m[0]), answer)

        local = await self.pc.createAnswer()
        bind_media_ports(self.pc)  # no-op unless the node has one media UDP or TCP port
        await self.pc.setLocalDescription(local)
        sdp_out = with_opus_fmtp(self.pc.localDescription.sdp)
        if self._public_address:
            sdp_out = announce_address(sdp_out, self._public_address)
        return PublishAnswer(sdp_out, answer.published, answer.rejected, answer.unpublished)

    def _accept_transport_cc(self, description: SessionDescription) -> None:
        """Negotiate transport-cc on the m-lines that offer it and report every packet of
        their receivers in the connection's feedback (instead of REMB)."""
        for receiver in negotiate_transport_cc(self.pc, description):
            if id(receiver) in self._transport_cc_receivers:
                continue
            self._transport_cc_receivers.add(id(receiver))
            install_transport_cc(receiver, self._transport_cc)

    def _publish_layers(
        self,
        source: str,
        members: list[tuple[int, str, RTCRtpTransceiver, IngestSlot]],
        answer: PublishAnswer,
    ) -> None:
        """Publish the m-lines of one source sent in layers as one track, or refuse them all."""
        reason = self._check(
            TrackRequest(self.participant_id, members[0][1], "video", source, None)
        )
        if reason is None and [m[0] for m in members] != list(range(len(members))):
            reason = "layers of one source must be numbered 0, 1, ... without gaps"
        if reason is None and len(members) > MAX_LAYERS:
            reason = f"at most {MAX_LAYERS} layers"
        if reason is not None:
            for _, mid, transceiver, _ in members:
                transceiver.direction = "inactive"
                answer.rejected.append(RejectedTrack(mid, "video", source, reason))
            return
        track, layer_tracks = self._router.publish_layers(
            self.participant_id, source, [slot.request_pli for _, _, _, slot in members]
        )
        for (_, mid, transceiver, slot), layer in zip(members, layer_tracks, strict=True):
            transceiver.direction = "recvonly"
            slot.target = layer
            slot.track_id = track.id
            answer.published.append(PublishedTrack(mid, "video", source, track.id))

    def _check(self, request: TrackRequest) -> str | None:
        expected = SOURCES.get(request.source)
        if expected is None:
            return f"unknown source {request.source!r}"
        if expected != request.kind:
            return f"source {request.source!r} must be {expected}, not {request.kind}"
        if any(
            t.publisher_id == self.participant_id and t.source == request.source
            for t in self._router.tracks()
        ):
            return f"{request.source!r} is already published"
        if self._authorize is not None:
            return self._authorize(request)
        return None

    def _on_track(self, track: MediaStreamTrack) -> None:
        # Runs inside setRemoteDescription, before the receiver's worker starts: the only
        # moment the ingest hook can be installed.
        for transceiver in self.pc.getTransceivers():
            receiver = transceiver.receiver
            if receiver.track is track and transceiver.mid is not None:
                slot = IngestSlot(receiver)
                self._slots[transceiver.mid] = slot
                install_ingest(receiver, slot.on_packet, slot.on_end, slot.on_gap)
                if track.kind == "audio":
                    slot.audio_level = AudioLevel()
                    install_audio_level(receiver, slot.audio_level.packet)
                else:
                    self._first_video = self._first_video or receiver
                    share_bandwidth_estimate(receiver, self._first_video)
                return
        logger.warning("publish %s: track %s without a transceiver", self.participant_id, track)
