"""A session's media on an edge node: the leg from its origin, and the viewers served here.

A lesson bigger than one node (issue #13) runs on its origin node (its rules, its publishers,
its participants' state); an edge node only forwards. The origin decides everything: which
viewers this node serves, which tracks each receives (the same plan as for its own viewers,
``live_protocol.media_plan``), when the leg is renegotiated and when it is dropped. This node
answers the leg's offers (``signaling/relay.py``: the origin's tracks published into this
node's router under the origin's ids) and holds each of its viewers' subscribe legs, whose
offers go back to the origin, which tells the viewers.

Requests arrive from the origin over the bus (``realtime/cluster/calls.py``, kind ``edge``);
:class:`EdgeRuntime` is what they act on, one per cascaded session on this node.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec
from aiortc.exceptions import InvalidStateError

from media.router import MediaRouter
from realtime import schemas
from realtime.errors import HomeroomError, bad_request, not_found
from realtime.live.runtime import MediaOptions
from signaling import SignalingError, SubscribeOffer, SubscribeSession
from signaling.relay import RelayIngest
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
            }
            for t in offer.tracks
        ],
    }


def offer_from_wire(wire: Mapping[str, Any]) -> SubscribeOffer:
    tracks = [
        SubscribedTrack(
            str(t["track_id"]), str(t["mid"]), str(t["publisher_id"]), str(t["source"]), t["kind"]
        )
        for t in wire.get("tracks") or []
    ]
    return SubscribeOffer(str(wire["sdp"]), tracks)


class EdgeRuntime:
    """One cascaded session's media on this edge node. All methods run on the event loop."""

    def __init__(self, session_id: int, origin: str, media: MediaOptions) -> None:
        self.session_id = session_id
        self.origin = origin
        self.media = media
        self.router = MediaRouter()
        self.ingest = RelayIngest(
            f"{origin}/{session_id}",
            self.router,
            codecs=media.codecs,
            configuration=media.configuration(),
            public_address=media.public_address,
        )
        self.viewers: dict[int, SubscribeSession] = {}
        # What the origin last said each viewer receives, including tracks the leg did not
        # carry yet: offered to the viewer as soon as it does.
        self.wanted: dict[int, list[str]] = {}

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
        self.wanted[user_id] = list(track_ids)
        return await leg.set_tracks(self._here(track_ids))

    def _leg(self, user_id: int) -> SubscribeSession:
        leg = self.viewers.get(user_id)
        if leg is None:
            raise SignalingError("conflict", "there is no offer to answer: subscribe first")
        return leg

    async def answer(self, user_id: int, sdp: str) -> SubscribeOffer | None:
        """A viewer's answer; the follow-up offer, if changes waited for it."""
        return await self._leg(user_id).apply_answer(sdp)

    async def add_ice_candidate(self, user_id: int, candidate: Mapping[str, Any] | None) -> None:
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
        self.router.unsubscribe_participant(str(user_id))
        self.wanted.pop(user_id, None)
        leg = self.viewers.pop(user_id, None)
        if leg is not None:
            with contextlib.suppress(Exception):
                await leg.close()

    def streams(self) -> int:
        """What this session costs this node, in streams: its viewers and the leg."""
        return len(self.viewers) + 1

    async def close(self) -> None:
        for user_id in list(self.viewers):
            await self.drop(user_id)
        await self.ingest.close()
        self.router.close()


class EdgeRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What an origin asks of this node about one session (``realtime/live/cascade.py``)."""

    op: Literal["leg", "subscribe", "answer", "ice", "tracks", "drop", "detach"]
    session_id: int
    offer: dict[str, Any] | None = None
    user: int | None = None
    tracks: list[str] = []
    sdp: str | None = None
    candidate: dict[str, Any] | None = None
    wanted: list[tuple[int, list[str]]] = []


class Edges:
    """The cascaded sessions this node serves viewers of, by session id; answers the origins'
    requests (``calls`` kind ``edge``)."""

    def __init__(self, media: MediaOptions) -> None:
        self.media = media
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
        if req.op == "leg":
            if edge is None:
                edge = self.sessions[req.session_id] = EdgeRuntime(
                    req.session_id, origin, self.media
                )
            if req.offer is None:
                raise bad_request("a leg request carries an offer")
            answer = await edge.apply_leg_offer(offer_from_wire(req.offer))
            # Viewers waiting for a track the leg carries now get it (their offers go back).
            offers = await edge.set_tracks(dict(edge.wanted))
            return {"sdp": answer, "offers": [[u, offer_to_wire(o)] for u, o in offers.items()]}
        if edge is None:
            if req.op in ("drop", "detach"):
                return {}
            raise not_found("this server serves no viewer of that session")
        if req.op == "detach":
            await self.close_session(req.session_id)
            return {}
        if req.user is None and req.op != "tracks":
            raise bad_request(f"an edge {req.op} request names a viewer")
        user = int(req.user or 0)
        if req.op == "subscribe":
            offer = await edge.subscribe(user, req.tracks)
        elif req.op == "answer":
            offer = await edge.answer(user, str(req.sdp))
        elif req.op == "ice":
            await edge.add_ice_candidate(user, req.candidate)
            return {}
        elif req.op == "drop":
            await edge.drop(user)
            return {}
        else:
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
