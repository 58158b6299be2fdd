"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

A publisher that negotiated transport-cc numbers every RTP packet of its connection (all its
m-lines, RTX included) in one sequence; the receiver reports when each arrived, and the
publisher's own estimator (libwebrtc's GoogCC: delay-based with probing, plus loss) decides
what it can send. This is what Janus, LiveKit and mediasoup send to a browser publisher; with
REMB only, Chromium's estimate starts at 300 kbit/s and may climb only about 8 % a second, so a
camera in three layers (1.2 Mbit/s in all) took tens of seconds to reach its layers' rates.

:class:`TransportFeedback` is sans I/O: ``record()`` each packet's transport-wide sequence number
and arrival time (µs, any monotonic clock), ``build()`` the RTCP packets (RTPFB, FMT 15) that
report everything recorded since the last call. Packets that arrive after their sequence number
was reported are left out (the sender counts them lost, as it would from a late report).
"""

from __future__ import annotations

import struct

RTPFB = 205
FMT_TRANSPORT_CC = 15
# Receive deltas are in 250 µs ticks; the reference time in 64 ms units (24 bits, wraps).
TICK_US = 250
REFERENCE_US = 64_000
# Symbols of a two-bit status vector chunk.
NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA = 0, 1, 2
SYMBOLS_PER_CHUNK = 7
# At most this many packets pending (a burst between two reports): the oldest are dropped
# beyond it, so a flood costs bounded memory; and at most this many statuses per RTCP packet.
MAX_PENDING = 4096
MAX_STATUSES = 1024


class TransportFeedback:
    """The transport-cc feedback a receiver owes one sending connection."""

    def __init__(self, sender_ssrc: int, media_ssrc: int = 0) -> None:
        self.sender_ssrc = sender_ssrc
        self.media_ssrc = media_ssrc
        self._count = 0  # feedback packet count, 8 bits
        self._pending: dict[int, int] = {}  # unwrapped sequence number -> arrival (µs)
        self._last_seq: int | None = None  # the last unwrapped sequence number seen
        self._reported: int | None = None  # the highest sequence number reported
        self.received = 0  # packets reported received
        self.lost = 0  # sequence numbers reported not received

    def record(self, sequence_number: int, arrival_us: int) -> None:
        """A packet with this 16-bit transport-wide sequence number arrived at ``arrival_us``."""
        seq = self._unwrap(sequence_number)
        if self._reported is not None and seq <= self._reported:
            return
        self._pending[seq] = arrival_us
        if len(self._pending) > MAX_PENDING:
            del self._pending[min(self._pending)]

    def _unwrap(self, sequence_number: int) -> int:
        if self._last_seq is None:
            self._last_seq = sequence_number
            return sequence_number
        delta = (sequence_number - self._last_seq) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        seq = self._last_seq + delta
        if delta > 0:
            self._last_seq = seq
        return seq

    def build(self) -> list[bytes]:
        """RTCP transport-cc packets for every packet recorded since the last call."""
        out: list[bytes] = []
        while self._pending:
            out.append(self._build_one())
        return out

    def _build_one(self) -> bytes:
        seqs = sorted(self._pending)
        base = seqs[0]
        reference = self._pending[base] // REFERENCE_US
        if self._reported is not None and 0 < base - self._reported - 1 < MAX_STATUSES // 2:
            # Numbers between the last report and this one never came: say so (lost).
            base = self._reported + 1
        previous_ticks = reference * (REFERENCE_US // TICK_US)
        statuses: list[int] = []
        deltas = bytearray()
        last = base - 1
        for seq in seqs:
            if seq - base >= MAX_STATUSES:
                break
            ticks = round(self._pending[seq] / TICK_US)
            delta = ticks - previous_ticks
            if not -0x8000 <= delta <= 0x7FFF:
                break  # left for the next packet, which has a reference time of its own
            statuses.extend([NOT_RECEIVED] * (seq - last - 1))
            self.lost += seq - last - 1
            self.received += 1
            if 0 <= delta <= 0xFF:
                statuses.append(SMALL_DELTA)
                deltas.append(delta)
            else:
                statuses.append(LARGE_DELTA)
                deltas += struct.pack("!h", delta)
            previous_ticks = ticks
            last = seq
        for seq in range(base, last + 1):
            self._pending.pop(seq, None)
        self._reported = last
        chunks = bytearray()
        for i in range(0, len(statuses), SYMBOLS_PER_CHUNK):
            chunk = 0xC000  # status vector chunk, two-bit symbols
            for j, symbol in enumerate(statuses[i : i + SYMBOLS_PER_CHUNK]):
                chunk |= symbol << (12 - 2 * j)
            chunks += struct.pack("!H", chunk)
        body = (
            struct.pack(
                "!IIHHI",
                self.sender_ssrc,
                self.media_ssrc,
                base & 0xFFFF,
                len(statuses),
                ((reference & 0xFFFFFF) << 8) | self._count,
            )
            + chunks
            + deltas
        )
        self._count = (self._count + 1) & 0xFF
        padding = -len(body) % 4
        if padding:
            body += bytes(padding - 1) + bytes([padding])
        header = struct.pack(
            "!BBH",
            0x80 | (0x20 if padding else 0) | FMT_TRANSPORT_CC,
            RTPFB,
            (len(body) + 4) // 4 - 1,
        )
        return header + body
