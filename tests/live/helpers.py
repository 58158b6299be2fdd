"""Counting what a live participant receives."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from clients.live import LiveParticipant
from tests.media.peers import read_counter


@dataclass
class Watch:
    """Decoded frames per publisher and source, with the counters the frames carry."""

    counters: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    audio_frames: dict[int, int] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def attach(self, participant: LiveParticipant) -> None:
        def on_track(track: MediaStreamTrack, info: dict[str, Any]) -> None:
            self.tasks.append(asyncio.ensure_future(self._consume(track, participant, info)))

        participant.on_track = on_track

    async def _consume(
        self, track: MediaStreamTrack, p: LiveParticipant, info: dict[str, Any]
    ) -> None:
        mid = info.get("mid")
        try:
            while True:
                frame = await track.recv()
                meta = p.info(mid) if mid else info
                publisher = int(meta.get("publisher_id", 0))
                if isinstance(frame, av.VideoFrame):
                    key = (publisher, str(meta.get("source", "?")))
                    self.counters.setdefault(key, []).append(read_counter(frame))
                else:
                    self.audio_frames[publisher] = self.audio_frames.get(publisher, 0) + 1
        except (MediaStreamError, asyncio.CancelledError):
            pass

    def video_from(self, publisher: int, source: str = "camera") -> list[int]:
        return self.counters.get((publisher, source), [])

    def stop(self) -> None:
        for t in self.tasks:
            t.cancel()


async def eventually(predicate: Any, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def advancing(values: list[int], n: int = 10) -> bool:
    tail = values[-n:]
    return len(tail) == n and all(b > a for a, b in itertools.pairwise(tail))
