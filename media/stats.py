"""Counters of the forwarding path, per published track and per subscriber.

Plain integers bumped on the event loop (one thread): no locks. ``snapshot()`` copies them into
dicts for JSON/metrics; the live objects stay private to the forwarder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SubscriberStats:
    """What one subscriber of one track was sent (or not)."""

    frames_forwarded: int = 0
    packets_forwarded: int = 0
    bytes_forwarded: int = 0
    # Frames skipped while waiting for a keyframe (on join, after a drop, after resume).
    frames_skipped: int = 0
    # A screen share: frames of temporal layers above what this viewer's link carries (or
    # every frame while its video is paused), left out (media/screen.py).
    frames_thinned: int = 0
    # Times this subscriber's queue overflowed and was emptied.
    queue_drops: int = 0
    # PLI/FIR received from this subscriber (forwarded to the publisher, coalesced).
    keyframe_requests: int = 0
    # Of those, passed over: within a PLI interval of this subscriber's previous one.
    keyframe_requests_throttled: int = 0
    # A track in layers: the layer this viewer receives (-1: video paused for its connection)
    # and how many times it switched between layers.
    layer: int | None = None
    layer_switches: int = 0
    # Video: freezes of at least 0.5 s as the SFU sees them (media/freezes.py), and their
    # total length in seconds.
    freezes: int = 0
    freeze_s: float = 0.0


@dataclass
class TrackStats:
    """What one published track received and fanned out."""

    frames_received: int = 0
    keyframes_received: int = 0
    bytes_received: int = 0
    # Frames dropped while the publisher's track is paused (muted).
    frames_paused: int = 0
    frames_forwarded: int = 0
    packets_forwarded: int = 0
    bytes_forwarded: int = 0
    # Keyframe requests asked for (by joins, drops, subscribers' PLIs) and PLIs actually sent.
    keyframe_requests: int = 0
    plis_sent: int = 0
    queue_drops: int = 0
    # Joining subscribers that started at the kept join GOP instead of waiting for a keyframe.
    join_gop_starts: int = 0
    subscribers: dict[str, SubscriberStats] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)
