"""The start-up check of every private name media/internals/ relies on, without sources.

Versions (exact pins), the existence and signature (``inspect.signature``) of every private
method called or overridden, and the private attributes each function's compiled code must still
use (``co_names``: a name-mangled ``self.__x`` shows there as ``_Class__x``), plus the C
signature of libsrtp's ``srtp_protect``. All of it works on an install without sources (only
bytecode); ``sources`` adds the source-text checks the test suite runs.

:func:`check_internals` is cached: the app factory calls it, once per process does the work.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any

import aioice.ice
import aiortc.codecs
import aiortc.jitterbuffer
import aiortc.rtcdtlstransport
import aiortc.rtcicetransport
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCDtlsTransport, RTCIceTransport, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTCEncodedFrame
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensions

from media.internals import (
    egress,
    hosts,
    ingest,
    nack,
    peers,
    srtp_send,
    tcp_mux,
    transport_cc,
    udp_mux,
)
from media.internals.base import PINNED, AiortcInternalsError

_VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
_H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=97)

# (what, the callable, its parameter names): called or overridden with exactly these.
_SIGNATURES: tuple[tuple[str, Callable[[], Any], list[str]], ...] = (
    ("RTCRtpReceiver._send_rtcp_pli", lambda: RTCRtpReceiver._send_rtcp_pli, ["media_ssrc"]),
    ("RTCRtpReceiver.receive", lambda: RTCRtpReceiver.receive, ["parameters"]),
    (
        "RTCRtpReceiver._handle_rtp_packet",
        lambda: RTCRtpReceiver._handle_rtp_packet,
        ["packet", "arrival_time_ms"],
    ),
    (
        "JitterBuffer.__init__",
        lambda: aiortc.jitterbuffer.JitterBuffer.__init__,
        ["capacity", "prefetch", "is_video"],
    ),
    ("JitterBuffer.add", lambda: aiortc.jitterbuffer.JitterBuffer.add, ["packet"]),
    (
        "JitterBuffer._remove_frame",
        lambda: aiortc.jitterbuffer.JitterBuffer._remove_frame,
        ["sequence_number"],
    ),
    ("JitterBuffer.remove", lambda: aiortc.jitterbuffer.JitterBuffer.remove, ["count"]),
    ("TimestampMapper.map", lambda: aiortc.rtcrtpreceiver.TimestampMapper.map, ["timestamp"]),
    ("RTCRtpSender.send", lambda: RTCRtpSender.send, ["parameters"]),
    ("RTCRtpSender.stop", lambda: RTCRtpSender.stop, []),
    ("RTCRtpSender.replaceTrack", lambda: RTCRtpSender.replaceTrack, ["track"]),
    ("RTCRtpSender._next_encoded_frame", lambda: RTCRtpSender._next_encoded_frame, ["codec"]),
    ("RTCRtpSender._send_keyframe", lambda: RTCRtpSender._send_keyframe, []),
    ("RTCRtpSender._run_rtp", lambda: RTCRtpSender._run_rtp, ["codec"]),
    ("RTCRtpSender._run_rtcp", lambda: RTCRtpSender._run_rtcp, []),
    ("RTCRtpSender._send_rtcp", lambda: RTCRtpSender._send_rtcp, ["packets"]),
    ("RTCRtpSender._retransmit", lambda: RTCRtpSender._retransmit, ["sequence_number"]),
    ("RTCRtpSender._handle_rtcp_packet", lambda: RTCRtpSender._handle_rtcp_packet, ["packet"]),
    ("RTCDtlsTransport._send_rtp", lambda: RTCDtlsTransport._send_rtp, ["data"]),
    ("RtpRouter.route_rtp", lambda: aiortc.rtcdtlstransport.RtpRouter.route_rtp, ["packet"]),
    ("aioice Connection.send", lambda: aioice.ice.Connection.send, ["data"]),
    (
        "aioice Connection.data_received",
        lambda: aioice.ice.Connection.data_received,
        ["data", "component"],
    ),
    ("aioice Connection.sendto", lambda: aioice.ice.Connection.sendto, ["data", "component"]),
    ("aioice StunProtocol.send_data", lambda: StunProtocol.send_data, ["data", "addr"]),
    (
        "aioice Connection.get_component_candidates",
        lambda: udp_mux._ORIGINAL_GET_COMPONENT_CANDIDATES,
        ["component", "addresses", "timeout"],
    ),
    (
        "aioice StunProtocol.datagram_received",
        lambda: StunProtocol.datagram_received,
        ["data", "addr"],
    ),
    ("aioice StunProtocol.connection_lost", lambda: StunProtocol.connection_lost, ["exc"]),
    (
        "aioice Connection._add_remote_candidate",
        lambda: peers._ADD_REMOTE,
        ["remote_candidate", "network_host"],
    ),
    (
        "aioice Connection.request_received",
        lambda: peers._REQUEST_RECEIVED,
        ["message", "addr", "protocol"],
    ),
    (
        "aioice StunProtocol.request",
        lambda: StunProtocol.request,
        ["request", "addr", "integrity_key", "retransmissions"],
    ),
    ("pylibsrtp Session.protect", lambda: pylibsrtp.Session.protect, ["packet"]),
    (
        "pylibsrtp Session.__process",
        lambda: pylibsrtp.Session._Session__process,  # type: ignore[attr-defined]
        ["data", "func", "trailer"],
    ),
)

# (what, the function, names its compiled code must use): the private state each one shares
# with media/internals/ (reads, writes, or the call it makes).
_R, _S, _D = "_RTCRtpReceiver", "_RTCRtpSender", "_RTCDtlsTransport"
# Module functions, with all their parameter names.
_FUNCTIONS: tuple[tuple[str, Callable[[], Any], list[str]], ...] = (
    (
        "aiortc.rtcpeerconnection.find_common_codecs",
        lambda: aiortc.rtcpeerconnection.find_common_codecs,
        ["local_codecs", "remote_codecs"],
    ),
    (
        "aiortc.rtcpeerconnection.filter_preferred_codecs",
        lambda: aiortc.rtcpeerconnection.filter_preferred_codecs,
        ["codecs", "preferred"],
    ),
    (
        "aioice.ice.get_host_addresses",
        lambda: hosts._AIOICE_GET_HOST_ADDRESSES,
        ["use_ipv4", "use_ipv6"],
    ),
)

_CODE_NAMES: tuple[tuple[str, Callable[[], Any], Callable[[], tuple[str, ...]]], ...] = (
    (
        "RTCRtpReceiver.__init__",
        lambda: RTCRtpReceiver.__init__,
        lambda: (
            ingest._RECEIVER_DECODER_QUEUE,
            ingest._RECEIVER_DECODER_THREAD,
            ingest._RECEIVER_RTX_SSRC,
            ingest._RECEIVER_STARTED,
            ingest._RECEIVER_BITRATE_ESTIMATOR,
            ingest._RECEIVER_JITTER_BUFFER,
            ingest._RECEIVER_TIMESTAMP_MAPPER,
            nack._RECEIVER_NACK_GENERATOR,
            "JitterBuffer",
            "TimestampMapper",
            "NackGenerator",
        ),
    ),
    (
        "RTCRtpReceiver._handle_rtp_packet (REMB)",
        lambda: RTCRtpReceiver._handle_rtp_packet,
        lambda: (ingest._RECEIVER_BITRATE_ESTIMATOR, "add", "_send_rtcp"),
    ),
    ("RTCRtpReceiver.receive", lambda: RTCRtpReceiver.receive, lambda: (f"{_R}__decoder_queue",)),
    (
        "RTCRtpReceiver._handle_rtp_packet",
        lambda: RTCRtpReceiver._handle_rtp_packet,
        lambda: (
            f"{_R}__decoder_queue",
            "put",
            ingest._RECEIVER_JITTER_BUFFER,
            "add",
            ingest._RECEIVER_TIMESTAMP_MAPPER,
            "map",
        ),
    ),
    # The state ReleasingJitterBuffer reads, and the call add() makes to it.
    (
        "JitterBuffer.__init__",
        lambda: aiortc.jitterbuffer.JitterBuffer.__init__,
        lambda: ("_capacity", "_origin", "_packets", "_is_video"),
    ),
    (
        "JitterBuffer.add",
        lambda: aiortc.jitterbuffer.JitterBuffer.add,
        lambda: ("_origin", "_packets", "_remove_frame"),
    ),
    ("JitterBuffer.remove", lambda: aiortc.jitterbuffer.JitterBuffer.remove, lambda: ("_origin",)),
    (
        "RTCRtpSender.__init__",
        lambda: RTCRtpSender.__init__,
        lambda: (
            "_stream_id",
            "_ssrc",
            "_rtx_ssrc",
            "_enabled",
            egress._SENDER_STARTED,
            egress._SENDER_RTP_STARTED,
            egress._SENDER_RTP_EXITED,
            *egress._SENDER_SR_COUNTERS,
        ),
    ),
    (
        "RTCRtpSender.send",
        lambda: RTCRtpSender.send,
        lambda: (egress._SENDER_STARTED, "_run_rtp"),
    ),
    (
        "RTCRtpSender.stop",
        lambda: RTCRtpSender.stop,
        lambda: (egress._SENDER_RTP_STARTED, egress._SENDER_RTP_EXITED),
    ),
    (
        "RTCRtpSender._run_rtp",
        lambda: RTCRtpSender._run_rtp,
        lambda: ("_next_encoded_frame", "_send_rtp", *egress._SENDER_SR_COUNTERS),
    ),
    ("RTCRtpSender._run_rtcp", lambda: RTCRtpSender._run_rtcp, lambda: egress._SENDER_SR_COUNTERS),
    (
        "RTCRtpSender._handle_rtcp_packet",
        lambda: RTCRtpSender._handle_rtcp_packet,
        lambda: ("_send_keyframe", "_retransmit"),
    ),
    ("RTCRtpSender._retransmit", lambda: RTCRtpSender._retransmit, lambda: ("_rtx_ssrc",)),
    (
        "RTCRtpSender._handle_rtcp_packet (rtt)",
        lambda: RTCRtpSender._handle_rtcp_packet,
        lambda: (egress._SENDER_RTT, "fraction_lost", egress._SENDER_LSR, egress._SENDER_LSR_TIME),
    ),
    (
        "RTCDtlsTransport.__init__",
        lambda: RTCDtlsTransport.__init__,
        lambda: (
            "_tx_srtp",
            srtp_send._DTLS_TX_BYTES,
            srtp_send._DTLS_TX_PACKETS,
            "_rtp_router",  # egress: a report shared with the leg's other senders
        ),
    ),
    (
        "RtpRouter.__init__",
        lambda: aiortc.rtcdtlstransport.RtpRouter.__init__,
        lambda: ("senders",),
    ),
    ("RTCDtlsTransport._setup_srtp", lambda: RTCDtlsTransport._setup_srtp, lambda: ("_tx_srtp",)),
    (
        "RTCDtlsTransport._send_rtp",
        lambda: RTCDtlsTransport._send_rtp,
        lambda: (
            "_state",
            "_tx_srtp",
            "protect",
            "_send",
            srtp_send._DTLS_TX_BYTES,
            srtp_send._DTLS_TX_PACKETS,
        ),
    ),
    ("RTCDtlsTransport._set_state", lambda: RTCDtlsTransport._set_state, lambda: ("_state",)),
    (
        "RTCDtlsTransport._handle_rtp_data",
        lambda: RTCDtlsTransport._handle_rtp_data,
        lambda: ("route_rtp", "_handle_rtp_packet"),
    ),
    (
        "RTCRtpReceiver.receive (route_rtx)",
        lambda: RTCRtpReceiver.receive,
        lambda: (ingest._RECEIVER_RTX_SSRC, "_register_rtp_receiver"),
    ),
    (
        "RTCRtpReceiver._handle_rtp_packet (route_rtx)",
        lambda: RTCRtpReceiver._handle_rtp_packet,
        lambda: (ingest._RECEIVER_RTX_SSRC, ingest._RECEIVER_REMOTE_STREAMS, "unwrap_rtx"),
    ),
    (
        "RtpRouter.__init__ (route_rtx)",
        lambda: aiortc.rtcdtlstransport.RtpRouter.__init__,
        lambda: ("receivers", "ssrc_table"),
    ),
    (
        "RtpRouter.route_rtp (route_rtx)",
        lambda: aiortc.rtcdtlstransport.RtpRouter.route_rtp,
        lambda: ("ssrc_table", "payload_type_table"),
    ),
    (
        "RTCDtlsTransport.__init__ (transport_cc)",
        lambda: RTCDtlsTransport.__init__,
        lambda: ("_rtp_router", "_rtp_header_extensions_map"),
    ),
    (
        "RTCRtpReceiver._send_rtcp_pli (transport_cc)",
        lambda: RTCRtpReceiver._send_rtcp_pli,
        lambda: (transport_cc._RECEIVER_RTCP_SSRC,),
    ),
    (
        "RTCPeerConnection.setRemoteDescription (transport_cc)",
        lambda: aiortc.rtcpeerconnection.RTCPeerConnection.setRemoteDescription,
        lambda: ("_headerExtensions", "_codecs", "find_common_header_extensions"),
    ),
    (
        "RTCPeerConnection.__remoteRtp (transport_cc)",
        lambda: aiortc.rtcpeerconnection.RTCPeerConnection._RTCPeerConnection__remoteRtp,  # type: ignore[attr-defined]
        lambda: ("_headerExtensions", "_codecs"),
    ),
    (
        "RTCIceTransport.__init__",
        lambda: RTCIceTransport.__init__,
        lambda: ("_connection", "_send"),
    ),
    (
        "aioice Connection.__init__",
        lambda: aioice.ice.Connection.__init__,
        lambda: (srtp_send._ICE_NOMINATED,),
    ),
    ("aioice Connection.send", lambda: aioice.ice.Connection.send, lambda: ("sendto",)),
    (
        "aioice Connection.sendto",
        lambda: aioice.ice.Connection.sendto,
        lambda: (srtp_send._ICE_NOMINATED, "protocol", "send_data", "remote_addr"),
    ),
    ("aioice StunProtocol.send_data", lambda: StunProtocol.send_data, lambda: ("transport",)),
    (
        "aioice Connection.__init__ (udp_mux)",
        lambda: aioice.ice.Connection.__init__,
        lambda: ("_protocols",),
    ),
    (
        "aioice Connection.gather_candidates",
        lambda: aioice.ice.Connection.gather_candidates,
        lambda: ("get_component_candidates",),
    ),
    ("aioice Connection.close", lambda: aioice.ice.Connection.close, lambda: ("_protocols",)),
    (
        "aiortc RTCPeerConnection.__init__",
        lambda: aiortc.rtcpeerconnection.RTCPeerConnection.__init__,
        lambda: ("_RTCPeerConnection__iceTransports",),
    ),
    (
        "aiortc RTCIceGatherer.__init__",
        lambda: aiortc.rtcicetransport.RTCIceGatherer.__init__,
        lambda: ("_connection",),
    ),
    # tcp_mux: its protocol's connection (``receiver``), the checks and consent requests it
    # refuses or lets through, and the responses it frames.
    ("aioice StunProtocol.__init__", lambda: StunProtocol.__init__, lambda: ("receiver",)),
    (
        "aioice Connection.check_start",
        lambda: aioice.ice.Connection.check_start,
        lambda: ("protocol", "request", "remote_addr", "build_request"),
    ),
    (
        "aioice Connection.query_consent",
        lambda: aioice.ice.Connection.query_consent,
        lambda: (srtp_send._ICE_NOMINATED, "protocol", "request"),
    ),
    (
        "aioice StunProtocol.send_stun",
        lambda: StunProtocol.send_stun,
        lambda: ("transport", "sendto"),
    ),
    (
        "tcp_mux TcpStunProtocol.request",
        lambda: tcp_mux.TcpStunProtocol.request,
        lambda: (srtp_send._ICE_NOMINATED, "receiver", "local_candidate", "component"),
    ),
    (
        "aioice StunProtocol.connection_made",
        lambda: StunProtocol.connection_made,
        lambda: ("transport",),
    ),
    # tcp_mux: a closed TCP connection under the nominated pair hands it to another succeeded
    # pair of aioice's check list, or fails the ICE connection (``close``: aiortc's transport
    # hears ``ConnectionClosed`` and goes "failed").
    (
        "aioice Connection.__init__ (tcp_mux)",
        lambda: aioice.ice.Connection.__init__,
        lambda: ("_check_list", srtp_send._ICE_NOMINATED),
    ),
    (
        "aioice Connection.check_complete",
        lambda: aioice.ice.Connection.check_complete,
        lambda: ("state", "SUCCEEDED", "nominated", srtp_send._ICE_NOMINATED, "component"),
    ),
    (
        "aioice Connection.sort_check_list",
        lambda: aioice.ice.Connection.sort_check_list,
        lambda: ("sort_candidate_pairs", "_check_list"),
    ),
    (
        "aioice Connection.close",
        lambda: aioice.ice.Connection.close,
        lambda: (srtp_send._ICE_NOMINATED, "_emit_event", "ConnectionClosed"),
    ),
    (
        "aiortc RTCIceTransport._monitor",
        lambda: RTCIceTransport._monitor,
        lambda: ("get_event", "ConnectionClosed"),
    ),
    (
        "tcp_mux TcpStunProtocol.stream_lost",
        lambda: tcp_mux.TcpStunProtocol.stream_lost,
        lambda: (srtp_send._ICE_NOMINATED, "_check_list", "receiver"),
    ),
    (
        "tcp_mux TcpStunProtocol._lost_for_good",
        lambda: tcp_mux.TcpStunProtocol._lost_for_good,
        lambda: (srtp_send._ICE_NOMINATED, "_check_list", "receiver", "close"),
    ),
    (
        "pylibsrtp Session.__init__",
        lambda: pylibsrtp.Session.__init__,
        lambda: (srtp_send._SRTP_SESSION,),
    ),
    (
        "pylibsrtp Session.protect",
        lambda: pylibsrtp.Session.protect,
        lambda: ("_Session__process", "srtp_protect"),
    ),
    (
        "pylibsrtp Session.__process",
        lambda: pylibsrtp.Session._Session__process,  # type: ignore[attr-defined]
        lambda: (srtp_send._SRTP_SESSION, "_cdata", "_buffer"),
    ),
)

_SRTP_PROTECT_C = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"


def _all_names(code: CodeType) -> Iterator[str]:
    """The names a function's code uses, its nested functions and comprehensions included."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _all_names(const)


