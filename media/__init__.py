"""Forwarding SFU on aiortc: encoded frames in, the same encoded frames out, never transcoded.

Modules (one concept each):

* ``internals`` — the only package touching aiortc's, aioice's and pylibsrtp's private
  internals (all pinned exactly): ingest, egress, SRTP send, codecs, ICE hosts, checks.
* ``keyframes`` — VP8 / H.264 keyframe detection.
* ``pli`` — coalescing of keyframe requests towards a publisher.
* ``forwarder`` — ``ForwardedTrack`` (one published track) and ``SubscriberTrack`` (one viewer).
* ``router`` — ``MediaRouter``: the published tracks of one live session.
* ``stats`` — counters; ``ice`` — ICE/TURN settings.

See docs/media.md for the path of one video frame.
"""

from __future__ import annotations

from aiortc import RTCPeerConnection, RTCRtpTransceiver

from media.forwarder import ForwardedTrack, SubscriberTrack
from media.internals import check_internals, set_stream_id, use_shared_payloads
from media.router import SOURCES, MediaRouter, TrackInfo, UnknownTrackError

__all__ = [
    "SOURCES",
    "ForwardedTrack",
    "MediaRouter",
    "SubscriberTrack",
    "TrackInfo",
    "UnknownTrackError",
    "attach_track",
    "check_internals",
]


def attach_track(pc: RTCPeerConnection, track: SubscriberTrack) -> RTCRtpTransceiver:
    """Add a subscriber track to a peer connection as a send-only, forwarding transceiver."""
    transceiver = pc.addTransceiver(track, direction="sendonly")
    use_shared_payloads(transceiver.sender)
    set_stream_id(transceiver.sender, track.source.publisher_id or track.source.id)
    return transceiver
