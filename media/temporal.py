"""A screen share's frame rate per viewer: VP8 temporal layers. Pure logic, no I/O, the clock
passed in.

A publisher sends its screen as one VP8 encoding with temporal layers (``scalabilityMode``
"L1T3": every frame has a temporal layer id, TID, in its RTP payload descriptor, RFC 7741 4.2).
The frames of TID 0 alone are a quarter of the frame rate, TID 0 and 1 half of it, all three
the full rate; a frame of TID k references only frames of TID <= k, so a viewer can be sent the
frames of TID <= k only and still decode every one of them, at full resolution. Each viewer of
a screen gets the highest step its link carries (``media.layers.LayerSelector``, fed with the
steps' measured rates, as a camera's layers are), and only below a quarter of the frame rate
is its video paused (audio first).

The rules (those of mediasoup's VP8 handling and LiveKit's VP8 munger):

* **Down at once.** Leaving out the higher layers never breaks decoding.
* **Up at a frame that allows it.** One step at a time, at a frame of the next layer that
  depends on TL0 frames only (the layer sync bit, Y), or at a keyframe (which refreshes every
  reference, so every layer may follow it). After a pause (nothing sent), only at a keyframe.
* **One continuous stream.** The viewer's sender numbers its own packets (sequence numbers stay
  contiguous, and a NACK can only name a packet it sent, never one of a frame left out), and
  each frame left out moves the picture ids of the frames after it back by one (a receiver
  waits for a missing picture id as for a lost frame). A TL0PICIDX (only present where the
  payload carries one) moves back by one for each TL0 frame left out, which happens only
  while the video is paused.

Memory: a few integers per viewer, and per track three byte and frame counters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

# VP8's temporal layers as Chromium and libvpx send them ("L1T3"): TID 0, 1, 2.
MAX_TEMPORAL_LAYERS = 3
PAUSED = -1  # media.layers.VIDEO_OFF: no frame sent

_PICTURE_ID_MASK_15 = 0x7FFF
_PICTURE_ID_MASK_7 = 0x7F

# Rates are measured over windows of at least this long, smoothed (EWMA) over a few windows;
# a temporal layer that sent no frame for LAYER_IDLE_S is not sent now (the publisher
# stopped using temporal layers, or sends fewer). As media.simulcast's layer rates.
RATE_WINDOW_S = 0.5
LAYER_IDLE_S = 2.0
_RATE_SMOOTHING = 0.5


class FrameLayer(NamedTuple):
    """A VP8 frame's temporal layer: its TID, whether it is a layer sync frame (Y: it
    references TL0 frames only), and its TL0PICIDX (None when the descriptor has none)."""

    tid: int
    sync: bool
    tl0picidx: int | None


@dataclass(frozen=True)
class Vp8Descriptor:
    """The fields of a VP8 RTP payload descriptor (RFC 7741 4.2) and its length in bytes."""

    start: bool
    partition: int
    picture_id: int | None
    long_picture_id: bool
    tl0picidx: int | None
    tid: int | None
    sync: bool
    keyidx: int | None
    size: int


def parse_descriptor(payload: bytes) -> Vp8Descriptor | None:
    """The descriptor at the start of a VP8 RTP payload, or None if it is truncated."""
    n = len(payload)
    if n < 1:
        return None
    first = payload[0]
    pos = 1
    picture_id: int | None = None
    long_id = False
    tl0: int | None = None
    tid: int | None = None
    sync = False
    keyidx: int | None = None
    if first & 0x80:  # X: an extension byte follows
        if n < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits (M)
            if n < pos + 1:
                return None
            long_id = bool(payload[pos] & 0x80)
            if long_id:
                if n < pos + 2:
                    return None
                picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                pos += 2
            else:
                picture_id = payload[pos] & 0x7F
                pos += 1
        if ext & 0x40:  # L: TL0PICIDX
            if n < pos + 1:
                return None
            tl0 = payload[pos]
            pos += 1
        if ext & 0x30:  # T or K: one byte TID(2) Y(1) KEYIDX(5)
            if n < pos + 1:
                return None
            byte = payload[pos]
            if ext & 0x20:
                tid = byte >> 6
                sync = bool(byte & 0x20)
            if ext & 0x10:
                keyidx = byte & 0x1F
            pos += 1
    return Vp8Descriptor(
        start=bool(first & 0x10),
        partition=first & 0x07,
        picture_id=picture_id,
        long_picture_id=long_id,
        tl0picidx=tl0,
        tid=tid,
        sync=sync,
        keyidx=keyidx,
        size=pos,
    )


def frame_layer(payload: bytes) -> FrameLayer | None:
    """The temporal layer of the VP8 frame whose (first) RTP payload is ``payload``; None when
    it has no TID (a stream without temporal layers) or is no VP8 descriptor."""
    # Once per frame on ingest: the fields read in place (parse_descriptor's layout).
    n = len(payload)
    if n < 3 or not payload[0] & 0x80:
        return None
    ext = payload[1]
    if not ext & 0x20:
        return None  # no T: no temporal layers (most streams)
    pos = 2
    if ext & 0x80:
        pos += 2 if payload[2] & 0x80 else 1
    tl0: int | None = None
    if ext & 0x40:
        if n <= pos:
            return None
        tl0 = payload[pos]
        pos += 1
    if n <= pos:
        return None
    byte = payload[pos]
    return FrameLayer(byte >> 6, bool(byte & 0x20), tl0)


def rewrite_descriptor(payload: bytes, picture_id_delta: int, tl0picidx_delta: int) -> bytes:
    """``payload`` with its picture id and TL0PICIDX (those it has) moved by the deltas,
    modulo their widths; everything else, the descriptor's layout included, unchanged."""
    descriptor = parse_descriptor(payload)
    if descriptor is None:
        return payload
    out = bytearray(payload[: descriptor.size])
    pos = 2
    if descriptor.picture_id is not None:
        if descriptor.long_picture_id:
            value = (descriptor.picture_id + picture_id_delta) & _PICTURE_ID_MASK_15
            out[pos], out[pos + 1] = 0x80 | (value >> 8), value & 0xFF
            pos += 2
        else:
            out[pos] = (descriptor.picture_id + picture_id_delta) & _PICTURE_ID_MASK_7
            pos += 1
    if descriptor.tl0picidx is not None:
        out[pos] = (descriptor.tl0picidx + tl0picidx_delta) & 0xFF
    return bytes(out) + payload[descriptor.size :]


