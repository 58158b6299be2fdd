"""A session's media on an edge node: the leg from its origin, and the viewers served here.

A lesson bigger than one node (issue #13) runs on its origin node (its rules, its publishers,
its participants' state); an edge node only forwards. The origin decides everything: which
viewers this node serves, which tracks each receives (the same plan as for its own viewers,
``live_protocol.media_plan``), when the leg is renegotiated and when it is dropped. This node
answers the leg's offers (``signaling/relay.py``: the origin's tracks published into this
node's router under the origin's ids) and holds each of its viewers' subscribe legs, whose
offers go back to the origin, which tells the viewers.

A viewer served here who goes on stage publishes here too (his own node): his publish leg is a
:class:`PublishSession` over this node's router, allowed the sources the origin's rules allow
him (the origin decides and sends its refusals along), and this node offers what its own
publishers send to the origin on one uplink, an ordinary subscribe leg whose participant is
``origin:<node>``; the origin republishes it (``signaling/relay.py``) under this node's track
ids and forwards it to its viewers and down its legs to the other edges. The origin drives the
uplink as it drives everything here (op ``uplink``: this node's offer, ``uplink_answer``: the
origin's answer), and says which local tracks are muted or ended by the rules (``tracks``).

Requests arrive from the origin over the bus (``realtime/cluster/calls.py``, kind ``edge``);
:class:`EdgeRuntime` is what they act on, one per cascaded session on this node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

import msgspec
from aiortc.exceptions import InvalidStateError

from media.router import MediaRouter
from realtime import schemas
from realtime.cluster.cascade import leg_streams
from realtime.errors import HomeroomError, bad_request, not_found
from realtime.live.runtime import MediaOptions, legs_go_on, publish_reply
from signaling import PublishSession, SignalingError, SubscribeOffer, SubscribeSession, TrackRequest
from signaling.subscriber import SubscribedTrack

log = logging.getLogger(__name__)


def offer_to_wire(offer: SubscribeOffer) -> dict[str, Any]:
    """An offer and what each of its m-lines carries, as a bus message carries it."""
    return {
        "sdp": offer.sdp,
        "tracks": [
            {
                "track_id": t.track_id,
                "mid": t.mid,
                "publisher_id": t.publisher_id,
                "source": t.source,
                "kind": t.kind,
                # Which layer of a track sent in layers (node-to-node legs only).
                **({} if t.layer is None else {"layer": t.layer}),
            }
            for t in offer.tracks
        ],
    }


def uplink_participant(origin: str) -> str:
    """The participant id of the uplink to ``origin`` in an edge's router."""
    return f"origin:{origin}"


def offer_from_wire(wire: Mapping[str, Any]) -> SubscribeOffer:
    tracks = [
        SubscribedTrack(
            str(t["track_id"]),
            str(t["mid"]),
            str(t["publisher_id"]),
            str(t["source"]),
            t["kind"],
            None if t.get("layer") is None else int(t["layer"]),
        )
        for t in wire.get("tracks") or []
    ]
    return SubscribeOffer(str(wire["sdp"]), tracks)


# tell_layer(origin, session, viewer, track, layer): a viewer served here receives another
# layer of a track sent in layers (-1: video paused for its connection); the origin tells it.
TellLayer = Callable[[str, int, int, str, int], Awaitable[None]]


