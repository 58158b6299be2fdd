"""The aiortc (and aioice, pylibsrtp) code that media/internals/ reproduces, checked as source.

``checks.check_internals`` (at start-up) works from signatures and compiled code and needs no
source; this adds what only the source shows: the statements aiortc's own RTP loop, RTCP loop,
SRTP and ICE send path execute, which :class:`~media.internals.egress.SharedPayloadSender` and
``srtp_send`` must do the same way. The test suite runs it (tests/media/test_aiortc_internals.py);
an install without sources reports it as not checked.
"""

from __future__ import annotations

import inspect
from typing import Any

import aioice.ice
import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCDtlsTransport, RTCIceTransport, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import NackGenerator

from media.internals import egress, tcp_mux, udp_mux


def source_problems() -> list[str]:
    """What changed in the code reproduced here; ``["... no source"]`` without sources."""
    if not _source(RTCRtpSender._run_rtp):
        return ["aiortc is installed without sources: its code was not checked"]
    problems: list[str] = []
    receiver_init = _source(RTCRtpReceiver.__init__)
    for name in ("__decoder_queue", "__decoder_thread", "__rtx_ssrc", "__started"):
        if f"self.{name}" not in receiver_init:
            problems.append(f"RTCRtpReceiver.__init__ no longer sets self.{name}")
    receive_src = _source(RTCRtpReceiver.receive)
    if "self.__decoder_queue" not in receive_src or "threading.Thread" not in receive_src:
        problems.append("RTCRtpReceiver.receive() no longer starts a thread on __decoder_queue")
    handle_src = _source(RTCRtpReceiver._handle_rtp_packet)
    if "self.__decoder_queue.put((codec, encoded_frame))" not in handle_src:
        problems.append("RTCRtpReceiver._handle_rtp_packet() no longer puts (codec, frame)")
    if "self.__decoder_queue.put(None)" not in _source(RTCRtpReceiver):
        problems.append("RTCRtpReceiver no longer stops its decoder with put(None)")
    _jitter(problems)
    _nack(problems)
    _sender(problems)
    _send_path(problems)
    _udp_mux(problems)
    _tcp_mux(problems)
    return problems


def _jitter(problems: list[str]) -> None:
    """What ``jitter.ReleasingJitterBuffer`` replaces in the receiver and relies on in aiortc's
    jitter buffer: one frame per ``add()``, mapped and put by the receiver, and the buffer's
    slots and origin as ``_remove_frame`` reads them."""
    _require(
        problems,
        RTCRtpReceiver.__init__,
        "RTCRtpReceiver.__init__",
        "self.__jitter_buffer = JitterBuffer(capacity=16, prefetch=4)",
        "self.__jitter_buffer = JitterBuffer(capacity=512, is_video=True)",
        "self.__timestamp_mapper = TimestampMapper()",
    )
    _require(
        problems,
        RTCRtpReceiver._handle_rtp_packet,
        "RTCRtpReceiver._handle_rtp_packet",
        "packet._data = depayload(codec, packet.payload)",
        "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)",
        "encoded_frame.timestamp = self.__timestamp_mapper.map(",
    )
    _require(
        problems,
        JitterBuffer.add,
        "JitterBuffer.add",
        "self._packets[pos] = packet",
        "return pli_flag, self._remove_frame(packet.sequence_number)",
    )
    _require(
        problems,
        JitterBuffer.remove,
        "JitterBuffer.remove",
        "self._packets[pos] = None",
        "self._origin = uint16_add(self._origin, 1)",
    )
    _require(
        problems,
        JitterBuffer._remove_frame,
        "JitterBuffer._remove_frame",
        "pos = (self._origin + count) % self._capacity",
        'data=b"".join([x._data for x in packets])',
    )


def _nack(problems: list[str]) -> None:
    """What ``nack.RetryingNackGenerator`` relies on: the receiver NACKs every missing packet
    whenever its generator's ``add()`` is True, and the generator's ``missing`` set is what
    it lists."""
    _require(
        problems,
        RTCRtpReceiver.__init__,
        "RTCRtpReceiver.__init__",
        "self.__nack_generator = NackGenerator()",
    )
    _require(
        problems,
        RTCRtpReceiver._handle_rtp_packet,
        "RTCRtpReceiver._handle_rtp_packet",
        "if self.__nack_generator is not None and self.__nack_generator.add(packet):",
        "packet.ssrc, sorted(self.__nack_generator.missing)",
    )
    _require(problems, NackGenerator.add, "NackGenerator.add", "self.missing.add(seq)")


