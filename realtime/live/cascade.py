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

Ops: ``leg`` (offer → answer, and the offers of viewers there that were waiting for a track
the leg now carries), ``subscribe`` (viewer, tracks → offer), ``answer`` (viewer,
sdp → follow-up offer), ``ice`` (viewer, candidate), ``tracks`` (viewers' tracks → offers),
``drop`` (viewer), ``detach``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from media.router import MediaRouter
from realtime.cluster import cascade as rule
from realtime.cluster.registry import NodeInfo
from realtime.errors import HomeroomError
from realtime.live.edge import offer_from_wire, offer_to_wire
from realtime.live.runtime import MediaOptions
from signaling import SubscribeOffer, SubscribeSession

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
    here: int,
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
        placement = rule.place_viewer(tree, loads, leg_reserve=leg_reserve, near=near)
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
        self._background: set[asyncio.Task[None]] = set()

    def on(self, edge: str) -> list[int]:
        return [user for user, node in self.viewers.items() if node == edge]

    def streams(self) -> int:
        """What this session's edges cost this node, in streams: one per leg."""
        return len(self.legs)

    async def _ask(self, edge: str, op: str, **body: Any) -> dict[str, Any]:
        return await self.call(edge, {"op": op, "session_id": self.session_id, **body})

    async def _feed(self, edge: str) -> None:
        """Renegotiate the leg to ``edge`` to carry what its viewers receive (opened first)."""
        if not self.on(edge):
            return  # detached meanwhile (its last viewer left): no leg to open again
        leg = self.legs.get(edge)
        if leg is None:
            leg = self.legs[edge] = self.media.subscribe_leg(leg_participant(edge), self.router)
        needed = sorted({t for user in self.on(edge) for t in self.wanted.get(user, [])})
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
            if not self.on(edge):
                await self.detach(edge)
            raise
        wire = reply.get("offer")
        return None if wire is None else offer_from_wire(wire)

    async def answer(self, user_id: int, sdp: str) -> SubscribeOffer | None:
        reply = await self._ask(self.viewers[user_id], "answer", user=user_id, sdp=sdp)
        wire = reply.get("offer")
        return None if wire is None else offer_from_wire(wire)

    async def add_ice_candidate(self, user_id: int, candidate: dict[str, Any] | None) -> None:
        await self._ask(self.viewers[user_id], "ice", user=user_id, candidate=candidate)

    async def sync(self, receive: Mapping[int, list[str]]) -> dict[int, SubscribeOffer]:
        """Make every edge carry, and every edge viewer receive, what the plan says."""
        offers: dict[int, SubscribeOffer] = {}
        for user_id in self.viewers:
            self.wanted[user_id] = list(receive.get(user_id, []))
        for edge in sorted(set(self.viewers.values())):
            try:
                await self._feed(edge)
                wanted = [[user, self.wanted.get(user, [])] for user in self.on(edge)]
                reply = await self._ask(edge, "tracks", wanted=wanted)
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
        edge = self.viewers.pop(user_id, None)
        self.wanted.pop(user_id, None)
        if edge is None:
            return
        if self.on(edge):
            self._spawn(self._tell(edge, "drop", user=user_id))
        else:
            await self.detach(edge)

    async def detach(self, edge: str) -> None:
        """Stop feeding ``edge``: the leg closes here, the session's copy there ends."""
        for user in self.on(edge):
            self.viewers.pop(user, None)
            self.wanted.pop(user, None)
        self._close_leg(edge)
        self._spawn(self._tell(edge, "detach"))

    def lost(self, edge: str) -> list[int]:
        """``edge`` is gone: its leg closes; the viewers it served (to be placed again)."""
        users = self.on(edge)
        for user in users:
            self.viewers.pop(user, None)
            self.wanted.pop(user, None)
        self._close_leg(edge)
        return users

    def _close_leg(self, edge: str) -> None:
        leg = self.legs.pop(edge, None)
        self.router.unsubscribe_participant(leg_participant(edge))
        if leg is not None:
            self._spawn(leg.close())

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
        for edge in list(self.legs):
            await self.detach(edge)
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2.0)
