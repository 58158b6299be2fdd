"""ICE over TCP on one port per node: RFC 6544 passive host candidates, RFC 4571 framing.

aioice 0.13 has no TCP half: it gathers UDP host candidates only and its ``StunProtocol`` speaks
datagrams. Behind a firewall that lets no UDP through, a browser can still reach a ``tcptype
passive`` candidate over TCP (it offers ``tcptype active`` candidates and connects), as it does
with Janus, LiveKit and mediasoup. This module adds that half for the server's peer connections:

* :class:`TcpMux` listens on one TCP port per host address. Each accepted connection carries
  RFC 4571 frames (a 2-byte length, then one datagram: STUN, DTLS, SRTP/SRTCP).
  :class:`FrameReader` (plain, no I/O) cuts the byte stream into them.
* The first frame must be a STUN Binding request: its USERNAME names the local ufrag (as in
  ``udp_mux``), which picks the ICE connection the TCP connection belongs to; anything else, an
  unknown ufrag, a frame over :data:`MAX_FRAME_BYTES` or no request within
  :data:`FIRST_REQUEST_TIMEOUT_S` closes it. Limits: :data:`MAX_CONNECTIONS` per node,
  :data:`MAX_PENDING` not yet identified, :data:`MAX_STREAMS_PER_ICE` per ICE connection and
  host address, :data:`MAX_QUEUED_BYTES` waiting to be written per connection (beyond it a
  datagram is dropped, as a full UDP path would drop it; never half a frame).
* Each ICE connection gets, per host address, a :class:`TcpStunProtocol` (aioice's
  ``StunProtocol``, so its checks, consent, responses and data path run unchanged) on a
  :class:`_TcpIceTransport`, a datagram transport whose ``sendto(data, addr)`` writes one frame
  on the TCP connection that came from ``addr``. aioice's ``request_received`` learns that
  address as a peer-reflexive candidate and pairs it with the protocol's ``local_candidate``
  (``tcp``, ``typ host``, ``tcptype passive``); the forwarding fast path (``srtp_send``) sends
  on such a pair like on a UDP one.
* Two aioice behaviours are corrected in :class:`TcpStunProtocol.request`: a check towards an
  address no TCP connection came from (a remote ``tcptype active`` candidate, port 9, which
  aioice pairs like any other) fails at once instead of timing out; and a nominating check
  (aioice nominates aggressively when it controls) on TCP fails while a UDP pair is nominated,
  so a browser that reaches both stays on UDP (aioice lets the last nominated pair win).
  TCP candidates have a lower priority than every UDP one (type preference 90, as libwebrtc's
  host TCP candidates), so ICE prefers UDP wherever it works.

* A TCP connection that closes under the nominated pair (:meth:`TcpStunProtocol.stream_lost`)
  hands it to another usable pair of the ICE connection (:func:`replacement_pair`: UDP, or
  another TCP connection) or fails the ICE connection (aioice's ``close``, as its consent checks
  would about 30 s later): at once when closed in order; when reset, unless Chromium connected
  again from a new port within :data:`RECONNECT_GRACE_S`.

``TCP_MUX.bind`` wraps ``get_component_candidates`` of one server PC's ICE connections (after
``udp_mux``'s, which it calls) to add the TCP candidates. The listener of a process is
process-wide, like the UDP mux (``shared_port``): ``TCP_MUX.use`` at the app's start-up,
``TCP_MUX.release`` at its end.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aioice.ice
from aioice import stun
from aioice.candidate import Candidate
from aioice.ice import CandidatePair, StunProtocol

from media.internals.shared_port import (
    ConnectionView,
    ProcessPort,
    SharedPort,
    add_host_candidate,
)
from media.internals.udp_mux import stun_request_ufrag

logger = logging.getLogger(__name__)

# Larger than any datagram a WebRTC peer sends (MTU-sized RTP, DTLS records, STUN).
MAX_FRAME_BYTES = 4096
MAX_CONNECTIONS = 4096
MAX_PENDING = 256
MAX_STREAMS_PER_ICE = 8
FIRST_REQUEST_TIMEOUT_S = 10.0
# Media must not wait in buffers: a viewer's link that cannot carry what it is sent would
# otherwise fill the kernel's autotuned send buffer (megabytes: a minute of a 300 kbit/s link)
# before anything is dropped. The socket's send buffer is fixed (the kernel doubles the value:
# 128 KiB) and at most MAX_QUEUED_BYTES more wait in user space, together about 0.75 s of a
# 2 Mbit/s viewer's media; beyond that datagrams are dropped whole and NACK/RTX, the viewer's
# estimate and the layer selection react as they do on a congested UDP path.
SEND_BUFFER_BYTES = 64 * 1024
MAX_QUEUED_BYTES = 64 * 1024
# libwebrtc's type preference of a host TCP candidate (UDP host: 126): lower than every UDP one.
TCP_TYPE_PREFERENCE = 90
# Chromium connects again after its TCP connection was reset (a new source port, a Binding
# request first: 0.8-1.2 s after the reset here, tests/live/test_ice_tcp.py); within this time
# after a reset its new pair may take over from the nominated one whose connection it was, else
# the ICE connection has failed. A connection closed in order (FIN) fails it at once.
RECONNECT_GRACE_S = 1.8
# RFC 6544 4.2: local preference = 2^13 * direction-pref + other-pref (passive: 4).
TCP_LOCAL_PREFERENCE = (1 << 13) * 4 + 8191

_LENGTH = struct.Struct("!H")


def tcp_candidate_priority(component: int) -> int:
    """RFC 8445 5.1.2.1's formula with a host TCP candidate's preferences."""
    return (1 << 24) * TCP_TYPE_PREFERENCE + (1 << 8) * TCP_LOCAL_PREFERENCE + 256 - component


class FrameTooLarge(ValueError):
    pass


class FrameReader:
    """RFC 4571: a stream of 2-byte big-endian lengths, each followed by that many bytes."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The frames ``data`` completes (in order); FrameTooLarge for a length over the max."""
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        pos = 0
        while len(buffer) - pos >= 2:
            (length,) = _LENGTH.unpack_from(buffer, pos)
            if length > self.max_frame:
                raise FrameTooLarge(f"RFC 4571 frame of {length} bytes (max {self.max_frame})")
            if len(buffer) - pos - 2 < length:
                break
            frames.append(bytes(buffer[pos + 2 : pos + 2 + length]))
            pos += 2 + length
        del buffer[:pos]
        return frames


