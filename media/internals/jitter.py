"""Frame release on ingest: a frame leaves the receiver as soon as it is complete.

aiortc's ``JitterBuffer`` (made for a local decoder) releases a video frame only when the first
packet of the *next* frame arrives, and an audio frame only once four more frames are complete:
one frame interval of latency for video (33 ms at 30 fps, 500 ms at 2 fps) and 80 ms for Opus,
at every node a frame crosses (publisher -> origin, origin -> edge). A forwarding server has no
decoder to feed smoothly (each viewer's own jitter buffer does that), so
:class:`ReleasingJitterBuffer` releases a frame when it is complete:

* video: the contiguous packets from the buffer's origin, all with one RTP timestamp, up to the
  packet with the marker bit (RFC 7741 / RFC 6184: the last packet of a frame). A sender that
  never sets the marker is still served by aiortc's rule (the next timestamp ends the frame);
* audio: every packet is one frame (Opus, G.711 and G.722 are never fragmented);
* and every complete frame at once, not one per packet received as aiortc does: after a hole
  is repaired (a NACKed packet comes back) the frames behind it follow immediately, so a
  1-packet-per-frame stream (a low layer, audio) does not stay behind by one frame per repair.

A run of padding-only packets (empty payload, sent by some encoders to probe bandwidth) is
dropped, not released as an empty frame. A hole still holds everything behind it until it is
repaired or the buffer overflows (aiortc's capacity rule, with its PLI), as before.

The receiver calls ``add(packet)`` and takes one frame back (its private ``__jitter_buffer``,
replaced by :func:`media.internals.ingest.install_ingest`); the other frames completed by the
same packet wait in :attr:`ReleasingJitterBuffer.ready` until ``IngestQueue.put`` collects
them, right after the first, on the same call.
"""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket


class ReleasedFrame(JitterFrame):
    """A complete frame, with the RTP payload of its first packet as it arrived (the codec's
    payload descriptor, which the depacketized ``data`` no longer has: a VP8 frame's
    temporal layer)."""

    def __init__(self, data: bytes, timestamp: int, first_payload: bytes) -> None:
        super().__init__(data=data, timestamp=timestamp)
        self.first_payload = first_payload


class ReleasingJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer (same capacity, overflow and PLI rules) with frame release on
    completion. Memory: ``capacity`` packet slots, as aiortc's."""

    def __init__(self, capacity: int, is_video: bool) -> None:
        super().__init__(capacity=capacity, prefetch=0, is_video=is_video)
        self.ready: list[JitterFrame] = []

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        # Called by JitterBuffer.add() after each packet is stored.
        self.ready.clear()  # not collected last time: the receiver dropped those frames too
        first: JitterFrame | None = None
        while True:
            count, frame = self._complete_run()
            if not count:
                return first
            self.remove(count)
            if frame is None:
                continue
            if first is None:
                first = frame
            else:
                self.ready.append(frame)

    def _complete_run(self) -> tuple[int, JitterFrame | None]:
        """(packets, frame) of the complete frame at the origin; (0, None) if there is none
        yet; (packets, None) for a run of padding only."""
        packets = self._packets
        capacity = self._capacity
        origin = self._origin
        if origin is None:
            return 0, None
        run: list[RtpPacket] = []
        timestamp: int | None = None
        end = 0
        for count in range(capacity):
            packet = packets[(origin + count) % capacity]
            if packet is None:
                return 0, None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                end = count  # the next frame started: this one is complete (aiortc's rule)
                break
            run.append(packet)
            if packet.marker or not self._is_video:
                end = count + 1
                break
        else:
            return 0, None
        data = b"".join(p._data for p in run)  # type: ignore[attr-defined]
        if not data or timestamp is None:
            return end, None
        first_payload = next((p.payload for p in run if p.payload), b"")
        return end, ReleasedFrame(data, timestamp, first_payload)

    def take_ready(self) -> list[JitterFrame]:
        """The further frames the last packet completed, in order (then forgotten)."""
        frames, self.ready = self.ready, []
        return frames
