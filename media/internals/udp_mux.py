"""All of a node's media on one UDP port: ICE connections demultiplexed by ufrag.

aioice binds one ephemeral UDP socket per host address for every ICE connection
(``Connection.get_component_candidates``: ``create_datagram_endpoint(local_addr=(address, 0))``),
so a media server opens a new port per peer connection, which no school firewall admin accepts.
Janus (``ice_udp_mux``), LiveKit (``udp_port``) and mediasoup (``WebRtcServer``) instead receive
everything on one port per address and tell connections apart the way ICE allows:

* a STUN Binding request names its target in USERNAME (``<our ufrag>:<their ufrag>``,
  RFC 8445 7.2.2): it goes to the connection with that local ufrag, and its source address is
  remembered for that connection;
* everything else (STUN responses, DTLS, SRTP/SRTCP) goes by source address: to the connection
  that learned that address (from a request it received or a check it sent there).

:class:`UdpMux` owns the shared sockets. ``UDP_MUX.bind`` makes the ICE connections of one
server-side ``RTCPeerConnection`` gather their host candidates on it (an instance attribute
replacing ``get_component_candidates`` on exactly those connections: clients in the same process
keep aioice's behaviour). Each such connection gets aioice's own ``StunProtocol`` (so aioice's
checks, consent and the forwarding send path in ``srtp_send`` work unchanged) on a
:class:`_MuxTransport` that sends through the shared socket. TURN/STUN gathering still uses
aioice's own sockets (the server's relayed candidates, rarely configured).

Memory: per connection, one ufrag entry plus one entry per remote address it talked to (its
remote candidates, at most a handful), removed when the connection closes.

The mux of a process is process-wide, like aioice's host addresses (``hosts``): the app starts
it at start-up (``UDP_MUX.use``); several apps of one process (tests) share it if they ask
for the same port, and a different port is refused (``shared_port``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
from typing import Any

import aioice.ice
from aioice.candidate import Candidate, candidate_priority
from aioice.ice import StunProtocol

from media.internals.shared_port import (
    ConnectionView,
    ProcessPort,
    SharedPort,
    add_host_candidate,
)

logger = logging.getLogger(__name__)

# The shared socket receives for every peer connection of the node: a bigger buffer than
# aioice's per-connection 1 MiB absorbs bursts of many publishers (kernel memory, not Python's).
SOCKET_BUFFER_BYTES = 8 * 1024 * 1024

_STUN_MAGIC = 0x2112A442
_STUN_BINDING_REQUEST = 0x0001
_STUN_USERNAME = 0x0006
_ORIGINAL_GET_COMPONENT_CANDIDATES = aioice.ice.Connection.get_component_candidates


def stun_request_ufrag(data: bytes) -> str | None:
    """The local ufrag a STUN Binding request is addressed to (USERNAME's part before ':')."""
    if len(data) < 20 or data[0] > 1:
        return None
    msg_type, length, cookie = struct.unpack_from("!HHI", data, 0)
    if msg_type != _STUN_BINDING_REQUEST or cookie != _STUN_MAGIC or 20 + length > len(data):
        return None
    pos, end = 20, 20 + length
    while pos + 4 <= end:
        attr_type, attr_len = struct.unpack_from("!HH", data, pos)
        pos += 4
        if attr_type == _STUN_USERNAME:
            if pos + attr_len > end:
                return None
            username = data[pos : pos + attr_len].decode("utf-8", "replace")
            return username.split(":", 1)[0]
        pos += (attr_len + 3) & ~3
    return None


class _MuxTransport(ConnectionView):
    """One ICE connection's view of a shared socket: sends through it, closes only itself."""

    endpoint: _MuxEndpoint

    def __init__(self, endpoint: _MuxEndpoint, protocol: StunProtocol, ufrag: str) -> None:
        super().__init__(endpoint, protocol, ufrag)
        self.addresses: set[tuple[str, int]] = set()

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        endpoint = self.endpoint
        if addr not in self.addresses:
            # A check we send: its response comes back from that address.
            endpoint.learn(addr, self)
        assert endpoint.transport is not None
        endpoint.transport.sendto(data, addr)


class _MuxEndpoint(asyncio.DatagramProtocol):
    """The shared socket of one host address."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.sockname: tuple[str, int] = ("", 0)
        self.by_ufrag: dict[str, _MuxTransport] = {}
        self.by_addr: dict[tuple[str, int], _MuxTransport] = {}
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        name = transport.get_extra_info("sockname")
        self.sockname = (name[0], name[1])

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        addr = (addr[0], addr[1])
        target: _MuxTransport | None = None
        if data and data[0] <= 1:  # STUN (RFC 7983): a request names its connection
            ufrag = stun_request_ufrag(data)
            if ufrag is not None:
                target = self.by_ufrag.get(ufrag)
                if target is not None:
                    self.learn(addr, target, replace=True)
        if target is None:
            target = self.by_addr.get(addr)
        if target is None:
            self.dropped += 1
            return
        target.protocol.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("media UDP socket %s: %s", self.sockname, exc)

    def learn(self, addr: tuple[str, int], mux: _MuxTransport, replace: bool = False) -> None:
        old = self.by_addr.get(addr)
        if old is mux:
            return
        if old is not None:
            if not replace:
                return
            old.addresses.discard(addr)
        self.by_addr[addr] = mux
        mux.addresses.add(addr)

    def register(self, mux: _MuxTransport) -> None:
        self.by_ufrag[mux.ufrag] = mux

    def forget(self, mux: _MuxTransport) -> None:
        if self.by_ufrag.get(mux.ufrag) is mux:
            del self.by_ufrag[mux.ufrag]
        for addr in mux.addresses:
            if self.by_addr.get(addr) is mux:
                del self.by_addr[addr]
        mux.addresses.clear()


class UdpMux(SharedPort[_MuxEndpoint]):
    """One UDP socket per host address, shared by every server-side ICE connection."""

    kind = "UDP"

    async def _open(self, address: str) -> _MuxEndpoint:
        loop = asyncio.get_running_loop()
        transport, endpoint = await loop.create_datagram_endpoint(
            _MuxEndpoint, local_addr=(address, self.port)
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        return endpoint

    def close(self) -> None:
        for endpoint in self.endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        self.endpoints.clear()

    async def _component_candidates(
        self,
        connection: aioice.ice.Connection,
        component: int,
        addresses: list[str],
        timeout: int = 5,
    ) -> list[Candidate]:
        """``Connection.get_component_candidates`` with host candidates on the shared sockets."""
        candidates: list[Candidate] = []
        others: list[str] = []
        for address in addresses:
            endpoint = self.endpoint(address)
            if endpoint is None or endpoint.transport is None:
                others.append(address)
                continue
            mux = _MuxTransport(endpoint, StunProtocol(connection), connection.local_username)
            priority = candidate_priority(component, "host")
            candidates.append(add_host_candidate(connection, mux, component, "udp", priority))
        # aioice's own path for whatever the mux does not serve, and for STUN/TURN candidates.
        candidates += await _ORIGINAL_GET_COMPONENT_CANDIDATES(
            connection, component, others, timeout
        )
        return candidates

    def _bind_connection(self, connection: aioice.ice.Connection) -> None:
        if "get_component_candidates" not in vars(connection):
            connection.get_component_candidates = functools.partial(  # type: ignore[method-assign]
                self._component_candidates, connection
            )


# The process's mux (``shared_port``): ``UDP_MUX.use(port, addresses)`` at an app's start-up,
# ``UDP_MUX.release()`` at its clean-up, ``UDP_MUX.bind(pc)`` before a server-side
# ``setLocalDescription``, ``UDP_MUX.active`` (None: no mux in this process).
UDP_MUX = ProcessPort("media_udp_port", UdpMux)
