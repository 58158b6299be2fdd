"""A node's one media port (``udp_mux``'s UDP socket, ``tcp_mux``'s TCP listener), per host
address, shared by every server-side ICE connection of the process.

:class:`SharedPort` is what both have in common: the port and host addresses checked, one
endpoint opened per address (an address that cannot be bound is skipped, as aioice skips it;
none at all is an error), and :meth:`SharedPort.bind`, which hands each ICE connection of one
``RTCPeerConnection`` (aiortc's private ``__iceTransports``) to the subclass;
:class:`ConnectionView`, one ICE connection's datagram transport on such an endpoint.
:class:`ProcessPort` keeps one of them per process, like aioice's host addresses (``hosts``):
the first app of the process that asks for it starts it, apps asking for the same port share
it, another port is refused, and the last app's clean-up closes it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import aioice.ice
from aioice.candidate import Candidate, candidate_foundation
from aioice.ice import StunProtocol
from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)


class _Endpoint(Protocol):
    sockname: tuple[str, int]
    by_ufrag: dict[str, Any]

    def register(self, view: Any) -> None: ...

    def forget(self, view: Any) -> None: ...


class ConnectionView(asyncio.DatagramTransport):
    """One ICE connection's view of a shared endpoint, as the datagram transport of its aioice
    ``StunProtocol``: closing it closes only that connection's part (:meth:`_release`)."""

    def __init__(self, endpoint: _Endpoint, protocol: Any, ufrag: str) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.protocol = protocol
        self.ufrag = ufrag
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self.endpoint.sockname
        # No "socket": aioice would set its buffer size on the shared one.
        return default

    def is_closing(self) -> bool:
        return self._closing

    def _release(self) -> None:
        """What closing gives back besides the endpoint's entries (the subclass's)."""

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.endpoint.forget(self)
        self._release()
        asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


E = TypeVar("E", bound=_Endpoint)


class SharedPort(Generic[E]):
    """One endpoint (``E``) per host address on ``port``; ``kind`` names it in messages."""

    kind = ""

    def __init__(self, port: int, addresses: Sequence[str]) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"media {self.kind} port {port}: must be 1-65535")
        self.port = port
        self.addresses = [str(ipaddress.ip_address(a)) for a in addresses]
        if not self.addresses:
            raise ValueError(f"media {self.kind} port: no host address to listen on")
        self.endpoints: dict[str, E] = {}

    async def _open(self, address: str) -> E:
        """The endpoint on ``address`` (OSError if it cannot be bound)."""
        raise NotImplementedError

    def _bind_connection(self, connection: aioice.ice.Connection) -> None:
        """Make one ICE connection gather on this port (idempotent)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        for address in self.addresses:
            try:
                self.endpoints[address] = await self._open(address)
            except OSError as exc:
                # As aioice does for a host address it cannot bind (e.g. a link-local IPv6
                # address): no candidate there. All of them failing is an error (below).
                logger.warning("media %s port %s on %s: %s", self.kind, self.port, address, exc)
        if not self.endpoints:
            raise OSError(
                f"media {self.kind} port {self.port}: could not bind it on any host address"
            )

    @property
    def connections(self) -> int:
        """ICE connections currently with a candidate on this port (by their ufrag)."""
        return len({u for e in self.endpoints.values() for u in e.by_ufrag})

    def endpoint(self, address: str) -> E | None:
        return self.endpoints.get(str(ipaddress.ip_address(address)))

    def bind(self, pc: RTCPeerConnection) -> None:
        """Gather the candidates of ``pc``'s ICE connections on this port (idempotent)."""
        for ice_transport in pc._RTCPeerConnection__iceTransports:  # type: ignore[attr-defined]
            self._bind_connection(ice_transport.iceGatherer._connection)


def add_host_candidate(
    connection: aioice.ice.Connection,
    view: ConnectionView,
    component: int,
    transport: str,
    priority: int,
    tcptype: str | None = None,
) -> Candidate:
    """Give ``connection`` the protocol of ``view`` (aioice's ``_protocols``), with a host
    candidate on the address and port of the view's shared endpoint."""
    protocol: StunProtocol = view.protocol
    view.endpoint.register(view)
    protocol.connection_made(view)
    host, port = view.endpoint.sockname
    protocol.local_candidate = Candidate(
        foundation=candidate_foundation("host", transport, host),
        component=component,
        transport=transport,
        priority=priority,
        host=host,
        port=port,
        type="host",
        tcptype=tcptype,
    )
    connection._protocols.append(protocol)
    return protocol.local_candidate


P = TypeVar("P", bound=SharedPort[Any])


class ProcessPort(Generic[P]):
    """The process's one ``P`` (started by :meth:`use`, closed by the last :meth:`release`)."""

    def __init__(self, setting: str, make: Callable[[int, Sequence[str]], P]) -> None:
        self.setting = setting
        self.make = make
        self.active: P | None = None
        self.users = 0

    async def use(self, port: int, addresses: Sequence[str]) -> P:
        """An app's start-up: the port, started once, shared by apps asking for the same one
        (ValueError for another port)."""
        if self.active is None:
            shared = self.make(port, addresses)
            await shared.start()
            self.active = shared
        elif self.active.port != port:
            raise ValueError(
                f"{self.setting} {port}: this process already receives media on {self.active.port}"
            )
        self.users += 1
        return self.active

    def release(self) -> None:
        """An app's clean-up: the last app of the process closes the port."""
        if self.active is None:
            return
        self.users -= 1
        if self.users <= 0:
            self.active.close()
            self.active = None
            self.users = 0

    def bind(self, pc: RTCPeerConnection) -> None:
        """Before a server-side ``setLocalDescription``: gather on the port, if any."""
        if self.active is not None:
            self.active.bind(pc)