def _layer_fields(descriptor: Vp8Descriptor, layer: FrameLayer) -> bytes:
    """The descriptor bytes after the first one, with ``layer`` written in: its extension
    byte (I as it was, L if the layer has a TL0PICIDX, T, K as it was), the picture id as it
    was, the TL0PICIDX, and the byte of TID, Y and KEYIDX."""
    ext = 0x20  # T
    out = bytearray(1)
    if descriptor.picture_id is not None:
        ext |= 0x80
        if descriptor.long_picture_id:
            out += (0x8000 | descriptor.picture_id).to_bytes(2, "big")
        else:
            out.append(descriptor.picture_id)
    if layer.tl0picidx is not None:
        ext |= 0x40
        out.append(layer.tl0picidx & 0xFF)
    if descriptor.keyidx is not None:
        ext |= 0x10
    out.append((layer.tid & 0x03) << 6 | (0x20 if layer.sync else 0) | (descriptor.keyidx or 0))
    out[0] = ext
    return bytes(out)


def with_frame_layer(payloads: list[bytes], layer: FrameLayer) -> list[bytes]:
    """A frame's payloads with its temporal layer written into every payload descriptor (RFC
    7741 4.2: the X bit, T with TID and Y, and L with the TL0PICIDX where the layer has one;
    the picture id, KEYIDX and the rest unchanged), so that :func:`frame_layer` reads it back
    on the next node's ingest. aiortc's packetizer, which re-packetizes forwarded frames,
    writes a picture id and no layer: a node-to-node leg would carry none without this."""
    first = parse_descriptor(payloads[0]) if payloads else None
    if first is None:
        return payloads
    size = first.size
    fields = _layer_fields(first, layer)
    head = payloads[0][1:size]
    out = []
    for payload in payloads:
        if payload[1:size] == head and len(payload) >= size:
            # The same descriptor as the first payload's but for S and PID (aiortc's packets
            # of one frame): its fields written once per frame.
            out.append(bytes((payload[0] | 0x80,)) + fields + payload[size:])
            continue
        descriptor = parse_descriptor(payload)
        if descriptor is None:
            out.append(payload)
            continue
        out.append(
            bytes((payload[0] | 0x80,))
            + _layer_fields(descriptor, layer)
            + payload[descriptor.size :]
        )
    return out


