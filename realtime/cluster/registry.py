"""The node registry's rules, without I/O: what a node announces, and who is alive.

Each node announces itself every ``node_heartbeat_s`` with a time-to-live of ``node_ttl_s``
(realtime/cluster/redis_registry.py writes it to Redis with that expiry). A node whose
announcement expired is gone: killed, cut off, or stopped. :class:`Membership` turns successive
readings of the registry into "came" and "went", and :func:`orphaned` says which running
sessions belong to nodes that are gone, so another node can move them (realtime/cluster/watch.py).

Memory: one :class:`NodeInfo` (a few hundred bytes) per node of the deployment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec


class NodeInfo(msgspec.Struct, frozen=True):
    """One node's announcement.

    Fields a newer version adds are ignored by an older one (a rolling upgrade announces them
    before every node knows them); a new field needs a default, a field's type never changes."""

    name: str
    # Where its HTTP/Socket.IO port answers, "host:port".
    address: str
    pid: int
    started_at: float
    # time.time() of this announcement.
    at: float
    live_sessions: int = 0
    published_tracks: int = 0
    subscribers: int = 0
    # The streams of node-to-node legs it feeds or receives (a leg is one stream, plus one per
    # layer beyond the first of a track sent in layers: realtime/cluster/cascade.leg_streams).
    relay_legs: int = 0
    # The streams it may send (its setting ``cascade_node_streams``; 0: not announced).
    capacity: int = 0
    # Fraction of one core used since the previous announcement (1.0 = a whole core).
    cpu: float = 0.0
    # Shutting down (SIGTERM): no new session is placed on it, its sessions move elsewhere.
    draining: bool = False

    def view(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(NodeInfo)


def encode(info: NodeInfo) -> bytes:
    return _ENCODER.encode(info)


def decode(raw: bytes) -> NodeInfo:
    """An announcement read back; raises ``msgspec.DecodeError`` for anything else."""
    return _DECODER.decode(raw)


@dataclass
class Change:
    came: list[str]
    went: list[str]


class Membership:
    """The nodes seen alive, updated by each reading of the registry."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        # Whether the registry has been read at least once: before that nobody is known gone.
        self.known = False

    def observe(self, nodes: Iterable[NodeInfo]) -> Change:
        now = {n.name: n for n in nodes}
        change = Change(
            came=sorted(set(now) - set(self.nodes)), went=sorted(set(self.nodes) - set(now))
        )
        self.nodes = now
        self.known = True
        return change

    def alive(self, name: str) -> bool:
        return name in self.nodes


def orphaned(sessions: Mapping[int, str], alive: set[str], me: str) -> list[int]:
    """The running sessions (id -> node) whose node is not in the registry: their state died
    with it. This node's own sessions are never orphaned here (they end when this node ends
    them, or at its next start)."""
    return sorted(sid for sid, node in sessions.items() if node != me and node not in alive)


def cpu_fraction(cpu_before: float, cpu_now: float, wall_before: float, wall_now: float) -> float:
    """The share of one core used between two readings of the process's CPU time."""
    wall = wall_now - wall_before
    if wall <= 0:
        return 0.0
    return round(max(0.0, (cpu_now - cpu_before) / wall), 3)
