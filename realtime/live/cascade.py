"""A session's edges, as its origin node keeps them: the legs it feeds, the viewers they serve.

When a lesson's origin has no room for another viewer (``realtime/cluster/cascade.py`` says
where the viewer goes), the viewer is served by an edge node. The origin feeds each edge through
one ordinary subscribe leg (``SubscribeSession`` whose participant is ``edge:<node>``), carrying
the union of the tracks that edge's viewers receive; the edge republishes them under the
origin's ids (``signaling/relay.py``) and holds its viewers' subscribe legs
(``realtime/live/edge.py``). Everything the origin's rules decide reaches an edge viewer as it
reaches a local one: after every change the runtime's plan (``media_plan``) is computed for
local and edge viewers alike, each edge's leg is renegotiated to what its viewers need, then
each viewer's leg on the edge, whose offers come back here to be told to the viewer.

Each exchange with an edge is a request over the bus (``realtime/cluster/calls.py``, kind
``edge``, ``op`` below); the leg's offer and answer carry complete SDP (aiortc gathers before
it answers), so a leg needs no trickled candidates. An edge whose last viewer leaves is
detached: the leg closes here and its copy of the session ends there.

A viewer served by an edge who goes on stage publishes on that edge (his own node), and the
origin pulls what he publishes over an uplink: the edge offers it on an ordinary subscribe leg
(participant ``origin:<node>`` there), and this node answers with a
:class:`~signaling.relay.RelayIngest` that republishes his tracks here under the edge's track
ids. From here they reach the origin's viewers and, down the legs, the other edges, like any
track; the leg back to his own edge leaves them out (its viewers have them there). Keyframe
requests for them go up the uplink as PLIs, coalesced on the edge with its own viewers'. The
rules stay here: what he may publish is decided here and sent with his offer, and tracks the
rules end or mute are named to the edge at every change (``tracks``).

Ops: ``leg`` (offer → answer, and the offers of viewers there that were waiting for a track
the leg now carries), ``subscribe`` (viewer, tracks → offer), ``answer`` (viewer,
sdp → follow-up offer), ``ice`` (viewer, leg, candidate), ``tracks`` (viewers' tracks, the
local tracks ended and muted → offers), ``drop`` (viewer: his legs there), ``detach``,
``publish`` (viewer, sdp, sources, layers, refused sources → ``rtc.publish``'s reply),
``uplink`` (→ the edge's offer of what is published there, or none), ``uplink_answer``
(sdp → follow-up offer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from media.router import MediaRouter
from media.simulcast import LayeredTrack
from realtime.cluster import cascade as rule
from realtime.cluster.registry import NodeInfo
from realtime.errors import HomeroomError
from realtime.live.edge import offer_from_wire, offer_to_wire
from realtime.live.runtime import MediaOptions
from signaling import SubscribeOffer, SubscribeSession
from signaling.relay import RelayIngest

log = logging.getLogger(__name__)

# call(edge node, body) -> the edge's answer (NodeCalls.call with kind "edge").
EdgeCall = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
# tell_offer(viewer, offer): push an offer made on an edge to the viewer (rtc.offer).
TellOffer = Callable[[int, SubscribeOffer], Awaitable[None]]


def leg_participant(edge: str) -> str:
    """The participant id of the leg feeding ``edge`` in the origin's router."""
    return f"edge:{edge}"


