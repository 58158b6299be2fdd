"""How each participant's media link is doing, for the host: path, estimate, loss, RTT,
freezes, audio level.

:func:`assess` is the rule (plain, no I/O): which links the teacher's console flags as bad.
:func:`leg_link` reads one server-side peer connection: the path of its selected ICE candidate
pair (direct UDP, TCP, or relayed through TURN) and, for a subscribe leg, what the viewer's
RTCP said (REMB estimate, fraction lost, RTT) on its video senders and its freezes as the SFU
sees them (``media.freezes``). :func:`participant_links` adds each publisher's audio level
(``media.audio_level``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from aiortc import RTCPeerConnection

from media.forwarder import SubscriberTrack
from media.internals import SharedPayloadSender
from media.internals.selected_pair import selected_pair
from media.screen import ScreenSubscriberTrack
from media.simulcast import LayeredSubscriberTrack

Path = Literal["udp", "tcp", "relayed"]


class Leg(Protocol):
    pc: RTCPeerConnection


class PublishLeg(Leg, Protocol):
    def audio_levels(self, now: float) -> Mapping[str, dict[str, Any] | None]: ...


# A viewer is flagged when its reports show this much loss (a 5 % loss is visible as freezes
# on video and, without FEC, as gaps in speech) or this much round-trip time (keyframes and
# retransmissions arrive too late to help), or an estimate below the lowest useful video rate.
BAD_LOSS = 0.05
BAD_RTT_S = 0.5
BAD_ESTIMATE_BPS = 150_000


def path_of(local_type: str, remote_type: str, transport: str) -> Path:
    """The path of a candidate pair: relayed if either end is a TURN relay, else its transport."""
    if "relay" in (local_type, remote_type):
        return "relayed"
    return "tcp" if transport.lower() == "tcp" else "udp"


def assess(
    estimate: int | None,
    loss: float,
    rtt: float | None,
    freezing: bool = False,
    video_paused: bool = False,
) -> list[str]:
    """Why a link is bad (empty: it is fine): ``loss``, ``rtt``, ``bandwidth``, ``freezes``
    (``freezing``: the viewer's video is frozen now or was a few seconds ago;
    ``video_paused``: it cannot carry even the lowest layer of some video)."""
    reasons = []
    if loss >= BAD_LOSS:
        reasons.append("loss")
    if rtt is not None and rtt >= BAD_RTT_S:
        reasons.append("rtt")
    if video_paused or (estimate is not None and estimate < BAD_ESTIMATE_BPS):
        reasons.append("bandwidth")
    if freezing:
        reasons.append("freezes")
    return reasons


def signalled_type(pc: RTCPeerConnection, host: str, port: int) -> str | None:
    """The type the remote description gave the candidate at ``host:port``, if any.

    A check can arrive before ICE pairs the signalled candidate (then aioice names the remote
    end peer-reflexive): a relayed client behind TURN must still show as relayed."""
    description = pc.remoteDescription
    for line in description.sdp.splitlines() if description else ():
        if not line.startswith("a=candidate:"):
            continue
        bits = line.split()
        if len(bits) >= 8 and bits[4] == host and bits[5] == str(port):
            return bits[7]
    return None


def leg_link(pc: RTCPeerConnection) -> dict[str, Any]:
    """``{path, state, estimate_bps, loss, rtt_ms, bad, layers, frame_rates, freezes, freeze_s,
    frozen_s}``
    of one leg (None where not known yet; the freezes are those of its received video)."""
    pair = selected_pair(pc)
    path: Path | None = None
    if pair is not None:
        local, remote = pair
        remote_type = remote.type
        if remote_type == "prflx":
            remote_type = signalled_type(pc, remote.host, remote.port) or remote_type
        path = path_of(local.type, remote_type, local.transport)
    estimate: int | None = None
    loss = 0.0
    rtt: float | None = None
    layers: dict[str, int] = {}
    frame_rates: dict[str, str] = {}
    now = asyncio.get_running_loop().time()
    freezes, freeze_s, frozen_s, freezing = 0, 0.0, 0.0, False
    for sender in pc.getSenders():
        if not isinstance(sender, SharedPayloadSender) or sender.kind != "video":
            continue
        track = sender.track
        if isinstance(track, SubscriberTrack) and track.readyState == "live":
            meter = track.freezes
            freezes += meter.count
            freeze_s += meter.duration
            frozen_s = max(frozen_s, meter.frozen_for(now))
            freezing = freezing or meter.recent(now)
        if isinstance(track, LayeredSubscriberTrack) and track.readyState == "live":
            layers[track.source.id] = track.layer
        if isinstance(track, ScreenSubscriberTrack) and track.readyState == "live":
            frame_rates[track.source.id] = track.frame_rate
        s_estimate, s_loss, s_rtt = sender.link()
        # The worst of the viewer's video streams (they share one link).
        if s_estimate is not None:
            estimate = s_estimate if estimate is None else min(estimate, s_estimate)
        loss = max(loss, s_loss)
        if s_rtt is not None:
            rtt = s_rtt if rtt is None else max(rtt, s_rtt)
    paused = any(layer < 0 for layer in layers.values()) or "paused" in frame_rates.values()
    reasons = assess(estimate, loss, rtt, freezing, paused)
    return {
        "path": path,
        "state": pc.connectionState,
        "estimate_bps": estimate,
        "loss": round(loss, 3),
        "rtt_ms": None if rtt is None else round(rtt * 1000),
        "bad": reasons,
        # Tracks in layers: the layer this viewer receives of each (-1: video paused).
        "layers": layers,
        # Screen shares: the share of the frame rate this viewer receives of each ("1", "1/2",
        # "1/4", "paused": video paused for its connection).
        "frame_rates": frame_rates,
        # Its video's freezes (>= 0.5 s) so far, their total length, and how long it has been
        # frozen now (0: it is not).
        "freezes": freezes,
        "freeze_s": round(freeze_s, 1),
        "frozen_s": round(frozen_s, 1),
    }


def participant_links(
    publishers: Mapping[int, PublishLeg], subscribers: Mapping[int, Leg]
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{user id: {"publish": leg_link, "subscribe": leg_link}}`` for the legs that exist; a
    publish leg also has ``audio``: ``{source: AudioLevel.snapshot or None}``."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    now = asyncio.get_running_loop().time()
    for uid, publisher in publishers.items():
        link = leg_link(publisher.pc)
        link["audio"] = dict(publisher.audio_levels(now))
        out.setdefault(str(uid), {})["publish"] = link
    for uid, subscriber in subscribers.items():
        out.setdefault(str(uid), {})["subscribe"] = leg_link(subscriber.pc)
    return out