def problems() -> list[str]:
    """Every difference from what media/internals/ was written against (empty: none)."""
    found: list[str] = []
    for dist, pinned in PINNED.items():
        installed = importlib.metadata.version(dist)
        if installed != pinned:
            found.append(f"{dist} {installed} installed, {pinned} pinned")
    for what, get, params in _SIGNATURES:
        try:
            names = list(inspect.signature(get()).parameters)[1:]  # without self
        except (AttributeError, TypeError, ValueError):
            found.append(f"{what} is missing")
            continue
        if names != params:
            found.append(f"{what}({', '.join(params)}) is now ({', '.join(names)})")
    for what, get, params in _FUNCTIONS:
        try:
            names = list(inspect.signature(get()).parameters)
        except (AttributeError, TypeError, ValueError):
            found.append(f"{what} is missing")
            continue
        if names != params:
            found.append(f"{what}({', '.join(params)}) is now ({', '.join(names)})")
    if not {"audio", "video"} <= set(getattr(aiortc.codecs, "CODECS", {})):
        found.append("aiortc.codecs.CODECS has no audio and video lists")
    for what, get, wanted in _CODE_NAMES:
        code = getattr(get(), "__code__", None) if _exists(get) else None
        if code is None:
            found.append(f"{what} is missing (or not Python code)")
            continue
        used = set(_all_names(code))
        found.extend(f"{what} no longer uses {name}" for name in wanted() if name not in used)
    for field in ("payloads", "timestamp", "audio_level"):
        if field not in inspect.signature(RTCEncodedFrame.__init__).parameters:
            found.append(f"RTCEncodedFrame has no {field!r}")
    for field in ("mid", "abs_send_time", "audio_level"):
        if not hasattr(HeaderExtensions(), field):
            found.append(f"aiortc.rtp.HeaderExtensions has no {field!r}")
    if RTP_HISTORY_SIZE != 128:
        found.append(f"aiortc.rtp.RTP_HISTORY_SIZE is {RTP_HISTORY_SIZE}, not 128")
    # A viewer's video jitter buffer is SEQUENCE_SKIP packets long (restart_sequence).
    if egress.SEQUENCE_SKIP not in RTCRtpReceiver.__init__.__code__.co_consts:
        found.append(f"RTCRtpReceiver's video JitterBuffer is no longer {egress.SEQUENCE_SKIP}")
    for encoder in (type(get_encoder(_VP8)), type(get_encoder(_H264))):
        if not callable(getattr(encoder, "pack", None)):
            found.append(f"{encoder.__name__}.pack is missing")
    ffi = srtp_send._srtp_ffi
    signature = ffi.getctype(ffi.typeof(srtp_send._srtp_protect))
    if signature != _SRTP_PROTECT_C:
        found.append(f"libsrtp srtp_protect is now {signature}")
    if not isinstance(getattr(pylibsrtp, "ERRORS", None), list):
        found.append("pylibsrtp.ERRORS is missing")
    return found


def _exists(get: Callable[[], Any]) -> bool:
    try:
        get()
    except AttributeError:
        return False
    return True


def verify() -> None:
    """Raise :class:`AiortcInternalsError` naming everything that changed (not cached)."""
    found = problems()
    if found:
        raise AiortcInternalsError(
            "aiortc (or aioice, pylibsrtp) internals used by media/internals/ have changed: "
            + "; ".join(found)
        )


@functools.cache
def check_internals() -> None:
    """:func:`verify`, once per process (the app factory calls it at start-up)."""
    verify()