def place(
    cascade: Cascade,
    me: str,
    nodes: Mapping[str, NodeInfo],
    *,
    here: float,
    capacity: int,
    leg_reserve: int,
    cpu_full: float,
    local_viewers: int,
    near: str | None,
) -> str | None:
    """The edge node to serve a new viewer of ``cascade``'s session on, or None: this node.

    ``nodes``: the registry's reading; ``here``: the streams this node sends now (exact);
    ``capacity``, ``leg_reserve``, ``cpu_full``: this node's settings (a node that announces no
    capacity is taken to have this node's); ``local_viewers``: the session's viewers served
    here; ``near``: the node holding the viewer's connection. Other nodes' loads are a heartbeat
    old, but never taken for less than what this session puts on them. Edges are fed by the
    origin only: a tree deeper than one hop is not built (the session is full instead).
    Raises ``unavailable`` when no node has room.
    """
    loads: dict[str, rule.NodeLoad] = {}
    for info in nodes.values():
        loads[info.name] = rule.NodeLoad(
            info.name,
            info.capacity or capacity,
            info.subscribers + info.relay_legs,
            accepting=not info.draining and info.cpu < cpu_full,
        )
    mine = nodes.get(me)
    loads[me] = rule.NodeLoad(me, capacity, here, accepting=mine is None or not mine.draining)
    tree = rule.Tree(me, {edge: me for edge in cascade.legs}, {me: local_viewers})
    for edge in list(cascade.legs):
        served = len(cascade.on(edge))
        tree.viewers[edge] = served
        if edge in loads:
            loads[edge].streams = max(loads[edge].streams, served + rule.INGEST_COST)
        else:
            del tree.upstream[edge]  # gone from the registry: its viewers are placed again
    try:
        placement = rule.place_viewer(
            tree, loads, leg_reserve=leg_reserve, leg_cost=cascade.leg_cost(), near=near
        )
    except rule.NoCapacityError:
        placement = None
    if placement is None or (placement.new_edge and placement.feed != me):
        raise HomeroomError(
            "unavailable", "this lesson has no room for another viewer now; try again shortly"
        )
    return None if placement.node == me else placement.node


