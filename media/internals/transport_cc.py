"""Transport-wide congestion control on a publish leg: negotiated, and its feedback sent.

aiortc (1.16.0) knows the transport-wide sequence number header extension (its
``HeaderExtensionsMap`` parses it) but neither offers it nor sends feedback, so a browser
publisher falls back to REMB, which aiortc's receive-side estimator caps at 1.5x what arrives:
Chromium then climbs from 300 kbit/s by about 8 % a second (docs/media.md). Here:

* :func:`negotiate_transport_cc`, after ``setRemoteDescription`` of an offer and before the
  answer: every transceiver whose m-line offers the extension gets it in its private
  ``_headerExtensions`` (with the offer's id), and its video codecs the ``transport-cc``
  feedback in their ``rtcpFeedback`` when the offer has it; the answer then carries both and
  the receivers parse the sequence numbers.
* :func:`install_transport_cc` wraps the DTLS transport's RTP routing (an instance attribute)
  to record each packet's sequence number and arrival in the connection's one
  :class:`TransportCcSender`, and takes away the receiver's REMB
  estimator (the private ``__remote_bitrate_estimator``): its REMB would cap the browser's
  estimate at what arrives, the very thing transport-cc lets the browser probe past.
* :class:`TransportCcSender` sends the feedback (:mod:`media.twcc`) every ``INTERVAL_S``
  through the DTLS transport's ``_send_rtp`` (SRTCP), as libwebrtc's receiver does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtcpFeedback
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription

from media.twcc import TransportFeedback

logger = logging.getLogger(__name__)

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
INTERVAL_S = 0.05  # libwebrtc's receiver: every 50-100 ms (its default 100 ms, min 50 ms)
MAX_STAMPS = 2048  # arrival stamps not yet routed (a datagram SRTP or parsing dropped stays)
_RECEIVER_BITRATE_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
_RECEIVER_RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
_TAPPED = "_homeroom_transport_cc"  # set on a transport's router once its packets are recorded


def negotiate_transport_cc(
    pc: RTCPeerConnection, offer: SessionDescription
) -> list[RTCRtpReceiver]:
    """Accept transport-cc for every m-line of ``offer`` that offers it; their receivers.

    Call after ``setRemoteDescription(offer)`` (which recomputes each transceiver's extensions
    and codecs from aiortc's own lists) and before ``createAnswer``, on every offer.
    """
    transceivers = {t.mid: t for t in pc.getTransceivers()}
    accepted: list[RTCRtpReceiver] = []
    for media in offer.media:
        transceiver = transceivers.get(media.rtp.muxId)
        extension = next((x for x in media.rtp.headerExtensions if x.uri == TRANSPORT_CC_URI), None)
        if transceiver is None or extension is None:
            continue
        extensions = transceiver._headerExtensions
        if all(x.uri != TRANSPORT_CC_URI for x in extensions):
            extensions.append(extension)
        offered = {
            c.payloadType
            for c in media.rtp.codecs
            if RTCRtcpFeedback("transport-cc") in c.rtcpFeedback
        }
        for codec in transceiver._codecs:
            if (
                codec.payloadType in offered
                and RTCRtcpFeedback("transport-cc") not in codec.rtcpFeedback
            ):
                codec.rtcpFeedback.append(RTCRtcpFeedback("transport-cc"))
        accepted.append(transceiver.receiver)
    return accepted


class TransportCcSender:
    """The transport-cc feedback of one peer connection (all its receivers share it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._feedback: TransportFeedback | None = None
        self._receiver: RTCRtpReceiver | None = None
        self._task: asyncio.Task[None] | None = None
        # (RTP sequence number, SSRC) as bytes -> when the datagram was read from the socket.
        self._stamps: dict[tuple[bytes, bytes], float] = {}
        self.sent = 0  # feedback packets sent
        self.stamped = 0  # packets reported with their socket arrival time

    def stamp(self, data: bytes) -> None:
        """Note when an RTP datagram (still SRTP: its header is clear) left the socket."""
        if len(data) < 12 or not 128 <= data[0] < 192 or 192 <= data[1] <= 208:
            return  # not RTP (DTLS, STUN, RTCP)
        self._stamps[(data[2:4], data[8:12])] = self._clock()
        if len(self._stamps) > MAX_STAMPS:
            del self._stamps[next(iter(self._stamps))]  # the oldest: dropped before routing

    def record(self, receiver: RTCRtpReceiver, packet: RtpPacket) -> None:
        key = (packet.sequence_number.to_bytes(2, "big"), packet.ssrc.to_bytes(4, "big"))
        arrived = self._stamps.pop(key, None)
        seq = packet.extensions.transport_sequence_number
        if seq is None:
            return
        if self._feedback is None:
            ssrc = getattr(receiver, _RECEIVER_RTCP_SSRC)
            if ssrc is None:
                return
            self._feedback = TransportFeedback(ssrc, packet.ssrc)
            self._receiver = receiver
            self._task = asyncio.ensure_future(self._run())
        if arrived is None:
            arrived = self._clock()
        else:
            self.stamped += 1
        self._feedback.record(seq, int(arrived * 1_000_000))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_S)
            if self._feedback is None or self._receiver is None:
                continue
            transport = self._receiver.transport
            for packet in self._feedback.build():
                try:
                    await transport._send_rtp(packet)
                except ConnectionError:
                    return  # the connection closed
                self.sent += 1

    def counts(self) -> dict[str, int]:
        """Feedback packets sent, packets with their socket arrival time, packets reported
        received and not received."""
        fb = self._feedback
        return {
            "feedback": self.sent,
            "stamped": self.stamped,
            "received": fb.received if fb else 0,
            "lost": fb.lost if fb else 0,
        }

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


def install_transport_cc(receiver: RTCRtpReceiver, sender: TransportCcSender) -> None:
    """Record every RTP packet that reaches ``receiver``'s DTLS transport in ``sender``, and
    stop ``receiver``'s REMB.

    Recorded where the transport routes each packet (its private ``_rtp_router.route_rtp``,
    wrapped on the instance), not in the receivers: aiortc routes a packet whose SSRC it has
    not seen by payload type only, so with several video m-lines (a camera in layers) the RTX
    packets and Chromium's padding probes reach no receiver; reported lost, they would make
    the browser's estimator back off. The arrival time is taken earlier, when the ICE
    connection (aioice, private ``RTCIceTransport._connection``) gets the datagram from the
    socket (its ``data_received``, wrapped on the instance): by the time a packet is routed, the
    loop has also decrypted and forwarded the packets before it (a keyframe to every viewer),
    which the browser's delay-based estimator would take for a queue on the link.
    """
    setattr(receiver, _RECEIVER_BITRATE_ESTIMATOR, None)
    connection = receiver.transport.transport._connection
    if getattr(connection, _TAPPED, None) is not sender:
        data_received: Callable[[bytes, int], None] = connection.data_received

        def stamped(data: bytes, component: int) -> None:
            sender.stamp(data)
            data_received(data, component)

        setattr(connection, "data_received", stamped)  # noqa: B010 (an instance's)
        setattr(connection, _TAPPED, sender)
    router = receiver.transport._rtp_router
    if getattr(router, _TAPPED, None) is sender:
        return
    route: Callable[[RtpPacket], Any] = router.route_rtp

    def route_rtp(packet: RtpPacket) -> Any:
        sender.record(receiver, packet)
        return route(packet)

    setattr(router, "route_rtp", route_rtp)  # noqa: B010 (an instance's)
    setattr(router, _TAPPED, sender)