class EdgeRuntime:
    """One cascaded session's media on this edge node. All methods run on the event loop."""

    def __init__(
        self,
        session_id: int,
        origin: str,
        media: MediaOptions,
        tell_layer: TellLayer | None = None,
    ) -> None:
        self.session_id = session_id
        self.origin = origin
        self.media = media
        self.tell_layer = tell_layer
        self._tells: set[asyncio.Task[None]] = set()
        self.router = MediaRouter()
        self.ingest = media.relay_ingest(f"{origin}/{session_id}", self.router)
        self.viewers: dict[int, SubscribeSession] = {}
        # What the origin last said each viewer receives, including tracks the leg did not
        # carry yet: offered to the viewer as soon as it does.
        self.wanted: dict[int, list[str]] = {}
        # Viewers served here who publish here (on stage), and the uplink carrying what they
        # publish to the origin (opened by the first of them).
        self.publishers: dict[int, PublishSession] = {}
        self.uplink: SubscribeSession | None = None
        # What the origin's rules refused each of them at his last offer (source -> why).
        self.refused: dict[int, dict[str, str]] = {}

    async def apply_leg_offer(self, offer: SubscribeOffer) -> str:
        """The origin's offer on the leg; the answer."""
        return await self.ingest.apply_offer(offer)

    def _here(self, track_ids: Iterable[str]) -> list[str]:
        # Tracks the leg does not carry (yet) are left out; the origin offers them again
        # once the leg carries them.
        known = {t.track_id for t in self.router.tracks()}
        return [t for t in track_ids if t in known]

    async def subscribe(self, user_id: int, track_ids: list[str]) -> SubscribeOffer | None:
        """Open (or renew) a viewer's subscribe leg here: the first offer, or none."""
        leg = self.viewers.get(user_id)
        if leg is not None and leg.pc.connectionState in ("closed", "failed"):
            await self.drop(user_id)
            leg = None
        if leg is None:
            leg = self.viewers[user_id] = self.media.subscribe_leg(str(user_id), self.router)
            leg.on_layer = functools.partial(self._layer_changed, user_id)
        self.wanted[user_id] = list(track_ids)
        return await leg.set_tracks(self._here(track_ids))

    def _layer_changed(self, user_id: int, track_id: str, layer: int) -> None:
        # Each viewer here gets the layer its own link carries (the leg carries every layer);
        # it is told so (``media.layer``) as a viewer of the origin is, through the origin.
        if self.tell_layer is None:
            return
        task = asyncio.ensure_future(
            self.tell_layer(self.origin, self.session_id, user_id, track_id, layer)
        )
        self._tells.add(task)
        task.add_done_callback(self._tells.discard)

    async def publish(
        self,
        user_id: int,
        sdp: str,
        sources: Mapping[str, str],
        layers: Mapping[str, int],
        refused: Mapping[str, str],
    ) -> dict[str, Any]:
        """A viewer's publish offer (he publishes here): the reply ``rtc.publish`` gives him.

        ``refused``: source -> why the origin's rules refuse it to him now."""
        self.refused[user_id] = dict(refused)
        leg = self.publishers.get(user_id)
        if leg is None:

            def authorize(req: TrackRequest) -> str | None:
                return self.refused.get(user_id, {}).get(req.source, None)

            leg = self.publishers[user_id] = self.media.publish_leg(
                str(user_id), self.router, authorize
            )
        return publish_reply(await leg.apply_offer(sdp, sources, layers))

    def local_tracks(self) -> list[str]:
        """The tracks published here (by this node's publishers), not relayed from the origin."""
        mine = {str(user) for user in self.publishers}
        return [t.track_id for t in self.router.tracks() if t.publisher_id in mine]

    async def uplink_offer(self) -> SubscribeOffer | None:
        """Make the uplink carry what is published here: its offer to the origin, or none."""
        if self.uplink is None:
            if not self.local_tracks():
                return None
            self.uplink = self.media.subscribe_leg(
                uplink_participant(self.origin), self.router, relay=True
            )
        return await self.uplink.set_tracks(self.local_tracks())

    async def uplink_answer(self, sdp: str) -> SubscribeOffer | None:
        if self.uplink is None:
            raise SignalingError("conflict", "there is no uplink offer to answer")
        return await self.uplink.apply_answer(sdp)

    def apply_rules(self, unpublish: Iterable[str], paused: Iterable[str]) -> None:
        """What the origin's rules say of the tracks published here: ended, or muted."""
        local = set(self.local_tracks())
        for track_id in unpublish:
            if track_id in local:
                self.router.unpublish(track_id)
        paused = set(paused)
        for track_id in local - set(unpublish):
            if track_id in paused:
                self.router.pause(track_id)
            else:
                self.router.resume(track_id)

    def _leg(self, user_id: int) -> SubscribeSession:
        leg = self.viewers.get(user_id)
        if leg is None:
            raise SignalingError("conflict", "there is no offer to answer: subscribe first")
        return leg

    def resumption(self, user_id: int) -> dict[str, Any]:
        """Whether this viewer's legs here go on under its new Socket.IO connection, and the
        offer its subscribe leg still waits an answer for (``LiveRuntime.resumption``)."""
        leg = self.viewers.get(user_id)
        if not legs_go_on([leg, self.publishers.get(user_id)]):
            return {"alive": False, "offer": None}
        offer = None if leg is None else leg.outstanding()
        return {"alive": True, "offer": offer_to_wire(offer) if offer is not None else None}

    async def answer(self, user_id: int, sdp: str) -> SubscribeOffer | None:
        """A viewer's answer; the follow-up offer, if changes waited for it."""
        return await self._leg(user_id).apply_answer(sdp)

    async def add_ice_candidate(
        self, user_id: int, candidate: Mapping[str, Any] | None, leg: str = "subscribe"
    ) -> None:
        if leg == "publish":
            publisher = self.publishers.get(user_id)
            if publisher is None:
                raise SignalingError("conflict", "no publish connection yet")
            await publisher.add_ice_candidate(candidate)
            return
        await self._leg(user_id).add_ice_candidate(candidate)

    async def set_tracks(self, wanted: Mapping[int, list[str]]) -> dict[int, SubscribeOffer]:
        """Each viewer's tracks, as the origin's plan says; the offers to tell them."""
        offers: dict[int, SubscribeOffer] = {}
        for user_id, track_ids in wanted.items():
            leg = self.viewers.get(user_id)
            if leg is None:
                continue
            self.wanted[user_id] = list(track_ids)
            try:
                offer = await leg.set_tracks(self._here(track_ids))
            except (SignalingError, InvalidStateError) as exc:
                log.info("edge renegotiation for %s skipped: %s", user_id, exc)
                continue
            if offer is not None:
                offers[user_id] = offer
        return offers

    async def drop(self, user_id: int) -> None:
        """A viewer leaves this node: his subscribe leg closes, and what he published here ends."""
        self.router.unsubscribe_participant(str(user_id))
        self.router.unpublish_participant(str(user_id))
        self.wanted.pop(user_id, None)
        self.refused.pop(user_id, None)
        for legs in (self.viewers, self.publishers):
            leg = legs.pop(user_id, None)
            if leg is not None:
                with contextlib.suppress(Exception):
                    await leg.close()

    def streams(self) -> float:
        """What this session costs this node, in streams: its viewers, the leg, the uplink
        (``relay_streams``)."""
        return len(self.viewers) + self.relay_streams()

    def relay_streams(self) -> float:
        """The leg received (one stream) and the uplink sent (one per stream it carries:
        ``rule.leg_streams``)."""
        uplink = 0.0 if self.uplink is None else leg_streams(self.uplink.layer_counts())
        return 1 + uplink

    async def close(self) -> None:
        for user_id in list(set(self.viewers) | set(self.publishers)):
            await self.drop(user_id)
        if self.uplink is not None:
            with contextlib.suppress(Exception):
                await self.uplink.close()
        await self.ingest.close()
        self.router.close()


class EdgeRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What an origin asks of this node about one session (``realtime/live/cascade.py``)."""

    op: Literal[
        "leg",
        "subscribe",
        "answer",
        "ice",
        "tracks",
        "drop",
        "detach",
        "publish",
        "uplink",
        "uplink_answer",
        "resume",
    ]
    session_id: int
    offer: dict[str, Any] | None = None
    user: int | None = None
    tracks: list[str] = []
    sdp: str | None = None
    candidate: dict[str, Any] | None = None
    leg: Literal["subscribe", "publish"] = "subscribe"
    wanted: list[tuple[int, list[str]]] = []
    # tracks: the local tracks the origin's rules end, and those they mute.
    unpublish: list[str] = []
    paused: list[str] = []
    # publish: the client's sources and layers by mid, and the sources refused him (why).
    sources: dict[str, str] = {}
    layers: dict[str, int] = {}
    refused: dict[str, str] = {}


class EdgeLayer(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An edge tells the origin (``calls`` kind ``edge_layer``) which layer of a track sent in
    layers a viewer it serves now receives (-1: video paused for its connection)."""

    session_id: int
    user: int
    track_id: str
    layer: int


class Edges:
    """The cascaded sessions this node serves viewers of, by session id; answers the origins'
    requests (``calls`` kind ``edge``)."""

    def __init__(self, media: MediaOptions, tell_layer: TellLayer | None = None) -> None:
        self.media = media
        self.tell_layer = tell_layer
        self.sessions: dict[int, EdgeRuntime] = {}

    def viewers(self) -> int:
        return sum(len(edge.viewers) for edge in self.sessions.values())

    async def called(self, origin: str, body: dict[str, Any]) -> dict[str, Any]:
        req = schemas.parse(EdgeRequest, body)
        try:
            return await self._handle(origin, req)
        except SignalingError as exc:
            code = "conflict" if exc.code == "closed" else exc.code
            raise HomeroomError(code, str(exc)) from None
        except (KeyError, ValueError, TypeError) as exc:
            raise HomeroomError("bad_request", f"malformed edge request: {exc}") from None

    async def _handle(self, origin: str, req: EdgeRequest) -> dict[str, Any]:
        edge = self.sessions.get(req.session_id)
        if edge is not None and edge.origin != origin:
            # The session moved to another origin: the old copy goes, the new one is built.
            await self.close_session(req.session_id)
            edge = None
        if edge is None and req.op in ("leg", "subscribe"):
            # The origin attaches this node by its leg's first offer or, when nothing is
            # published yet (the leg has nothing to offer), by the first viewer it serves here:
            # the leg's first offer then comes with the first track.
            edge = self.sessions[req.session_id] = EdgeRuntime(
                req.session_id, origin, self.media, self.tell_layer
            )
        if edge is None:
            if req.op in ("drop", "detach"):
                return {}
            raise not_found("this server serves no viewer of that session")
        if req.op == "leg":
            if req.offer is None:
                raise bad_request("a leg request carries an offer")
            answer = await edge.apply_leg_offer(offer_from_wire(req.offer))
            # Viewers waiting for a track the leg carries now get it (their offers go back).
            offers = await edge.set_tracks(dict(edge.wanted))
            return {"sdp": answer, "offers": [[u, offer_to_wire(o)] for u, o in offers.items()]}
        if req.op == "detach":
            await self.close_session(req.session_id)
            return {}
        if req.op == "uplink":
            offer = await edge.uplink_offer()
            return {"offer": offer_to_wire(offer) if offer is not None else None}
        if req.op == "uplink_answer":
            offer = await edge.uplink_answer(str(req.sdp))
            return {"offer": offer_to_wire(offer) if offer is not None else None}
        if req.user is None and req.op != "tracks":
            raise bad_request(f"an edge {req.op} request names a viewer")
        user = int(req.user or 0)
        if req.op == "publish":
            if req.sdp is None:
                raise bad_request("a publish request carries an offer")
            return await edge.publish(user, req.sdp, req.sources, req.layers, req.refused)
        if req.op == "resume":
            return edge.resumption(user)
        if req.op == "subscribe":
            offer = await edge.subscribe(user, req.tracks)
        elif req.op == "answer":
            offer = await edge.answer(user, str(req.sdp))
        elif req.op == "ice":
            await edge.add_ice_candidate(user, req.candidate, req.leg)
            return {}
        elif req.op == "drop":
            await edge.drop(user)
            return {}
        else:
            edge.apply_rules(req.unpublish, req.paused)
            offers = await edge.set_tracks(dict(req.wanted))
            return {"offers": [[u, offer_to_wire(o)] for u, o in offers.items()]}
        return {"offer": offer_to_wire(offer) if offer is not None else None}

    async def close_session(self, session_id: int) -> None:
        edge = self.sessions.pop(session_id, None)
        if edge is not None:
            await edge.close()

    async def origin_gone(self, node: str) -> None:
        """``node`` left the registry: the sessions it fed end here (their viewers join again
        wherever the session runs next)."""
        for session_id in [k for k, e in self.sessions.items() if e.origin == node]:
            await self.close_session(session_id)

    async def close(self) -> None:
        for session_id in list(self.sessions):
            await self.close_session(session_id)
