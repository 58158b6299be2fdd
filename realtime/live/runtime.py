"""One running session on this node: its rules, its media router, its peer connections.

After every change of the session's state, :meth:`LiveRuntime.refresh` makes the media match
the rules: tracks that may no longer be published stop, muted tracks pause, and each
participant's subscribe leg is renegotiated to exactly the tracks they should receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration
from aiortc.exceptions import InvalidStateError

from media.link import participant_links
from media.router import MediaRouter, TrackInfo
from realtime.domain.live import LiveSession
from signaling import (
    CodecPolicy,
    PublishSession,
    SignalingError,
    SubscribeOffer,
    SubscribeSession,
    TrackRequest,
)

log = logging.getLogger(__name__)

Send = Callable[[str, str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class MediaOptions:
    codecs: CodecPolicy
    configuration: Callable[[], RTCConfiguration]
    public_address: str | None


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
    def __init__(self, session: LiveSession, media: MediaOptions, send: Send) -> None:
        self.session = session
        self.media = media
        self.send = send
        self.router = MediaRouter()
        self.publishers: dict[int, PublishSession] = {}
        self.subscribers: dict[int, SubscribeSession] = {}
        self.sids: dict[int, str] = {}
        self.last_activity = time.monotonic()
        self.grace: dict[int, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()
        self._pending_refresh: asyncio.Task[None] | None = None
        self.router.add_listener(self._on_track_event)

    # --- legs -----------------------------------------------------------------------------

    def publish_leg(self, user_id: int) -> PublishSession:
        leg = self.publishers.get(user_id)
        if leg is None:

            def authorize(req: TrackRequest) -> str | None:
                return self.session.publish_refusal(user_id, req.source)

            leg = PublishSession(
                str(user_id),
                self.router,
                authorize=authorize,
                codecs=self.media.codecs,
                configuration=self.media.configuration(),
                public_address=self.media.public_address,
            )
            self.publishers[user_id] = leg
        return leg

    def subscribe_leg(self, user_id: int) -> SubscribeSession:
        leg = self.subscribers.get(user_id)
        if leg is None:
            leg = SubscribeSession(
                str(user_id),
                self.router,
                codecs=self.media.codecs,
                configuration=self.media.configuration(),
                public_address=self.media.public_address,
            )
            self.subscribers[user_id] = leg
        return leg

    async def drop_legs(self, user_id: int) -> None:
        """Close a participant's peer connections and end what they published."""
        self.router.unpublish_participant(str(user_id))
        self.router.unsubscribe_participant(str(user_id))
        for legs in (self.publishers, self.subscribers):
            leg = legs.pop(user_id, None)
            if leg is not None:
                with contextlib.suppress(Exception):
                    await leg.close()

    # --- making the media match the rules -----------------------------------------------------

    def wanted_tracks(self, user_id: int, tracks: list[TrackInfo] | None = None) -> list[str]:
        tracks = self.router.tracks() if tracks is None else tracks
        receivers: dict[str, set[int]] = {}
        out = []
        for t in tracks:
            if t.publisher_id not in receivers:
                receivers[t.publisher_id] = self.session.receivers(int(t.publisher_id))
            if user_id in receivers[t.publisher_id]:
                out.append(t.track_id)
        return out

    async def refresh(self) -> None:
        async with self._lock:
            tracks = self.router.tracks()
            if tracks:
                self.last_activity = time.monotonic()
            for t in tracks:
                owner = int(t.publisher_id)
                refusal = self.session.publish_refusal(owner, t.source)
                if refusal is not None:
                    self.router.unpublish(t.track_id)
                    sid = self.sids.get(owner)
                    if sid is not None:
                        await self.send(
                            sid,
                            "rtc.unpublished",
                            {"session_id": self.session.id, "source": t.source, "reason": refusal},
                        )
                    continue
                paused = self.session.forwarding_paused(owner, t.source)
                if paused and not t.paused:
                    self.router.pause(t.track_id)
                elif not paused and t.paused:
                    self.router.resume(t.track_id)
            tracks = self.router.tracks()
            for user_id, leg in list(self.subscribers.items()):
                if leg.pc.connectionState in ("closed", "failed"):
                    # The viewer closed its peer connection before its Socket.IO connection.
                    self.subscribers.pop(user_id, None)
                    self.router.unsubscribe_participant(str(user_id))
                    continue
                try:
                    offer = await leg.set_tracks(self.wanted_tracks(user_id, tracks))
                except (SignalingError, InvalidStateError) as exc:
                    log.info("renegotiation for %s skipped: %s", user_id, exc)
                    continue
                except Exception:
                    log.exception("renegotiation for %s failed", user_id)
                    continue
                sid = self.sids.get(user_id)
                if offer is not None and sid is not None:
                    await self.send(sid, "rtc.offer", offer_message(self.session.id, offer))

    def schedule_refresh(self) -> None:
        if self._pending_refresh is None or self._pending_refresh.done():
            self._pending_refresh = asyncio.get_running_loop().create_task(self.refresh())

    def _on_track_event(self, event: str, info: TrackInfo) -> None:
        if event in ("published", "unpublished"):
            p = self.session.participants.get(int(info.publisher_id))
            if p is not None:
                if event == "published":
                    p.publishing.add(info.source)
                else:
                    p.publishing.discard(info.source)
            self.schedule_refresh()

    # --- statistics and shutdown ----------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "session_id": self.session.id,
            "participants": len(self.session.participants),
            "tracks": self.router.stats(),
            # Per participant: each leg's path, the viewer's estimate, loss, RTT, bad flags.
            "links": participant_links(self.publishers, self.subscribers),
        }

    async def close(self) -> None:
        for task in self.grace.values():
            task.cancel()
        for user_id in list(set(self.publishers) | set(self.subscribers)):
            await self.drop_legs(user_id)
        self.router.close()
