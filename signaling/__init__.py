"""Transport-free WebRTC sessions of one participant: no Socket.IO, no HTTP, only SDP in/out.

Each participant has TWO peer connections (docs/media.md explains why):

Publish leg — the CLIENT offers, the server answers::

    session = PublishSession(participant_id, router, authorize=..., codecs=CodecPolicy("VP8"))
    answer = await session.apply_offer(offer_sdp, sources={"<mid>": "screen", ...})
    # -> PublishAnswer(sdp, published=[PublishedTrack(mid, kind, source, track_id)],
    #                  rejected=[RejectedTrack(mid, kind, source, reason)], unpublished=[ids])
    await session.add_ice_candidate({"candidate": "...", "sdpMid": "0", "sdpMLineIndex": 0})
    session.unpublish(mid)          # server-side stop of what arrives on that m-line
    session.published()             # {mid: track_id}
    await session.close()

  ``authorize(TrackRequest(participant_id, mid, kind, source, client_track_id))`` returns None
  to allow or a reason string to refuse; a refused m-line is answered ``inactive`` and its
  frames are dropped undecoded — tell the client the reason. Every new or re-enabled m-line
  (screen share on again) goes through it. Sources: camera, microphone, screen, screen_audio.

Subscribe leg — the SERVER offers, the client answers::

    session = SubscribeSession(participant_id, router, codecs=CodecPolicy("VP8"))
    offer = await session.set_tracks([track_id, ...])   # SubscribeOffer | None
    # -> SubscribeOffer(sdp, tracks=[SubscribedTrack(track_id, mid, publisher_id, source, kind)])
    follow_up = await session.apply_answer(answer_sdp)  # SubscribeOffer | None
    await session.add_ice_candidate({...})
    await session.close()

  ``set_tracks`` while an offer is outstanding returns None and the change comes back from
  ``apply_answer`` as the next offer: send every non-None ``SubscribeOffer`` to the client.
  When the router reports a track ``unpublished`` (``MediaRouter.add_listener``), call
  ``set_tracks`` again without it. Muting (``MediaRouter.pause``) needs no renegotiation.

ICE: aiortc gathers every server candidate before the local description is set, so server
candidates are in the SDP and the server never trickles. Client candidates may be trickled;
ones that arrive before their description are buffered. Build the ``RTCConfiguration`` with
``media.ice.rtc_configuration`` (never aiortc's default Google STUN).

Errors: every method raises ``SignalingError`` with a stable ``code``: ``bad_request``,
``conflict``, ``unsupported_codec``, ``closed`` (and ``forbidden`` for callers' use).
"""

from __future__ import annotations

from signaling.codecs import CodecPolicy
from signaling.errors import SignalingError
from signaling.publisher import (
    Authorize,
    PublishAnswer,
    PublishedTrack,
    PublishSession,
    PublishState,
    RejectedTrack,
    TrackRequest,
)
from signaling.subscriber import (
    SubscribedTrack,
    SubscribeOffer,
    SubscribeSession,
    SubscribeState,
)

__all__ = [
    "Authorize",
    "CodecPolicy",
    "PublishAnswer",
    "PublishSession",
    "PublishState",
    "PublishedTrack",
    "RejectedTrack",
    "SignalingError",
    "SubscribeOffer",
    "SubscribeSession",
    "SubscribeState",
    "SubscribedTrack",
    "TrackRequest",
]
