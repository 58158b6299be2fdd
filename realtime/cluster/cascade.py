"""Where a lesson's next viewer is served when the lesson outgrows one node (issue #13).

A session keeps one origin node (where its publishers publish) and may grow edge nodes; each
edge is fed by one leg from a node already in the session's tree (the origin or another edge),
and that leg costs its upstream node about one viewer (``bench/cascade.py`` measures it:
``edge_leg_cost_ratio``). This module is the rule alone, without I/O: the nodes' loads come from
the registry (realtime/cluster/registry.py), the tree from the session's node, and the same
function places viewers in the real cluster and in the capacity model of docs/scaling.md
(``bench/cascade_sim.py``), so what the model shows is what the code does.

Loads are counted in *streams out*: each viewer bundle (camera + microphone) a node sends is one,
each leg to an edge is one, and a node's ``capacity`` is how many it may carry (from its CPU per
forwarded stream and its share of the machine's uplink). Receiving costs a node one stream's
worth too (``ingest_cost``): an edge with room for a single viewer is not worth a leg.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class NoCapacityError(Exception):
    """No node can take another viewer of this session (the caller answers ``unavailable``)."""


@dataclass
class NodeLoad:
    """One node as the rule sees it: what it may carry and what it carries (all sessions)."""

    name: str
    capacity: float
    streams: float = 0.0
    # False while draining or unhealthy: it keeps what it has and takes nothing new.
    accepting: bool = True

    @property
    def spare(self) -> float:
        return self.capacity - self.streams if self.accepting else 0


@dataclass
class Tree:
    """One session's nodes: the origin, and each edge's upstream node."""

    origin: str
    upstream: dict[str, str] = field(default_factory=dict)  # edge -> node that feeds it
    viewers: dict[str, int] = field(default_factory=dict)  # node -> this session's viewers

    def nodes(self) -> list[str]:
        return [self.origin, *self.upstream]

    def depth(self, node: str) -> int:
        hops = 0
        while node != self.origin:
            node = self.upstream[node]
            hops += 1
        return hops

    def legs(self, node: str) -> int:
        return sum(1 for up in self.upstream.values() if up == node)


@dataclass(frozen=True)
class Placement:
    """Serve the viewer on ``node``; if ``new_edge``, first attach it with a leg from ``feed``."""

    node: str
    new_edge: bool = False
    feed: str | None = None


def leg_streams(layer_counts: Iterable[int]) -> float:
    """What one leg costs the node that sends it, in streams (before ``leg_cost``'s ratio).

    ``layer_counts``: per track the leg carries, its streams (the layers of a track sent in
    layers each cross a leg as a stream of their own; any other track as one). A leg without
    layers costs one, as a viewer's bundle does; each layer beyond a track's first adds one
    (its own packetizing, NACK history and bytes: a camera in 100/300/800 kbit/s layers is
    three streams and about 1.5 top-layer viewers' bytes).
    """
    return 1.0 + sum(n - 1 for n in layer_counts if n > 1)


# Streams every node of a session's tree keeps free for legs, so that the tree can always grow:
# viewers fill a node up to its reserve, and the reserve feeds new edges (nearest the origin
# first), so a lesson grows as a tree of fan-out ``LEG_RESERVE`` at most.
LEG_RESERVE = 4
# Receiving a leg costs an edge about one stream; feeding one costs its upstream node
# ``leg_cost`` streams (bench/cascade.py's ``edge_leg_cost_ratio``: about one, times
# ``leg_streams`` when the session has a track sent in layers).
INGEST_COST = 1.0
LEG_COST = 1.0


def place_viewer(
    tree: Tree,
    loads: Mapping[str, NodeLoad],
    *,
    leg_reserve: int = LEG_RESERVE,
    ingest_cost: float = INGEST_COST,
    leg_cost: float = LEG_COST,
    near: str | None = None,
) -> Placement:
    """The node for the session's next viewer.

    ``near``: the node holding the viewer's connection. Serving the viewer there keeps its
    signalling on one node (no bus hop per answer and candidate), and the load balancer already
    spread connections over the nodes, so it is preferred whenever it has room, in the tree
    (step 1) or as a new edge (step 2).

    1. A node already in the tree with room beyond its reserve for legs (its leg is up: the
       fastest join), the one with the most room (spreading a lesson's viewers limits what one
       node's loss interrupts).
    2. Otherwise a new edge: the accepting node outside the tree with the most room, fed by the
       in-tree node with a stream to spare nearest the origin (the fewest hops for its viewers).
    """
    best: tuple[float, str] | None = None
    for name in tree.nodes():
        load = loads.get(name)
        if load is None:
            continue
        room = load.spare - leg_reserve * leg_cost
        if room >= 1 and (best is None or room > best[0]):
            best = (room, name)
        if room >= 1 and name == near:
            return Placement(name)
    if best is not None:
        return Placement(best[1])

    in_tree = set(tree.nodes())
    candidates = [
        load
        for name, load in loads.items()
        if name not in in_tree and load.spare >= ingest_cost + 1
    ]
    feeds = [name for name in tree.nodes() if name in loads and loads[name].spare >= leg_cost]
    if not candidates or not feeds:
        raise NoCapacityError("no node has room for another viewer of this session")
    edge = max(candidates, key=lambda load: (load.name == near, load.spare, load.name))
    feed = min(feeds, key=lambda name: (tree.depth(name), -loads[name].spare, name))
    return Placement(edge.name, new_edge=True, feed=feed)


def apply(
    tree: Tree,
    loads: Mapping[str, NodeLoad],
    placement: Placement,
    *,
    ingest_cost: float = INGEST_COST,
    leg_cost: float = LEG_COST,
) -> None:
    """Record a placement in the tree and the loads (once the caller has carried it out)."""
    if placement.new_edge:
        assert placement.feed is not None
        tree.upstream[placement.node] = placement.feed
        loads[placement.feed].streams += leg_cost
        loads[placement.node].streams += ingest_cost
    loads[placement.node].streams += 1
    tree.viewers[placement.node] = tree.viewers.get(placement.node, 0) + 1
