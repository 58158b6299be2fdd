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
dropped, not released as an empty frame.

A hole holds the frames behind it while a retransmission may still fill it, and no longer:

* video: until the newest packet is :data:`HOLE_WAIT_S` of media time (RTP timestamps, no
  clock) past the incomplete frame at the head; then that frame is dropped, the frames behind
  it leave and :attr:`ReleasingJitterBuffer.holes_skipped` counts one more (the ingest tells
  the forwarder, whose viewers wait for the keyframe it asks for: a frame whose reference is
  gone would be drawn wrong). aiortc's own overflow rule did the same with a PLI flag and
  passed the broken frames on, but only after 512 packets, and its
  receiver NACKs a missing packet again only when a *new* gap appears: a packet lost with its
  retransmission once the loss had stopped held a 15 fps one-packet-per-frame layer for 34 s
  (seen in CI: a publisher's lower layers at 0 fps after its uplink's loss stopped);
* audio: only for a packet reordered on the way (:data:`AUDIO_HOLE_WAIT_S`). Nobody
  retransmits audio (aiortc's receiver NACKs video only): the packets behind a hole then
  leave (aiortc held them until 16 had arrived, 320 ms of Opus, then let them go in a burst).

The receiver calls ``add(packet)`` and takes one frame back (its private ``__jitter_buffer``,
replaced by :func:`media.internals.ingest.install_ingest`); the other frames completed by the
same packet wait in :attr:`ReleasingJitterBuffer.ready` until ``IngestQueue.put`` collects
them, right after the first, on the same call.
"""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

# Media time a video hole may hold the frames behind it: about two NACK round trips on a slow
# school link (a retransmission that has not come by then is lost too).
HOLE_WAIT_S = 0.5
VIDEO_CLOCK_RATE = 90000
# Audio is never retransmitted: a hole waits only for a packet reordered on the way (Opus's
# 48 kHz clock; three 20 ms packets).
AUDIO_HOLE_WAIT_S = 0.06
AUDIO_CLOCK_RATE = 48000


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
        # How far (RTP ticks) the newest packet may get past a hole's head before it gives up.
        self._hole_wait = (
            int(HOLE_WAIT_S * VIDEO_CLOCK_RATE)
            if is_video
            else int(AUDIO_HOLE_WAIT_S * AUDIO_CLOCK_RATE)
        )
        # Holes given up (frames dropped behind them), for stats and tests.
        self.holes_skipped = 0
        # The timestamp of the last frame dropped: a late retransmission of it is dropped too
        # (it would leave as a frame of its own, a fragment).
        self._dropped_timestamp: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if packet.timestamp == self._dropped_timestamp and self._is_video:
            return False, None
        pli, frame = super().add(packet)
        while frame is None and self._skip_hole(packet.timestamp):
            self.holes_skipped += 1
            frame = self._remove_frame(packet.sequence_number)
        return pli, frame

    def _skip_hole(self, newest: int) -> bool:
        """Drop what a hole at the head holds up if nothing will fill it (module docstring);
        False if there is no such hole. Called when no frame is complete at the head."""
        packets, capacity, origin = self._packets, self._capacity, self._origin
        if origin is None:
            return False
        for offset in range(capacity):
            head = packets[(origin + offset) % capacity]
            if head is not None:
                break
        else:
            return False
        if not offset and not self._is_video:
            return False  # no hole: an audio packet at the head leaves as it arrives
        age = (newest - head.timestamp) & 0xFFFFFFFF
        if age >= 1 << 31 or age < self._hole_wait:
            return False  # the newest packet is not (long enough) past the head
        if not self._is_video:
            self.remove(offset)  # the hole only: the packets behind it leave
            return True
        # The head frame is incomplete (else it would have left) and stale: drop its packets
        # and the hole before them. Slots after its last packet stay: they may be the next
        # frame's first packets, still to be repaired. The newest packet, at a later
        # timestamp, ends the scan.
        last = offset
        for index in range(offset + 1, capacity):
            packet = packets[(origin + index) % capacity]
            if packet is None:
                continue
            if packet.timestamp != head.timestamp:
                break
            last = index
        self.remove(last + 1)
        self._dropped_timestamp = head.timestamp
        return True

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
