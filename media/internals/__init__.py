"""Every touch of aiortc's (and aioice's, pylibsrtp's) private internals, in this package only.

aiortc, aioice and pylibsrtp are pinned exactly (``base.PINNED``, pyproject.toml). The forwarding
SFU needs what aiortc does not offer publicly, one concept per module:

* ``ingest`` — a publisher's reassembled, still-encoded frames (the receiver's private decoder
  queue replaced), a PLI to its media SSRC (not the RTX one), and its RTX packets routed by
  SSRC (the transport's private router) when several m-lines share the RTX payload type.
* ``jitter`` — the receiver's private jitter buffer replaced, so that a frame leaves as soon as
  it is complete (its marker bit) instead of when the next frame starts.
* ``egress`` — ``SharedPayloadSender``: frames packetized once per track for every subscriber,
  sent by a replacement of aiortc's RTP loop that keeps its counters, NACK/RTX and stats.
* ``srtp_send`` — that loop's send path: SRTP in place with libsrtp on the nominated ICE pair,
  the packets of a loop iteration sent with one ``sendmmsg`` per UDP socket (``sendmmsg``: libc
  through cffi's ABI mode, no private internals; one ``sendto`` per packet where it is missing).
* ``transport_cc`` — transport-wide congestion control on a publish leg: negotiated in the
  answer (the transceivers' private extensions and codecs), fed by every packet, REMB off.
* ``codecs`` — codec negotiation helpers aiortc does not export.
* ``hosts`` — the host addresses aioice gathers on (a module function replaced, once per
  process, at start-up); ``peers`` — the networks ICE peers may be in (two of aioice's
  ``Connection`` methods wrapped, the same way).
* ``checks`` — :func:`check_internals`, run at start-up (cached), from signatures and compiled
  code, so it works without sources; ``sources`` — the source-text checks the tests run.
"""

from __future__ import annotations

from media.internals.base import PINNED, PINNED_AIORTC_VERSION, AiortcInternalsError
from media.internals.checks import check_internals
from media.internals.egress import (
    EncodedFrameSource,
    Packetizer,
    RTCEncodedFrame,
    SharedPayloadSender,
    route_keyframe_requests,
    set_stream_id,
    use_shared_payloads,
)
from media.internals.ingest import (
    IngestQueue,
    install_audio_level,
    install_ingest,
    media_ssrc,
    receive_counts,
    route_rtx,
    send_pli,
    share_bandwidth_estimate,
)
from media.internals.nack import retry_nacks
from media.internals.transport_cc import (
    TransportCcSender,
    install_transport_cc,
    negotiate_transport_cc,
)

__all__ = [
    "PINNED",
    "PINNED_AIORTC_VERSION",
    "AiortcInternalsError",
    "EncodedFrameSource",
    "IngestQueue",
    "Packetizer",
    "RTCEncodedFrame",
    "SharedPayloadSender",
    "TransportCcSender",
    "check_internals",
    "install_audio_level",
    "install_ingest",
    "install_transport_cc",
    "media_ssrc",
    "negotiate_transport_cc",
    "receive_counts",
    "retry_nacks",
    "route_keyframe_requests",
    "route_rtx",
    "send_pli",
    "set_stream_id",
    "share_bandwidth_estimate",
    "use_shared_payloads",
]
