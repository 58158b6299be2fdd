"""The direct send path: each RTP packet built in one buffer, SRTP-protected in place by libsrtp
and sent with one ``sendto`` on the nominated ICE pair's UDP transport.

It does what ``RTCDtlsTransport._send_rtp`` -> aioice ``Connection.send`` -> ``sendto`` ->
``StunProtocol.send_data`` does for each packet, without a coroutine per layer, reading
aiortc's, aioice's and pylibsrtp's private state (named below; checked by ``checks``).
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from typing import Any

import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

from media.internals import sendmmsg
from media.internals.tcp_mux import TcpStunProtocol
from media.internals.udp_mux import _MuxTransport

# RTCDtlsTransport's transmit counters (its getStats), kept as its _send_rtp keeps them.
_DTLS_TX_BYTES = "_RTCDtlsTransport__tx_bytes"
_DTLS_TX_PACKETS = "_RTCDtlsTransport__tx_packets"
# aioice (not pinned by this project, a dependency of aiortc): the nominated pair per component.
_ICE_NOMINATED = "_nominated"
# pylibsrtp (idem): a Session's libsrtp context (``srtp_t *``), and the call its protect() makes.
_SRTP_SESSION = "_srtp"
_srtp_protect = _srtp_lib.srtp_protect
_SRTP_MAX_TRAILER = pylibsrtp.SRTP_MAX_TRAILER_LEN

_RTP_HEAD = struct.Struct("!BBH")  # V/P/X/CC, M/PT, sequence number
_RTP_TAIL = struct.Struct("!LL")  # timestamp, SSRC
_RTX_HEAD = struct.Struct("!BBH4sL")
_EXTENSION_HEADER = struct.Struct("!HH")
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_DTLS_CONNECTED = DtlsState.CONNECTED

# Send each frame's packets straight to the transport of the nominated ICE pair (no
# coroutine chain per packet) when that pair is a host pair, on UDP or on an ICE-TCP
# connection (``tcp_mux``: its sendto writes one RFC 4571 frame); False sends every packet
# through aiortc's RTCDtlsTransport._send_rtp instead.
DIRECT_DATAGRAMS = True
_DIRECT_PROTOCOLS = (StunProtocol, TcpStunProtocol)
# On a UDP pair (the node's shared port or aioice's own socket), build each packet in a slot of
# the loop's ``sendmmsg`` arena: the packets of one loop iteration leave with one system call
# per socket (``sendmmsg``). False (or no ``sendmmsg`` here): one ``sendto`` per packet.
BATCH_DATAGRAMS = True


def _ntp_now() -> int:
    """NTP time (32.32 fixed point) as aiortc's ``clock.current_ntp_time()``, from one read."""
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return ((seconds + _NTP_EPOCH_OFFSET) << 32) | ((nanoseconds << 32) // 1_000_000_000)


class _PacketBuffer:
    """Scratch memory where each packet is built and SRTP-protected in place (one per thread:
    an event loop sends one frame at a time, synchronously)."""

    def __init__(self) -> None:
        self.length = _srtp_ffi.new("int *")
        self.grow(4096)

    def grow(self, size: int) -> None:
        self.size = size
        self.cdata = _srtp_ffi.new("char[]", size)
        self.buffer = _srtp_ffi.buffer(self.cdata)


_THREAD = threading.local()


def _packet_buffer() -> _PacketBuffer:
    try:
        packet: _PacketBuffer = _THREAD.packet
    except AttributeError:
        packet = _THREAD.packet = _PacketBuffer()
    return packet


class _DatagramSink:
    """Where one sender's packets go: SRTP and the nominated UDP pair, resolved per frame.

    Does what ``RTCDtlsTransport._send_rtp`` -> ``Connection.send`` -> ``sendto`` ->
    ``StunProtocol.send_data`` does for each RTP packet, without a coroutine per layer: each
    packet is built in one buffer and protected there by libsrtp's ``srtp_protect`` on the
    transport's own SRTP session (the call pylibsrtp's ``Session.protect`` makes, without its
    per-call allocation and copies), then goes to the pair's UDP transport with ``sendto``.

    The resolution is cached while the DTLS transport, its SRTP session and the nominated pair
    stay the same (a pair does not change after nomination in aioice).
    """

    __slots__ = (
        "addr",
        "batch",
        "batch_target",
        "direct",
        "dtls",
        "fd",
        "name",
        "name_length",
        "pair",
        "session",
        "srtp",
        "transport",
    )

    def __init__(self) -> None:
        self.dtls: Any = None
        self.pair: Any = None
        self.direct = False
        self.session: pylibsrtp.Session | None = None  # owns the libsrtp context in srtp
        self.srtp: Any = None
        self.transport: Any = None
        self.addr: Any = None
        # Batched sends (``sendmmsg``): the socket, the destination as a sockaddr, and the
        # (socket's transport, addr) a fallback sends with; fd None: one sendto per packet.
        self.fd: int | None = None
        self.name: Any = None
        self.name_length = 0
        self.batch_target: tuple[Any, Any] | None = None
        self.batch: sendmmsg.DatagramBatch | None = None  # the running loop's

    def resolve(self, dtls: RTCDtlsTransport) -> bool:
        """True if packets can go straight to the UDP transport; raises ConnectionError."""
        if dtls._state is not _DTLS_CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        pair = getattr(dtls.transport._connection, _ICE_NOMINATED).get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        if pair is not self.pair or dtls is not self.dtls or dtls._tx_srtp is not self.session:
            protocol = pair.protocol
            # A relayed (TURN) pair's send_data may wait for a channel binding: not direct.
            self.direct = type(protocol) in _DIRECT_PROTOCOLS
            # Keep the Session referenced: it frees the libsrtp context when collected.
            self.session = dtls._tx_srtp
            self.fd = None
            if self.direct:
                self.srtp = getattr(self.session, _SRTP_SESSION)[0]
                self.transport = protocol.transport
                self.addr = pair.remote_addr
                if type(protocol) is StunProtocol:
                    self._batch_on(protocol.transport, pair.remote_addr)
            self.pair, self.dtls = pair, dtls
        return self.direct

    def _batch_on(self, transport: Any, addr: Any) -> None:
        """Batch this pair's packets when its socket can be had: aioice's own UDP transport,
        or the shared port's (``udp_mux``) once the pair's address is learned there."""
        if not (BATCH_DATAGRAMS and sendmmsg.AVAILABLE):
            return
        if isinstance(transport, _MuxTransport):
            if addr not in transport.addresses or transport.endpoint.transport is None:
                return  # its sendto learns the address first
            transport = transport.endpoint.transport
        fd = sendmmsg.socket_fd(transport)
        name = sendmmsg.sockaddr(addr) if fd is not None else None
        if name is None:
            return
        self.fd, self.name, self.name_length = fd, name, len(name)
        self.batch_target = (transport, addr)
        self.batch = sendmmsg.batch_for(asyncio.get_running_loop())

    def send(
        self,
        first_byte: int,
        payload_type: int,
        sequence_number: int,
        tail: bytes,
        payloads: list[bytes],
        history: list[Any],
    ) -> int:
        """Build, protect and send one frame's packets; returns the bytes sent (SRTP)."""
        if self.fd is not None and not self.transport.is_closing():
            needed = 4 + len(tail) + max(map(len, payloads)) + _SRTP_MAX_TRAILER
            if needed <= sendmmsg.SLOT_BYTES:
                return self._send_batched(
                    first_byte, payload_type, sequence_number, tail, payloads, history
                )
        packet = _packet_buffer()
        head_length = 4 + len(tail)
        needed = head_length + max(map(len, payloads)) + _SRTP_MAX_TRAILER
        if needed > packet.size:
            packet.grow(needed)
        cdata, buffer, length = packet.cdata, packet.buffer, packet.length
        pack_head = _RTP_HEAD.pack_into
        protect, srtp = _srtp_protect, self.srtp
        sendto, addr = self.transport.sendto, self.addr
        history_size = len(history)
        last = len(payloads) - 1
        marker_type = 0x80 | payload_type
        sent = 0
        for i, payload in enumerate(payloads):
            second_byte = marker_type if i == last else payload_type
            pack_head(buffer, 0, first_byte, second_byte, sequence_number)
            buffer[4:head_length] = tail
            end = head_length + len(payload)
            buffer[head_length:end] = payload
            length[0] = end
            status = protect(srtp, cdata, length)
            if status:
                raise pylibsrtp.Error(pylibsrtp.ERRORS[status])
            history[sequence_number % history_size] = (
                sequence_number,
                second_byte,
                tail,
                payload,
            )
            data = buffer[0 : length[0]]  # bytes: the transport may queue it
            sendto(data, addr)
            sent += len(data)
            sequence_number = (sequence_number + 1) & 0xFFFF
        return sent

    def _send_batched(
        self,
        first_byte: int,
        payload_type: int,
        sequence_number: int,
        tail: bytes,
        payloads: list[bytes],
        history: list[Any],
    ) -> int:
        """As :meth:`send`, each packet built and protected in a slot of the loop's
        ``sendmmsg`` arena; they leave with the iteration's batch (``sendmmsg.flush``)."""
        batch = self.batch
        assert batch is not None
        buffer, pointers, slot_bytes = batch.buffer, batch.pointers, sendmmsg.SLOT_BYTES
        length = _packet_buffer().length
        head_length = 4 + len(tail)
        pack_head = _RTP_HEAD.pack_into
        protect, srtp = _srtp_protect, self.srtp
        commit, fd, name, name_length = batch.commit, self.fd, self.name, self.name_length
        target = self.batch_target
        assert fd is not None and target is not None
        history_size = len(history)
        last = len(payloads) - 1
        marker_type = 0x80 | payload_type
        sent = 0
        for i, payload in enumerate(payloads):
            slot = batch.count
            if slot == sendmmsg.SLOTS:
                batch.flush()
                slot = 0
            offset = slot * slot_bytes
            second_byte = marker_type if i == last else payload_type
            pack_head(buffer, offset, first_byte, second_byte, sequence_number)
            buffer[offset + 4 : offset + head_length] = tail
            end = head_length + len(payload)
            buffer[offset + head_length : offset + end] = payload
            length[0] = end
            status = protect(srtp, pointers[slot], length)
            if status:
                raise pylibsrtp.Error(pylibsrtp.ERRORS[status])
            history[sequence_number % history_size] = (
                sequence_number,
                second_byte,
                tail,
                payload,
            )
            protected = length[0]
            commit(slot, protected, fd, name, name_length, target)
            sent += protected
            sequence_number = (sequence_number + 1) & 0xFFFF
        return sent