def frame(data: bytes) -> bytes:
    """One RFC 4571 frame."""
    return _LENGTH.pack(len(data)) + data


class _NoTcpCheck(stun.TransactionError):
    def __init__(self, why: str) -> None:
        self.why = why

    def __str__(self) -> str:
        return self.why


class TcpStunProtocol(StunProtocol):
    """aioice's protocol on a passive TCP candidate (see the module's notes on ``request``)."""

    transport: _TcpIceTransport

    async def request(
        self,
        request: stun.Message,
        addr: tuple[str, int],
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> tuple[stun.Message, tuple[str, int]]:
        if addr not in self.transport.streams:
            raise _NoTcpCheck(f"no TCP connection from {addr}: a passive candidate only answers")
        if "USE-CANDIDATE" in request.attributes:
            nominated = self.receiver._nominated.get(self.local_candidate.component)
            if nominated is not None and not isinstance(nominated.protocol, TcpStunProtocol):
                raise _NoTcpCheck("a UDP pair is nominated: TCP is not")
        return await super().request(request, addr, integrity_key, retransmissions)

    def stream_lost(self, addr: tuple[str, int], reset: bool) -> None:
        """The TCP connection from ``addr`` closed: in order (the browser closed it) or
        ``reset`` (the network reset it, its process died). If it carried the nominated pair,
        another usable pair takes its place (:func:`replacement_pair`) now or, after a reset
        (Chromium then connects again), within :data:`RECONNECT_GRACE_S`; without one the ICE
        connection has failed (aioice's ``close``, which its consent checks would call some
        30 s later)."""
        connection = self.receiver
        nominated = connection._nominated.get(self.local_candidate.component)
        if nominated is None or nominated.protocol is not self or nominated.remote_addr != addr:
            return
        other = replacement_pair(connection._check_list, nominated)
        if other is not None:
            logger.info("media TCP connection from %s closed: ICE goes on on %s", addr, other)
            connection._nominated[nominated.component] = other
            return
        if reset:
            grace = RECONNECT_GRACE_S
            asyncio.get_running_loop().call_later(grace, self._lost_for_good, nominated)
        else:
            self._lost_for_good(nominated)

    def _lost_for_good(self, lost: CandidatePair) -> None:
        """``lost``'s TCP connection closed (in order, or :data:`RECONNECT_GRACE_S` ago): unless
        a usable pair is nominated now (the browser nominated its new connection, or aioice
        did), the best usable one is, or the ICE connection has failed."""
        connection = self.receiver
        current = connection._nominated.get(lost.component)
        if current is None or (current is not lost and pair_usable(current)):
            return  # closed meanwhile, or going on
        other = replacement_pair(connection._check_list, current)
        if other is not None:
            logger.info("media TCP connection of %s replaced: ICE goes on on %s", lost, other)
            connection._nominated[lost.component] = other
            return
        logger.info("media TCP connection of %s closed: its ICE connection failed", lost)
        task = asyncio.ensure_future(connection.close())
        _failing.add(task)
        task.add_done_callback(_failing.discard)


# The ICE connections being closed because their TCP connection closed (kept referenced).
_failing: set[asyncio.Future[None]] = set()


def pair_usable(pair: CandidatePair) -> bool:
    """Whether ``pair`` can carry media now: its check succeeded and, on TCP, the connection it
    came from is still open (on UDP, consent checks tell later)."""
    if pair.state != CandidatePair.State.SUCCEEDED:
        return False
    protocol = pair.protocol
    if isinstance(protocol, TcpStunProtocol):
        return (
            pair.remote_addr in protocol.transport.streams and not protocol.transport.is_closing()
        )
    # UDP, or a TURN relay (whose transport has no ``is_closing``): consent checks tell.
    return True


def replacement_pair(pairs: Sequence[CandidatePair], lost: CandidatePair) -> CandidatePair | None:
    """The pair that replaces ``lost`` (nominated, its TCP connection closed): the first usable
    one of its component in ``pairs`` (aioice's check list, highest priority first: UDP before
    TCP), or None."""
    for pair in pairs:
        if pair is not lost and pair.component == lost.component and pair_usable(pair):
            return pair
    return None


class _TcpStream(asyncio.Protocol):
    """One accepted TCP connection: pending until its first Binding request names an ICE one."""

    def __init__(self, endpoint: _TcpEndpoint) -> None:
        self.endpoint = endpoint
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.addr: tuple[str, int] = ("", 0)
        self.ice: _TcpIceTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.addr = (peer[0], peer[1])
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        if not self.endpoint.mux.admit(self):
            transport.close()
            return
        self.timer = asyncio.get_running_loop().call_later(
            FIRST_REQUEST_TIMEOUT_S, self.close, "no Binding request in time"
        )

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except FrameTooLarge as exc:
            self.close(str(exc))
            return
        for datagram in frames:
            ice = self.ice
            if ice is None:
                ice = self.endpoint.identify(self, datagram)
                if ice is None:
                    return
            ice.protocol.datagram_received(datagram, self.addr)

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_QUEUED_BYTES:
            self.dropped += 1
            return
        transport.write(_LENGTH.pack(len(data)) + data)

    def close(self, why: str = "") -> None:
        if why:
            logger.debug("media TCP connection from %s closed: %s", self.addr, why)
            if self.ice is None:
                self.endpoint.mux.rejected += 1
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.ice is not None:
            self.ice.detach(self, exc is not None)
        self.endpoint.mux.leave(self)


class _TcpIceTransport(ConnectionView):
    """One ICE connection's TCP connections on one listener, seen as a datagram transport."""

    endpoint: _TcpEndpoint

    def __init__(self, endpoint: _TcpEndpoint, protocol: TcpStunProtocol, ufrag: str) -> None:
        super().__init__(endpoint, protocol, ufrag)
        self.streams: dict[tuple[str, int], _TcpStream] = {}

    def sendto(self, data: Any, addr: Any = None) -> None:
        stream = self.streams.get(addr)
        if stream is not None and not self._closing:
            stream.send(data)

    def attach(self, stream: _TcpStream) -> bool:
        if self._closing or len(self.streams) >= MAX_STREAMS_PER_ICE:
            return False
        old = self.streams.get(stream.addr)
        if old is not None and old is not stream:
            old.close("replaced")
        self.streams[stream.addr] = stream
        stream.ice = self
        return True

    def detach(self, stream: _TcpStream, reset: bool = False) -> None:
        if self.streams.get(stream.addr) is stream:
            del self.streams[stream.addr]
            if not self._closing and not self.endpoint.mux.closed:
                self.protocol.stream_lost(stream.addr, reset)

    def _release(self) -> None:
        for stream in list(self.streams.values()):
            stream.close()
        self.streams.clear()


class _TcpEndpoint:
    """The listener of one host address and the ICE connections with a candidate on it."""

    def __init__(self, mux: TcpMux) -> None:
        self.mux = mux
        self.server: asyncio.Server | None = None
        self.sockname: tuple[str, int] = ("", 0)
        self.by_ufrag: dict[str, _TcpIceTransport] = {}

    def identify(self, stream: _TcpStream, datagram: bytes) -> _TcpIceTransport | None:
        """The ICE connection a new TCP connection's first frame names (None: closed)."""
        ufrag = stun_request_ufrag(datagram)
        ice = self.by_ufrag.get(ufrag) if ufrag is not None else None
        if ice is None:
            stream.close("its first frame is not a Binding request for a known ufrag")
            return None
        if not ice.attach(stream):
            stream.close(f"ICE connection {ufrag} has {MAX_STREAMS_PER_ICE} TCP connections")
            return None
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
        self.mux.pending.discard(stream)
        return ice

    def register(self, ice: _TcpIceTransport) -> None:
        self.by_ufrag[ice.ufrag] = ice

    def forget(self, ice: _TcpIceTransport) -> None:
        if self.by_ufrag.get(ice.ufrag) is ice:
            del self.by_ufrag[ice.ufrag]


_Gather = Callable[[int, list[str], int], Coroutine[Any, Any, list[Candidate]]]


class TcpMux(SharedPort[_TcpEndpoint]):
    """One TCP listener per host address, shared by every server-side ICE connection."""

    kind = "TCP"

    def __init__(self, port: int, addresses: Sequence[str]) -> None:
        super().__init__(port, addresses)
        self.streams: set[_TcpStream] = set()
        self.pending: set[_TcpStream] = set()
        # Connections closed before a valid Binding request (refused, timed out, not ICE).
        self.rejected = 0
        # Closed (the app's end): its connections' closing fails no ICE connection.
        self.closed = False

    async def _open(self, address: str) -> _TcpEndpoint:
        endpoint = _TcpEndpoint(self)
        endpoint.server = await asyncio.get_running_loop().create_server(
            functools.partial(_TcpStream, endpoint),
            host=address,
            port=self.port,
            reuse_address=True,
        )
        name = endpoint.server.sockets[0].getsockname()
        endpoint.sockname = (name[0], name[1])
        return endpoint

    def close(self) -> None:
        self.closed = True
        for endpoint in self.endpoints.values():
            if endpoint.server is not None:
                endpoint.server.close()
        for stream in list(self.streams):
            stream.close()
        self.endpoints.clear()

    def admit(self, stream: _TcpStream) -> bool:
        if len(self.streams) >= MAX_CONNECTIONS or len(self.pending) >= MAX_PENDING:
            self.rejected += 1
            return False
        self.streams.add(stream)
        self.pending.add(stream)
        return True

    def leave(self, stream: _TcpStream) -> None:
        self.streams.discard(stream)
        self.pending.discard(stream)

    async def _component_candidates(
        self,
        connection: aioice.ice.Connection,
        inner: _Gather,
        component: int,
        addresses: list[str],
        timeout: int = 5,
    ) -> list[Candidate]:
        """``inner`` (the UDP candidates), then a passive TCP host candidate per listener."""
        candidates = await inner(component, addresses, timeout)
        for address in addresses:
            endpoint = self.endpoint(address)
            if endpoint is None:
                continue
            ice = _TcpIceTransport(endpoint, TcpStunProtocol(connection), connection.local_username)
            priority = tcp_candidate_priority(component)
            candidates.append(
                add_host_candidate(connection, ice, component, "tcp", priority, "passive")
            )
        return candidates

    def _bind_connection(self, connection: aioice.ice.Connection) -> None:
        current = connection.get_component_candidates
        if getattr(current, "func", None) != self._component_candidates:
            connection.get_component_candidates = functools.partial(  # type: ignore[method-assign]
                self._component_candidates, connection, current
            )


# The process's listener, as ``udp_mux.UDP_MUX``; its ``bind`` goes after ``UDP_MUX.bind``
# (the TCP candidates wrap the UDP ones).
TCP_MUX = ProcessPort("media_tcp_port", TcpMux)