class Cascade:
    """The edges of one session running on this node. All methods run on the event loop."""

    def __init__(
        self,
        session_id: int,
        router: MediaRouter,
        media: MediaOptions,
        call: EdgeCall,
        tell_offer: TellOffer,
    ) -> None:
        self.session_id = session_id
        self.router = router
        self.media = media
        self.call = call
        self.tell_offer = tell_offer
        self.legs: dict[str, SubscribeSession] = {}  # edge node -> the leg feeding it
        self.viewers: dict[int, str] = {}  # viewer -> the edge serving it
        self.wanted: dict[int, list[str]] = {}  # viewer -> the tracks the plan gives it
        self.publishers: dict[int, str] = {}  # publisher -> the edge he publishes on
        self.uplinks: dict[str, RelayIngest] = {}  # edge -> what its publishers send here
        self._background: set[asyncio.Task[None]] = set()

    def on(self, edge: str) -> list[int]:
        return [user for user, node in self.viewers.items() if node == edge]

    def _in_use(self, edge: str) -> bool:
        return bool(self.on(edge)) or edge in self.publishers.values()

    def publisher_edge(self, user_id: int) -> str | None:
        """The edge this participant publishes on: where he publishes already, else where he
        is served (his own node); None: here."""
        return self.publishers.get(user_id) or self.viewers.get(user_id)

    def serves(self, user_id: int, leg: str) -> bool:
        """Whether this participant's ``leg`` (subscribe or publish) is on an edge."""
        return user_id in (self.publishers if leg == "publish" else self.viewers)

    def streams(self) -> float:
        """What this session's edges cost this node, in streams: per leg, one, plus one for
        every layer beyond the first of each track sent in layers that it carries
        (``rule.leg_streams``; an uplink received costs what a local publisher does, which is
        not counted either)."""
        return sum(rule.leg_streams(leg.layer_counts()) for leg in self.legs.values())

    def leg_cost(self) -> float:
        """What a new leg of this session would cost this node, in streams: every layer of
        the tracks sent in layers published here now crosses it."""
        return rule.leg_streams(
            len(track.layers)
            for info in self.router.tracks()
            if isinstance(track := self.router.get(info.track_id), LayeredTrack)
        )

    async def _ask(self, edge: str, op: str, **body: Any) -> dict[str, Any]:
        return await self.call(edge, {"op": op, "session_id": self.session_id, **body})

    async def _feed(self, edge: str) -> None:
        """Renegotiate the leg to ``edge`` to carry what its viewers receive (opened first)."""
        if not self.on(edge):
            return  # detached meanwhile (its last viewer left): no leg to open again
        leg = self.legs.get(edge)
        if leg is None:
            leg = self.legs[edge] = self.media.subscribe_leg(
                leg_participant(edge), self.router, relay=True
            )
        # What the edge's own publishers send is there already (and arrives from it).
        own = set(self.uplinks[edge].relayed().values()) if edge in self.uplinks else set()
        needed = sorted(
            {t for user in self.on(edge) for t in self.wanted.get(user, []) if t not in own}
        )
        offer = await leg.set_tracks(needed)
        # A change made while this offer is out comes back from apply_answer(): offered next.
        while offer is not None:
            reply = await self._ask(edge, "leg", offer=offer_to_wire(offer))
            # Viewers there whose tracks the leg carries now (a change that raced this one).
            for user, wire in reply.get("offers") or []:
                if self.viewers.get(int(user)) == edge:
                    await self.tell_offer(int(user), offer_from_wire(wire))
            if self.legs.get(edge) is not leg:
                return  # detached or lost while the edge answered
            offer = await leg.apply_answer(str(reply["sdp"]))

    async def subscribe(
        self, user_id: int, edge: str, track_ids: list[str]
    ) -> SubscribeOffer | None:
        """Serve a viewer on ``edge`` (attached first if new): its first offer, or none."""
        self.viewers[user_id] = edge
        self.wanted[user_id] = list(track_ids)
        try:
            await self._feed(edge)
            reply = await self._ask(edge, "subscribe", user=user_id, tracks=list(track_ids))
        except Exception:
            self.viewers.pop(user_id, None)
            self.wanted.pop(user_id, None)
            if not self._in_use(edge):
                await self.detach(edge)
            raise
        wire = reply.get("offer")
        return None if wire is None else offer_from_wire(wire)

    async def answer(self, user_id: int, sdp: str) -> SubscribeOffer | None:
        reply = await self._ask(self.viewers[user_id], "answer", user=user_id, sdp=sdp)
        wire = reply.get("offer")
        return None if wire is None else offer_from_wire(wire)

    def on_edges(self, user_id: int) -> bool:
        """Whether any of this participant's peer connections is on an edge."""
        return user_id in self.viewers or user_id in self.publishers

    async def resumption(self, user_id: int) -> tuple[bool, SubscribeOffer | None]:
        """Ask the edges holding this participant's legs whether they go on (none failed),
        and for the subscribe offer its edge made while its connection was down."""
        alive, offer = True, None
        for edge in {e for e in (self.viewers.get(user_id), self.publishers.get(user_id)) if e}:
            reply = await self._ask(edge, "resume", user=user_id)
            alive = alive and bool(reply.get("alive"))
            if reply.get("offer") is not None and self.viewers.get(user_id) == edge:
                offer = offer_from_wire(reply["offer"])
        return alive, offer

    async def add_ice_candidate(
        self, user_id: int, candidate: dict[str, Any] | None, leg: str = "subscribe"
    ) -> None:
        edge = (self.publishers if leg == "publish" else self.viewers)[user_id]
        await self._ask(edge, "ice", user=user_id, leg=leg, candidate=candidate)

    async def publish(
        self,
        user_id: int,
        edge: str,
        sdp: str,
        sources: Mapping[str, str],
        layers: Mapping[str, int],
        refused: Mapping[str, str],
    ) -> dict[str, Any]:
        """A participant served by ``edge`` publishes there: ``rtc.publish``'s reply. What he
        publishes is pulled here over the edge's uplink before this returns."""
        reply = await self._ask(
            edge,
            "publish",
            user=user_id,
            sdp=sdp,
            sources=dict(sources),
            layers=dict(layers),
            refused=dict(refused),
        )
        self.publishers[user_id] = edge
        await self._pull(edge)
        return reply

    async def _pull(self, edge: str) -> None:
        """Renegotiate the uplink from ``edge`` to carry what is published there."""
        reply = await self._ask(edge, "uplink")
        while reply.get("offer") is not None:
            ingest = self.uplinks.get(edge)
            if ingest is None:
                ingest = self.media.relay_ingest(f"{edge}/{self.session_id}", self.router)
                self.uplinks[edge] = ingest
            sdp = await ingest.apply_offer(offer_from_wire(reply["offer"]))
            reply = await self._ask(edge, "uplink_answer", sdp=sdp)

    async def sync(
        self,
        receive: Mapping[int, list[str]],
        unpublish: Sequence[str] = (),
        paused: Sequence[str] = (),
    ) -> dict[int, SubscribeOffer]:
        """Make every edge carry, and every edge viewer receive, what the plan says; tracks
        published on an edge that the rules end (``unpublish``) or mute (``paused``) are
        ended or muted there, and each uplink carries what is published there then."""
        offers: dict[int, SubscribeOffer] = {}
        for user_id in self.viewers:
            self.wanted[user_id] = list(receive.get(user_id, []))
        edges = set(self.viewers.values()) | set(self.publishers.values()) | set(self.uplinks)
        for edge in sorted(edges):
            try:
                await self._feed(edge)
                wanted = [[user, self.wanted.get(user, [])] for user in self.on(edge)]
                reply = await self._ask(
                    edge, "tracks", wanted=wanted, unpublish=list(unpublish), paused=list(paused)
                )
                if edge in self.uplinks or edge in self.publishers.values():
                    await self._pull(edge)
            except Exception as exc:  # the watch places a lost edge's viewers again
                log.warning("session %s: edge %s not updated: %s", self.session_id, edge, exc)
                continue
            for user, wire in reply.get("offers") or []:
                offers[int(user)] = offer_from_wire(wire)
        return offers

    async def drop(self, user_id: int) -> None:
        """A viewer's media ends (left, dropped, joined again): its edge is told in the
        background (a dead edge must not hold up the session); an edge left with no viewer is
        detached."""
        edges = {self.viewers.pop(user_id, None), self.publishers.pop(user_id, None)}
        self.wanted.pop(user_id, None)
        for edge in sorted(e for e in edges if e is not None):
            if self._in_use(edge):
                self._spawn(self._tell(edge, "drop", user=user_id))
            else:
                await self.detach(edge)

    async def detach(self, edge: str) -> None:
        """Stop feeding ``edge``: the leg closes here, the session's copy there ends."""
        self._forget(edge)
        self._spawn(self._tell(edge, "detach"))

    def lost(self, edge: str) -> tuple[list[int], list[int]]:
        """``edge`` is gone: its leg and uplink close; the viewers it served (to be placed
        again) and the participants who published there (their tracks ended everywhere: to
        publish again, where they are placed next)."""
        users = self.on(edge)
        publishers = sorted(u for u, node in self.publishers.items() if node == edge)
        self._forget(edge)
        return users, publishers

    def _forget(self, edge: str) -> None:
        """Nothing of ``edge`` here any more: its viewers and publishers, its leg, and its
        uplink (what its publishers sent ends here, hence everywhere)."""
        for user in self.on(edge):
            self.viewers.pop(user, None)
            self.wanted.pop(user, None)
        for user in [u for u, node in self.publishers.items() if node == edge]:
            del self.publishers[user]
        leg = self.legs.pop(edge, None)
        self.router.unsubscribe_participant(leg_participant(edge))
        if leg is not None:
            self._spawn(leg.close())
        ingest = self.uplinks.pop(edge, None)
        if ingest is not None:
            self._spawn(ingest.close())

    async def _tell(self, edge: str, op: str, **body: Any) -> None:
        try:
            await self._ask(edge, op, **body)
        except HomeroomError as exc:
            log.info("session %s: edge %s not told %s: %s", self.session_id, edge, op, exc)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """The session ends or moves: every edge is detached."""
        for edge in sorted(set(self.legs) | set(self.uplinks)):
            await self.detach(edge)
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2.0)