class TemporalFilter:
    """Which frames of a VP8 stream with temporal layers one viewer gets.

    :attr:`target` is the highest layer wanted (:data:`PAUSED`: none), :attr:`current` the
    highest forwarded now. Call :meth:`admit` for every frame in order; forward the frames it
    admits through :meth:`rewrite`.
    """

    def __init__(self, target: int = MAX_TEMPORAL_LAYERS - 1) -> None:
        self.target = target
        self.current = target
        # Added to the picture id (and TL0PICIDX) of every frame forwarded: minus the frames
        # (TL0 frames) left out so far.
        self.picture_id_delta = 0
        self.tl0picidx_delta = 0
        self.dropped = 0

    def retarget(self, target: int) -> None:
        """Want layers up to ``target`` from now: down at once, up at a frame that allows it."""
        self.target = target
        if target < self.current:
            self.current = target

    def admit(self, layer: FrameLayer | None, keyframe: bool) -> bool:
        """Whether to forward the next frame (``layer``: its temporal layer, None if it has
        none: a stream without temporal layers is forwarded whole unless paused)."""
        if self.target == PAUSED:
            self._leave_out(layer)
            return False
        if keyframe:
            self.current = self.target  # every reference is refreshed
            return True
        if layer is None:
            if self.current == PAUSED:  # back from a pause: a keyframe first
                self._leave_out(layer)
                return False
            return True
        tid = layer.tid
        if self.current != PAUSED and tid == self.current + 1 and tid <= self.target and layer.sync:
            self.current = tid  # a layer sync frame: it and the layer's next frames decode
        if tid <= self.current:
            return True
        self._leave_out(layer)
        return False

    def _leave_out(self, layer: FrameLayer | None) -> None:
        self.dropped += 1
        self.picture_id_delta -= 1
        if layer is not None and layer.tid == 0 and layer.tl0picidx is not None:
            self.tl0picidx_delta -= 1

    def rewrite(self, payloads: list[bytes]) -> list[bytes]:
        """An admitted frame's payloads as the viewer gets them (the same list while nothing
        was left out)."""
        if not self.picture_id_delta and not self.tl0picidx_delta:
            return payloads
        first = payloads[0] if payloads else b""
        if len(first) >= 4 and first[0] & 0x80 and first[1] == 0x80 and first[2] & 0x80:
            # aiortc's packetizer (what the forwarding path sends): X, I, a 15-bit picture id
            # and nothing else, the same id in every payload of the frame.
            value = ((first[2] & 0x7F) << 8 | first[3]) + self.picture_id_delta
            field = (0x8000 | (value & _PICTURE_ID_MASK_15)).to_bytes(2, "big")
            return [p[:2] + field + p[4:] for p in payloads]
        return [
            rewrite_descriptor(p, self.picture_id_delta, self.tl0picidx_delta) for p in payloads
        ]


def screen_target(selected: int, wanted: int, reason: str) -> int:
    """The temporal layers a screen viewer is moved to when its selector (``media.layers``)
    chose ``selected`` while ``wanted`` was wanted, for ``reason`` (the selector's): never from
    above a quarter of the frame rate straight to a pause, and from the base layer only when
    the link shows it cannot carry it (loss, a growing queue, a saturated link), not for a
    falling estimate alone (a receiver's estimate on overuse is 0.85x what it receives, always
    below the layer it receives, and the queue the higher layers left makes it fall).

    A pause is undone only by a keyframe, which for a screen is a full-resolution picture (tens
    of kilobytes in one burst, what a short link can least carry), while a quarter of the frames
    costs about a third of the full rate: the base layer is held first."""
    if selected == PAUSED and (wanted > 0 or reason == "estimate"):
        return 0
    return selected


def frame_rate_step(layer: int, layers: int = MAX_TEMPORAL_LAYERS) -> str:
    """What a viewer forwarded temporal layers up to ``layer`` (of ``layers``) gets of the
    frame rate: ``"1"``, ``"1/2"``, ``"1/4"``, or ``"paused"``."""
    if layer < 0:
        return "paused"
    below = max(layers - 1 - layer, 0)
    return "1" if below == 0 else f"1/{1 << below}"


class _Meter:
    __slots__ = ("at", "bytes", "frame_at", "frames", "rate", "seen")

    def __init__(self) -> None:
        self.bytes = 0
        self.frames = 0
        self.seen = 0  # frames counted at the last sample
        self.at: float | None = None
        self.frame_at = -math.inf
        self.rate: float | None = None


class TemporalRates:
    """A track's measured rate of each temporal layer, as the layers a viewer can be given:
    the rate of TIDs 0..k for each k. Feed every frame with :meth:`add`."""

    def __init__(self) -> None:
        self._meters = [_Meter() for _ in range(MAX_TEMPORAL_LAYERS)]
        self.highest = -1  # the highest TID seen
        self._sampled_at = -math.inf
        self._rates: list[float] | None = None

    def add(self, tid: int, size: int) -> None:
        if 0 <= tid < MAX_TEMPORAL_LAYERS:
            meter = self._meters[tid]
            meter.bytes += size
            meter.frames += 1
            if tid > self.highest:
                self.highest = tid

    def rates(self, now: float) -> list[float] | None:
        """Bit/s of each step (lowest first, cumulative; ``inf``: a layer not sent now), None
        until measured or while the track has a single temporal layer."""
        if self.highest < 1:
            return None
        if now - self._sampled_at < RATE_WINDOW_S / 2:
            return self._rates
        self._sampled_at = now
        rates: list[float] = []
        total = 0.0
        for meter in self._meters:
            if meter.frames != meter.seen:
                meter.seen = meter.frames
                meter.frame_at = now
            if meter.at is None:
                meter.at = now
                meter.bytes = 0
            elif now - meter.at >= RATE_WINDOW_S:
                rate = meter.bytes * 8 / (now - meter.at)
                meter.rate = (
                    rate
                    if meter.rate is None
                    else _RATE_SMOOTHING * rate + (1 - _RATE_SMOOTHING) * meter.rate
                )
                meter.at, meter.bytes = now, 0
            if now - meter.frame_at > LAYER_IDLE_S or math.isinf(total):
                total = math.inf
            elif meter.rate is None:
                self._rates = None
                return None
            else:
                total += meter.rate
            rates.append(total)
        self._rates = rates if not math.isinf(rates[0]) else None
        return self._rates
