"""Padding probes: padding-only RTP packets on a forwarding sender's RTX stream, at a rate, and
what the viewer's receiver reports say of them (``media.probe`` judges).

Where the padding goes matters (aiortc 1.16.0, pinned in ``media.internals.checks``): on the
media SSRC every padding packet takes a sequence number of the video, so aiortc's receiver puts
it in its jitter buffer and NACKs it when lost, and a lost one holds the next frame until 128
packets later; Chromium's too counts it in the video's sequence. On the RTX stream (RFC 4588
payload type, the RTX SSRC of the ``ssrc-group:FID``) a padding-only packet has no original
sequence number: aiortc's ``RTCRtpReceiver._handle_rtp_packet`` feeds it to its bandwidth
estimator (abs-send-time, payload plus padding size) and its RTCP statistics (a report block of
its own) and then drops it (``len(packet.payload) < 2``) before the NACK generator and the
jitter buffer; libwebrtc's ``RtxReceiveStream`` likewise counts it and drops it. This is how
libwebrtc itself probes. So the probe is padding on the RTX stream, never on the media SSRC.

The sender maps each padding packet's RTX sequence number to when it sent it; a report block
for the RTX SSRC names the highest one received, so the report says how long that packet
waited on the link (the report crosses the viewer's uplink, not the shaped downlink, in a
moment).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from media.internals.srtp_send import _RTP_HEAD, _ntp_now
from media.probe import PROBE_MAX_S, ProbeReport

logger = logging.getLogger(__name__)

# Padding bytes per packet: RFC 3550's padding length is one byte (at most 255).
PADDING_BYTES = 255
_PADDING = bytes(PADDING_BYTES - 1) + bytes([PADDING_BYTES])
# SRTP tag (10) and UDP/IPv4 headers (28) around a packet's RTP bytes.
_WIRE_OVERHEAD = 38
# Padding is sent in bursts this far apart: a packet interval of the probe.
TICK_S = 0.02


class PaddingProbe:
    """One probe of one forwarding sender: padding on its RTX stream at ``rate`` bit/s (on the
    wire) until :meth:`stop` or ``PROBE_MAX_S`` (and a little), reports to ``on_report``."""

    def __init__(
        self,
        sender: Any,
        rate: float,
        on_report: Callable[[ProbeReport], None],
        rtx_mark: tuple[int, int] | None,
    ) -> None:
        egress = sender._egress
        assert egress is not None and egress.rtx_payload_type is not None
        self._sender = sender
        self._egress = egress
        self.rate = rate
        self._on_report = on_report
        # The RTX stream's (extended highest sequence number, cumulative lost) in the last
        # report before the probe (None: not reported yet): the probe's own loss from it.
        self._mark = rtx_mark
        # Sequence number -> (loop time sent, packets of the probe sent up to it).
        self._sent: dict[int, tuple[float, int]] = {}
        self._count = 0
        self.started: float | None = None
        self.bytes_sent = 0
        self.reports = 0  # report blocks of the RTX stream since the probe started
        self._task: asyncio.Task[None] | None = asyncio.ensure_future(self._run())

    def unreported(self, now: float) -> bool:
        """Whether the viewer reported nothing on the RTX stream for as long as a probe may
        last (a receiver that keeps no statistics of it: it cannot be probed this way)."""
        return self.reports == 0 and self.started is not None and now - self.started >= PROBE_MAX_S

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started = self.started = loop.time()
        last, credit = started, 0.0
        try:
            while loop.time() - started < PROBE_MAX_S + 0.5:
                now = loop.time()
                credit = min(credit + self.rate / 8 * (now - last), self.rate / 8 * 0.1)
                last = now
                while credit > 0:
                    credit -= await self._send_one(now)
                await asyncio.sleep(TICK_S)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # pragma: no cover - never let a probe break the sender
            logger.exception("padding probe failed")

    async def _send_one(self, now: float) -> int:
        """Send one padding packet on the RTX stream; returns its size on the wire."""
        sender, egress = self._sender, self._egress
        sequence_number = egress.rtx_sequence_number
        egress.rtx_sequence_number = (sequence_number + 1) & 0xFFFF
        first_byte, tail = egress.frame_header(
            sender._timestamp, sender._rtx_ssrc, (_ntp_now() >> 14) & 0x00FFFFFF, None
        )
        head = _RTP_HEAD.pack(first_byte | 0x20, egress.rtx_payload_type, sequence_number)
        data = head + tail + _PADDING
        await sender.transport._send_rtp(data)  # SRTP as a retransmission's
        self._count += 1
        self._sent[sequence_number] = (now, self._count)
        size = len(data) + _WIRE_OVERHEAD
        self.bytes_sent += size
        return size

    def take_report(self, highest: int, lost: int, now: float) -> None:
        """A report block of the RTX stream: extended highest sequence number and
        cumulative lost."""
        self.reports += 1
        entry = self._sent.get(highest & 0xFFFF)
        if entry is None or self.started is None:
            return  # not a probe packet (a retransmission, or one from before the probe)
        sent_at, count = entry
        probe_lost = None
        if self._mark is not None:
            received = (highest - self._mark[0]) - (lost - self._mark[1])
            probe_lost = max(count - received, 0)
        self._on_report(ProbeReport(now - self.started, now - sent_at, count, probe_lost))
