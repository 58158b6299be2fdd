"""The published tracks of one live session (a lesson, a meeting) and who receives them.

No signaling and no Socket.IO here: ``signaling.PublishSession`` feeds tracks in,
``signaling.SubscribeSession`` takes subscriber tracks out, and whoever owns the room listens to
:meth:`MediaRouter.add_listener` to tell clients which tracks exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiortc import RTCRtpReceiver

from media.forwarder import ForwardedTrack, RequestPli, SubscriberTrack
from media.internals import install_ingest, send_pli
from media.pli import DEFAULT_PLI_INTERVAL
from media.screen import ScreenSubscriberTrack
from media.simulcast import LayeredTrack

logger = logging.getLogger(__name__)

# What a published track is, as the classroom UI names it, and the media kind each must carry.
SOURCES: dict[str, str] = {
    "camera": "video",
    "microphone": "audio",
    "screen": "video",
    "screen_audio": "audio",
}

TrackEvent = Literal["published", "unpublished", "paused", "resumed"]
Listener = Callable[[TrackEvent, "TrackInfo"], None]
# A published track: one encoding, or a camera/screen in layers.
Published = ForwardedTrack | LayeredTrack
# At most this many layers per track (LiveKit, mediasoup and browsers use three).
MAX_LAYERS = 3


class UnknownTrackError(KeyError):
    """No published track has this id (it may have just been unpublished)."""


@dataclass(frozen=True)
class TrackInfo:
    """What clients are told about a published track."""

    track_id: str
    publisher_id: str
    source: str
    kind: str
    paused: bool

    @classmethod
    def of(cls, track: Published) -> TrackInfo:
        return cls(track.id, track.publisher_id, track.source, track.kind, track.paused)


class MediaRouter:
    """Holds the :class:`ForwardedTrack` objects of one room; all methods run on the loop."""

    def __init__(
        self, *, pli_interval: float = DEFAULT_PLI_INTERVAL, queue_frames: int | None = None
    ) -> None:
        self._pli_interval = pli_interval
        self._queue_frames = queue_frames
        self._tracks: dict[str, Published] = {}
        self._listeners: list[Listener] = []

    # -- publishing -------------------------------------------------------------------------

    def publish(
        self,
        participant_id: str,
        source: str,
        kind: str,
        request_pli: RequestPli,
        *,
        track_id: str | None = None,
    ) -> ForwardedTrack:
        """Register a track; the caller feeds frames to ``ForwardedTrack.on_packet``."""
        expected = SOURCES.get(source)
        if expected is None:
            raise ValueError(f"unknown source {source!r}")
        if expected != kind:
            raise ValueError(f"source {source!r} carries {expected}, not {kind}")
        if track_id is not None and track_id in self._tracks:
            raise ValueError(f"track {track_id!r} is already published")
        track = ForwardedTrack(
            kind,
            request_pli,
            track_id=track_id,
            publisher_id=participant_id,
            source=source,
            pli_interval=self._pli_interval,
            queue_frames=self._queue_frames,
            # A screen share's viewers each get the frame rate their link carries.
            subscriber=ScreenSubscriberTrack if source == "screen" else None,
        )
        track.on_ended = self._on_track_ended
        self._tracks[track.id] = track
        self._emit("published", track)
        return track

    def publish_layers(
        self,
        participant_id: str,
        source: str,
        request_plis: list[RequestPli],
        *,
        track_id: str | None = None,
    ) -> tuple[LayeredTrack, list[ForwardedTrack]]:
        """Register a video track sent in layers (one ``request_pli`` per layer, lowest first);
        the caller feeds each layer's frames to its ``ForwardedTrack.on_packet``."""
        if SOURCES.get(source) != "video":
            raise ValueError(f"source {source!r} cannot be sent in layers")
        if not 1 <= len(request_plis) <= MAX_LAYERS:
            raise ValueError(f"a track has 1 to {MAX_LAYERS} layers")
        if track_id is not None and track_id in self._tracks:
            raise ValueError(f"track {track_id!r} is already published")
        layers = [
            ForwardedTrack(
                "video",
                request_pli,
                publisher_id=participant_id,
                source=source,
                pli_interval=self._pli_interval,
                queue_frames=self._queue_frames,
            )
            for request_pli in request_plis
        ]
        track = LayeredTrack(
            layers,
            track_id=track_id,
            publisher_id=participant_id,
            source=source,
            queue_frames=self._queue_frames,
        )
        track.on_ended = self._on_track_ended
        self._tracks[track.id] = track
        self._emit("published", track)
        return track, layers

    def publish_receiver(
        self, participant_id: str, source: str, receiver: RTCRtpReceiver
    ) -> ForwardedTrack:
        """Publish a remote track straight from its receiver (inside the ``track`` event)."""
        track = self.publish(
            participant_id, source, receiver.track.kind, lambda: send_pli(receiver)
        )
        install_ingest(receiver, track.on_packet, track.on_end, track.reference_lost)
        return track

    def unpublish(self, track_id: str) -> None:
        """End a track for all its subscribers; unknown ids are ignored (idempotent)."""
        track = self._tracks.get(track_id)
        if track is not None:
            track.stop()

    def unpublish_participant(self, participant_id: str) -> None:
        for track in [t for t in self._tracks.values() if t.publisher_id == participant_id]:
            track.stop()

    def pause(self, track_id: str) -> None:
        """Mute: stop forwarding this track (the publisher may keep sending)."""
        track = self.get(track_id)
        if not track.paused:
            track.pause()
            self._emit("paused", track)

    def resume(self, track_id: str) -> None:
        track = self.get(track_id)
        if track.paused:
            track.resume()
            self._emit("resumed", track)

    # -- subscribing ------------------------------------------------------------------------

    def subscribe(self, subscriber_id: str, track_id: str) -> SubscriberTrack:
        """A track to send to ``subscriber_id``: add it with ``media.attach_track``."""
        return self.get(track_id).subscribe(subscriber_id)

    def unsubscribe(self, subscriber_id: str, track_id: str) -> None:
        track = self._tracks.get(track_id)
        if track is not None:
            track.unsubscribe(subscriber_id)

    def unsubscribe_participant(self, subscriber_id: str) -> None:
        for track in list(self._tracks.values()):
            track.unsubscribe(subscriber_id)

    # -- queries ----------------------------------------------------------------------------

    def get(self, track_id: str) -> Published:
        try:
            return self._tracks[track_id]
        except KeyError:
            raise UnknownTrackError(track_id) from None

    def tracks(self) -> list[TrackInfo]:
        return [TrackInfo.of(t) for t in self._tracks.values()]

    def stats(self) -> dict[str, Any]:
        """Counters per track and per subscriber (see media.stats)."""
        return {
            track_id: {**TrackInfo.of(t).__dict__, **t.stats.snapshot()}
            for track_id, t in self._tracks.items()
        }

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, info)`` on publish/unpublish/pause/resume; returns remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def close(self) -> None:
        for track in list(self._tracks.values()):
            track.stop()

    # -- internals --------------------------------------------------------------------------

    def _on_track_ended(self, track: Published) -> None:
        if self._tracks.get(track.id) is track:
            del self._tracks[track.id]
            self._emit("unpublished", track)

    def _emit(self, event: TrackEvent, track: Published) -> None:
        info = TrackInfo.of(track)
        for listener in list(self._listeners):
            try:
                listener(event, info)
            except Exception:  # one broken listener must not break the media path
                logger.exception("media router listener failed on %s", event)
