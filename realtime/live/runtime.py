"""One running session on this node: its rules, its media router, its peer connections.

After every change of the session's state, :meth:`LiveRuntime.refresh` makes the media match
the rules: tracks that may no longer be published stop, muted tracks pause, and each
participant's subscribe leg is renegotiated to exactly the tracks they should receive.

Participants are user ids: what the runtime has to tell someone (a renegotiation offer, a track
ended by the rules) goes through ``tell``, which the transport maps to a connection. A subscribe
leg's own states keep its first offer, answers and renegotiations from interleaving at their
awaits (``signaling/subscriber.py``): a change that arrives mid-negotiation is remembered and
offered next. Refreshes of one session run one at a time; different participants' legs
negotiate concurrently (a lock across them made a join storm's answers wait on each other).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc import RTCConfiguration
from aiortc.exceptions import InvalidStateError

from media.link import participant_links
from media.router import SOURCES, MediaRouter, TrackInfo
from realtime.domain.live import LiveSession
from realtime.domain.live_protocol import Track, media_plan
from realtime.errors import HomeroomError
from signaling import (
    CodecPolicy,
    PublishAnswer,
    PublishSession,
    SignalingError,
    SubscribeOffer,
    SubscribeSession,
    TrackRequest,
)
from signaling.publisher import Authorize
from signaling.relay import RelayIngest

if TYPE_CHECKING:
    from realtime.live.cascade import Cascade

log = logging.getLogger(__name__)

# Peer connection states that resuming cannot bring back.
DEAD = ("failed", "closed")


def legs_go_on(legs: Iterable[Any]) -> bool:
    """Whether a participant's peer connections (``None`` for a leg it does not have) can go
    on under a new Socket.IO connection: it has one, and none has failed."""
    present = [leg for leg in legs if leg is not None]
    return bool(present) and all(leg.connection_state not in DEAD for leg in present)


# tell(user_id, event, data): send to that participant's connection, if they have one.
Tell = Callable[[int, str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class MediaOptions:
    codecs: CodecPolicy
    configuration: Callable[[], RTCConfiguration]
    public_address: str | None

    def subscribe_leg(
        self, participant_id: str, router: MediaRouter, *, relay: bool = False
    ) -> SubscribeSession:
        """A subscribe leg over ``router`` with this node's codecs and ICE settings
        (``relay``: to another node, carrying every layer of a track sent in layers)."""
        return SubscribeSession(
            participant_id,
            router,
            codecs=self.codecs,
            configuration=self.configuration(),
            public_address=self.public_address,
            relay=relay,
        )

    def publish_leg(
        self, participant_id: str, router: MediaRouter, authorize: Authorize
    ) -> PublishSession:
        """A publish leg into ``router``, each track allowed by ``authorize``."""
        return PublishSession(
            participant_id,
            router,
            authorize=authorize,
            codecs=self.codecs,
            configuration=self.configuration(),
            public_address=self.public_address,
        )

    def relay_ingest(self, leg_id: str, router: MediaRouter) -> RelayIngest:
        """The receiving end of a node-to-node leg, republishing into ``router``."""
        return RelayIngest(
            leg_id,
            router,
            codecs=self.codecs,
            configuration=self.configuration(),
            public_address=self.public_address,
        )


def publish_reply(answer: PublishAnswer) -> dict[str, Any]:
    """What ``rtc.publish`` answers: the server's SDP, and what the offer published or not."""
    return {
        "sdp": answer.sdp,
        "published": [
            {"mid": t.mid, "kind": t.kind, "source": t.source, "track_id": t.track_id}
            for t in answer.published
        ],
        "rejected": [
            {"mid": t.mid, "kind": t.kind, "source": t.source, "reason": t.reason}
            for t in answer.rejected
        ],
    }


def offer_message(session_id: int, offer: SubscribeOffer) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "sdp": offer.sdp,
        "tracks": [
            {
                "track_id": t.track_id,
                "mid": t.mid,
                "publisher_id": int(t.publisher_id),
                "source": t.source,
                "kind": t.kind,
            }
            for t in offer.tracks
        ],
    }