def _udp_mux(problems: list[str]) -> None:
    """What ``udp_mux`` reproduces of aioice's host candidate gathering and relies on in its
    ICE connection and protocol."""
    _require(
        problems,
        udp_mux._ORIGINAL_GET_COMPONENT_CANDIDATES,
        "aioice Connection.get_component_candidates",
        "lambda: StunProtocol(self), local_addr=(address, 0)",
        "protocol.local_candidate = Candidate(",
        'candidate_foundation("host", "udp", candidate_address[0])',
        'priority=candidate_priority(component, "host")',
        "self._protocols += host_protocols",
    )
    _require(
        problems,
        aioice.ice.Connection.gather_candidates,
        "aioice Connection.gather_candidates",
        "self.get_component_candidates(component=component, addresses=addresses)",
    )
    _require(
        problems,
        StunProtocol.datagram_received,
        "aioice StunProtocol.datagram_received",
        "self.receiver.request_received(message, addr, self)",
    )
    _require(problems, StunProtocol.close, "aioice StunProtocol.close", "self.transport.close()")


def _tcp_mux(problems: list[str]) -> None:
    """What ``tcp_mux`` relies on in aioice: a nominating check says so in USE-CANDIDATE,
    checks and consent go through the pair's protocol's ``request`` (which it overrides), a
    check's source address is learned as a peer-reflexive candidate, a local candidate
    pairs only with remote candidates of its own transport, and what a closed TCP connection
    under the nominated pair changes (below)."""
    _require(
        problems,
        aioice.ice.Connection.build_request,
        "aioice Connection.build_request",
        'request.attributes["USE-CANDIDATE"] = None',
    )
    _require(
        problems,
        aioice.ice.Connection.check_start,
        "aioice Connection.check_start",
        "await pair.protocol.request(",
        "self.check_state(pair, CandidatePair.State.FAILED)",
    )
    _require(
        problems,
        aioice.ice.Connection.query_consent,
        "aioice Connection.query_consent",
        "await pair.protocol.request(",
    )
    _require(
        problems,
        StunProtocol.request,
        "aioice StunProtocol.request",
        "self.transactions[request.transaction_id] = transaction",
    )
    _require(
        problems,
        StunProtocol.send_stun,
        "aioice StunProtocol.send_stun",
        "self.transport.sendto(bytes(message), addr)",
    )
    _require(
        problems,
        aioice.ice.Connection.check_incoming,
        "aioice Connection.check_incoming",
        'type="prflx"',
        "pair = CandidatePair(protocol, remote_candidate)",
    )
    _require(
        problems,
        tcp_mux.Candidate.can_pair_with,
        "aioice Candidate.can_pair_with",
        "self.transport.lower() == other.transport.lower()",
    )
    # A closed TCP connection under the nominated pair (``TcpStunProtocol.stream_lost``): the
    # check list is sorted highest priority first, a succeeded pair's state says so, the last
    # nominated pair carries the data, and closing the connection makes aiortc's transport
    # "failed".
    _require(
        problems,
        aioice.ice.sort_candidate_pairs,
        "aioice sort_candidate_pairs",
        "return -candidate_pair_priority(",
        "pairs.sort(key=pair_priority)",
    )
    _require(
        problems,
        aioice.ice.Connection.check_complete,
        "aioice Connection.check_complete",
        "if pair.state == CandidatePair.State.SUCCEEDED:",
        "self._nominated[pair.component] = pair",
    )
    _require(
        problems,
        aioice.ice.Connection.close,
        "aioice Connection.close",
        "self._nominated.clear()",
        "self._emit_event(ConnectionClosed())",
    )
    _require(
        problems,
        RTCIceTransport._monitor,
        "aiortc RTCIceTransport._monitor",
        "if isinstance(event, ConnectionClosed):",
        'self.__setState("failed")',
    )


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _require(problems: list[str], obj: Any, what: str, *fragments: str) -> None:
    """``obj``'s source must contain every fragment (each is code this module relies on)."""
    source = _source(obj)
    for fragment in fragments:
        if fragment not in source:
            problems.append(f"{what} no longer contains {fragment!r}")