class LiveRuntime:
    def __init__(
        self,
        session: LiveSession,
        media: MediaOptions,
        tell: Tell,
        cascade: Callable[[MediaRouter], Cascade] | None = None,
    ) -> None:
        self.session = session
        self.media = media
        self.tell = tell
        self.router = MediaRouter()
        # The edge nodes serving some of this session's viewers (realtime/live/cascade.py).
        self.cascade = cascade(self.router) if cascade is not None else None
        self.publishers: dict[int, PublishSession] = {}
        self.subscribers: dict[int, SubscribeSession] = {}
        self.last_activity = time.monotonic()
        self._lock = asyncio.Lock()
        # What a move keeps, as last stored (LiveSession.kept), and the lock that makes a change
        # to it and its storing one step (realtime/live/service.py ``LiveService.change``).
        self.kept: dict[str, Any] = session.kept()
        self.kept_lock = asyncio.Lock()
        self._pending_refresh: asyncio.Task[None] | None = None
        self._refresh_again = False
        self._tells: set[asyncio.Future[None]] = set()
        # Called when a track ends without its publisher asking (its leg failed, the edge it
        # came through died): the service tells everyone who still publishes what.
        self.on_publishing_ended: Callable[[], None] | None = None
        # Who publishes what, as everyone was last told (``session.state``).
        self.announced: dict[int, frozenset[str]] = {}
        self.router.add_listener(self._on_track_event)

    # --- legs -----------------------------------------------------------------------------

    def publish_leg(self, user_id: int) -> PublishSession:
        leg = self.publishers.get(user_id)
        if leg is None:

            def authorize(req: TrackRequest) -> str | None:
                return self.session.publish_refusal(user_id, req.source)

            leg = self.media.publish_leg(str(user_id), self.router, authorize)
            self.publishers[user_id] = leg
        return leg

    def subscribe_leg(self, user_id: int) -> SubscribeSession:
        leg = self.subscribers.get(user_id)
        if leg is None:
            leg = self.media.subscribe_leg(str(user_id), self.router)
            leg.on_layer = functools.partial(self.layer_changed, user_id)
            self.subscribers[user_id] = leg
        return leg

    def layer_changed(self, user_id: int, track_id: str, layer: int) -> None:
        """Tell a viewer which layer of a track it now receives; ``video_paused``: its link
        cannot carry even the lowest one (the web app says so; audio continues)."""
        message = {
            "session_id": self.session.id,
            "track_id": track_id,
            "layer": layer,
            "video_paused": layer < 0,
        }
        task = asyncio.ensure_future(self.tell(user_id, "media.layer", message))
        self._tells.add(task)
        task.add_done_callback(self._tells.discard)

    async def drop_legs(self, user_id: int) -> None:
        """Close a participant's peer connections and end what they published."""
        if self.cascade is not None:
            await self.cascade.drop(user_id)
        self.router.unpublish_participant(str(user_id))
        self.router.unsubscribe_participant(str(user_id))
        for legs in (self.publishers, self.subscribers):
            leg = legs.pop(user_id, None)
            if leg is not None:
                with contextlib.suppress(Exception):
                    await leg.close()

    # --- signalling, addressed by participant ------------------------------------------------

    async def publish(
        self, user_id: int, sdp: str, sources: dict[str, str], layers: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """The participant's publish offer; the reply carries the answer and what it changed."""
        edge = None
        if self.cascade is not None and user_id not in self.publishers:
            edge = self.cascade.publisher_edge(user_id)
        if edge is not None:
            # Served by an edge: he publishes there, the origin's rules deciding what.
            refused = {}
            for source in SOURCES:
                reason = self.session.publish_refusal(user_id, source)
                if reason is not None:
                    refused[source] = reason
            assert self.cascade is not None
            return await self.cascade.publish(user_id, edge, sdp, sources, layers or {}, refused)
        return publish_reply(await self.publish_leg(user_id).apply_offer(sdp, sources, layers))

    async def subscribe(self, user_id: int) -> dict[str, Any]:
        """Open the subscribe leg: the reply carries the server's first offer (or none)."""
        leg = self.subscribe_leg(user_id)
        offer = await leg.set_tracks(self.wanted_tracks(user_id))
        return {"offer": offer_message(self.session.id, offer) if offer else None}

    async def resumable(self, user_id: int) -> bool:
        """Whether the participant's peer connections go on under a new Socket.IO connection:
        it has one, and none has failed. Legs served by an edge are asked there; an edge that
        does not answer means starting over."""
        local = [self.publishers.get(user_id), self.subscribers.get(user_id)]
        if self.cascade is None or not self.cascade.on_edges(user_id):
            return legs_go_on(local)
        try:
            at_edges, _ = await self.cascade.resumption(user_id)
        except HomeroomError as exc:
            log.info("session %s: %s does not resume (%s)", self.session.id, user_id, exc)
            return False
        return at_edges and (legs_go_on(local) or not any(local))

    async def missed_offer(self, user_id: int) -> dict[str, Any] | None:
        """The subscribe leg's offer still waiting for an answer (made while the participant's
        connection was down, so perhaps never received), as an ``rtc.offer`` message; asked of
        its edge when one serves it."""
        if self.at_edge(user_id) is not None:
            assert self.cascade is not None
            try:
                _, offer = await self.cascade.resumption(user_id)
            except HomeroomError:
                return None  # the edge is being given up: the viewer is placed again
        else:
            leg = self.subscribers.get(user_id)
            offer = None if leg is None else leg.outstanding()
        return None if offer is None else offer_message(self.session.id, offer)

    def at_edge(self, user_id: int) -> str | None:
        """The edge node serving this viewer, or None (served here, or not subscribed)."""
        return None if self.cascade is None else self.cascade.viewers.get(user_id)

    async def subscribe_at_edge(self, user_id: int, edge: str) -> dict[str, Any]:
        """Open the viewer's subscribe leg on ``edge`` (fed from here, attached if new)."""
        assert self.cascade is not None
        offer = await self.cascade.subscribe(user_id, edge, self.wanted_tracks(user_id))
        return {"offer": offer_message(self.session.id, offer) if offer else None}

    async def answer(self, user_id: int, sdp: str) -> None:
        """The participant's answer to the last offer; a follow-up offer is told to them."""
        if self.cascade is not None and user_id in self.cascade.viewers:
            follow_up = await self.cascade.answer(user_id, sdp)
            if follow_up is not None:
                await self.tell(user_id, "rtc.offer", offer_message(self.session.id, follow_up))
            return
        leg = self.subscribers.get(user_id)
        if leg is None:
            raise SignalingError("conflict", "there is no offer to answer: subscribe first")
        follow_up = await leg.apply_answer(sdp)
        if follow_up is not None:
            await self.tell(user_id, "rtc.offer", offer_message(self.session.id, follow_up))

    async def add_ice_candidate(
        self, user_id: int, leg_name: str, candidate: dict[str, Any] | None
    ) -> None:
        if self.cascade is not None and self.cascade.serves(user_id, leg_name):
            await self.cascade.add_ice_candidate(user_id, candidate, leg_name)
            return
        legs: dict[int, Any] = self.publishers if leg_name == "publish" else self.subscribers
        leg = legs.get(user_id)
        if leg is None:
            raise SignalingError("conflict", f"no {leg_name} connection yet")
        await leg.add_ice_candidate(candidate)

    # --- making the media match the rules -----------------------------------------------------

    def _tracks(self) -> list[Track]:
        return [
            Track(t.track_id, int(t.publisher_id), t.source, t.paused) for t in self.router.tracks()
        ]

    def wanted_tracks(self, user_id: int) -> list[str]:
        return media_plan(self.session, self._tracks(), [user_id]).receive[user_id]

    async def refresh(self) -> None:
        """Make the media match the rules' plan (``live_protocol.media_plan``).

        Not once the session ended here (ended, or moved to another node): every track would be
        refused and its publisher told ``rtc.unpublished``, which the clients, already joined
        on the new node, would take for that node's word and stop their camera or screen."""
        if self.session.ended:
            self._refresh_again = False
            return
        async with self._lock:
            self._refresh_again = False
            tracks = self._tracks()
            if tracks:
                self.last_activity = time.monotonic()
            for user_id, leg in list(self.subscribers.items()):
                if leg.pc.connectionState in ("closed", "failed"):
                    # The viewer closed its peer connection before its Socket.IO connection.
                    self.subscribers.pop(user_id, None)
                    self.router.unsubscribe_participant(str(user_id))
            at_edges = list(self.cascade.viewers) if self.cascade is not None else []
            plan = media_plan(self.session, tracks, [*self.subscribers, *at_edges])
            for gone in plan.unpublish:
                self.router.unpublish(gone.track_id)
                await self.tell(
                    gone.user_id,
                    "rtc.unpublished",
                    {"session_id": self.session.id, "source": gone.source, "reason": gone.reason},
                )
            for track_id in plan.pause:
                self.router.pause(track_id)
            for track_id in plan.resume:
                self.router.resume(track_id)
            for user_id, wanted in plan.receive.items():
                sub = self.subscribers.get(user_id)
                if sub is None:  # dropped meanwhile
                    continue
                try:
                    offer = await sub.set_tracks(wanted)
                except (SignalingError, InvalidStateError) as exc:
                    log.info("renegotiation for %s skipped: %s", user_id, exc)
                    continue
                except Exception:
                    log.exception("renegotiation for %s failed", user_id)
                    continue
                if offer is not None:
                    await self.tell(user_id, "rtc.offer", offer_message(self.session.id, offer))
            if self.cascade is not None and (at_edges or self.cascade.uplinks):
                receive = {user_id: plan.receive.get(user_id, []) for user_id in at_edges}
                unpublished = [gone.track_id for gone in plan.unpublish]
                resumed = set(plan.resume)
                muted = [t.track_id for t in tracks if t.paused and t.track_id not in resumed]
                offers = await self.cascade.sync(receive, unpublished, [*plan.pause, *muted])
                for user_id, offer in offers.items():
                    await self.tell(user_id, "rtc.offer", offer_message(self.session.id, offer))

    def schedule_refresh(self) -> None:
        if self._pending_refresh is None or self._pending_refresh.done():
            self._pending_refresh = asyncio.get_running_loop().create_task(self._refreshes())
        else:
            # A refresh under way may have read the tracks already (an edge's uplink publishes
            # here while the refresh negotiates it): it runs once more.
            self._refresh_again = True

    async def _refreshes(self) -> None:
        await self.refresh()
        # (Not once ended: refresh() then returns at once, and this loop would never yield.)
        while self._refresh_again and not self.session.ended:
            await self.refresh()

    def _on_track_event(self, event: str, info: TrackInfo) -> None:
        if event in ("published", "unpublished"):
            p = self.session.participants.get(int(info.publisher_id))
            if p is not None:
                if event == "published":
                    p.publishing.add(info.source)
                elif info.source in p.publishing:
                    p.publishing.discard(info.source)
                    if self.on_publishing_ended is not None:
                        self.on_publishing_ended()
            self.schedule_refresh()

    def publishing(self) -> dict[int, frozenset[str]]:
        """Who publishes what now."""
        return {uid: frozenset(p.publishing) for uid, p in self.session.participants.items()}

    # --- statistics and shutdown ----------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "session_id": self.session.id,
            "participants": len(self.session.participants),
            "tracks": self.router.stats(),
            # Per participant: each leg's path, the viewer's estimate, loss, RTT, bad flags.
            "links": participant_links(self.publishers, self.subscribers),
            # Viewers served by edge nodes, per edge (docs/scaling.md "One lesson, many nodes").
            "edges": {edge: len(self.cascade.on(edge)) for edge in sorted(self.cascade.legs)}
            if self.cascade is not None
            else {},
        }

    async def close(self) -> None:
        if self.cascade is not None:
            await self.cascade.close()
        for user_id in list(set(self.publishers) | set(self.subscribers)):
            await self.drop_legs(user_id)
        self.router.close()