def _sender(problems: list[str]) -> None:
    """RTCRtpSender: what SharedPayloadSender overrides, calls, reads and keeps in step."""
    _require(
        problems,
        RTCRtpSender.__init__,
        "RTCRtpSender.__init__",
        "self._stream_id =",
        "self._ssrc = random32()",
        "self._rtx_ssrc = random32()",
        "self._enabled = True",
        "self.__started = False",
        "self.__rtp_started = asyncio.Event()",
        "self.__rtp_exited = asyncio.Event()",
        *(f"self.{name.removeprefix('_RTCRtpSender')} = 0" for name in egress._SENDER_SR_COUNTERS),
    )
    # send() starts our _run_rtp with the first codec, once; stop() waits for its events.
    _require(
        problems,
        RTCRtpSender.send,
        "RTCRtpSender.send",
        "if not self.__started:",
        "self._run_rtp(parameters.codecs[0])",
        "self.__rtp_header_extensions_map.configure(parameters)",
        "self.__mid = parameters.muxId",
        'codec.parameters["apt"] == parameters.codecs[0].payloadType',
        "self.__started = True",
    )
    _require(
        problems,
        RTCRtpSender.stop,
        "RTCRtpSender.stop",
        "self.__rtp_started.wait()",
        "self.__rtp_exited.wait()",
    )
    # What aiortc's own loop does per packet, and so what ours must do per frame.
    _require(
        problems,
        RTCRtpSender._run_rtp,
        "RTCRtpSender._run_rtp",
        "self.__rtp_started.set()",
        "await self._next_encoded_frame(codec)",
        "uint32_add(timestamp_origin, enc_frame.timestamp)",
        "packet.extensions.abs_send_time = (",
        "clock.current_ntp_time() >> 14",
        "packet.extensions.mid = self.__mid",
        "packet.extensions.audio_level = (False, -enc_frame.audio_level)",
        "packet.marker = (i == len(enc_frame.payloads) - 1) and 1 or 0",
        "packet.serialize(self.__rtp_header_extensions_map)",
        "await self.transport._send_rtp(packet_bytes)",
        "self.__ntp_timestamp = clock.current_ntp_time()",
        "self.__rtp_timestamp = packet.timestamp",
        "self.__octet_count += len(payload)",
        "self.__packet_count += 1",
        "self.__rtp_exited.set()",
    )
    # The RTCP loop reports the counters our loop keeps.
    _require(
        problems,
        RTCRtpSender._run_rtcp,
        "RTCRtpSender._run_rtcp",
        "ntp_timestamp=self.__ntp_timestamp",
        "rtp_timestamp=self.__rtp_timestamp",
        "packet_count=self.__packet_count",
        "octet_count=self.__octet_count",
        # The LSR a receiver report names, as egress's own sender reports set it too.
        "self.__lsr = ((self.__ntp_timestamp) >> 16) & 0xFFFFFFFF",
        "self.__lsr_time = time.time()",
        "await self._send_rtcp(packets)",
    )
    _require(
        problems,
        RTCRtpSender._handle_rtcp_packet,
        "RTCRtpSender._handle_rtcp_packet",
        "self._send_keyframe()",
        "await self._retransmit(seq)",
    )
    _require(
        problems,
        RTCRtpSender._retransmit,
        "RTCRtpSender._retransmit",
        "wrap_rtx(",
        "ssrc=self._rtx_ssrc",
    )


def _send_path(problems: list[str]) -> None:
    """The layers under RTCDtlsTransport._send_rtp that the direct datagram path skips."""
    _require(
        problems,
        RTCDtlsTransport.__init__,
        "RTCDtlsTransport.__init__",
        "self._tx_srtp: Session = None",
        "self.__tx_bytes = 0",
        "self.__tx_packets = 0",
    )
    _require(
        problems,
        RTCDtlsTransport._setup_srtp,
        "RTCDtlsTransport._setup_srtp",
        "self._tx_srtp = Session(tx_policy)",
    )
    _require(
        problems,
        RTCDtlsTransport._send_rtp,
        "RTCDtlsTransport._send_rtp",
        "if self._state != State.CONNECTED:",
        "data = self._tx_srtp.protect(data)",
        "await self.transport._send(data)",
        "self.__tx_bytes += len(data)",
        "self.__tx_packets += 1",
    )
    _require(
        problems,
        RTCDtlsTransport._set_state,
        "RTCDtlsTransport._set_state",
        "self._state = state",
    )
    _require(
        problems,
        RTCIceTransport.__init__,
        "RTCIceTransport.__init__",
        "self._connection = gatherer._connection",
        "self._send = self._connection.send",
    )
    connection = aioice.ice.Connection
    _require(problems, connection.__init__, "aioice Connection.__init__", "self._nominated")
    _require(problems, connection.send, "aioice Connection.send", "await self.sendto(data, 1)")
    _require(
        problems,
        connection.sendto,
        "aioice Connection.sendto",
        "active_pair = self._nominated.get(component)",
        "await active_pair.protocol.send_data(data, active_pair.remote_addr)",
    )
    _require(
        problems,
        StunProtocol.send_data,
        "aioice StunProtocol.send_data",
        "self.transport.sendto(data, addr)",
    )
    _require(
        problems,
        aioice.ice.CandidatePair,
        "aioice CandidatePair",
        "self.protocol = protocol",
        "def remote_addr(self)",
    )
    _require(
        problems,
        StunProtocol.connection_made,
        "aioice StunProtocol.connection_made",
        "self.transport = ",
    )
    # pylibsrtp: the libsrtp context and call behind Session.protect().
    _require(
        problems,
        pylibsrtp.Session.__init__,
        "pylibsrtp Session.__init__",
        "self._srtp = ffi.gc(srtp,",
    )
    _require(
        problems,
        pylibsrtp.Session.protect,
        "pylibsrtp Session.protect",
        "self.__process(packet, lib.srtp_protect, SRTP_MAX_TRAILER_LEN)",
    )
    _require(
        problems,
        getattr(pylibsrtp.Session, "_Session__process", None),
        "pylibsrtp Session.__process",
        "_srtp_assert(func(self._srtp[0], self._cdata, len_p))",
        "return self._buffer[0 : len_p[0]]",
    )
