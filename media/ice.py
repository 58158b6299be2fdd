"""ICE settings of the media server: host addresses, announced address, TURN, no STUN default.

* **Host addresses.** aioice gathers host candidates from ``aioice.ice.get_host_addresses()``,
  a module function that lists every interface address *except loopback*. The server needs the
  list to be a setting (a multi-homed host must not offer its internal interfaces; tests and
  single-host setups need 127.0.0.1), and aioice has no option for it, so
  ``media.internals.hosts`` replaces that module function, once per process and explicitly:
  at the app's start-up (:func:`use_host_addresses`), in a test fixture or a bench
  (:func:`configure_host_addresses`; ``None`` restores aioice's own function).
* **Announced address behind 1:1 NAT.** aioice has no such option either; :func:`announce_address`
  adds, to an SDP that aiortc produced, a copy of every host candidate with the public address
  (same port, lower priority): the NAT forwards the public port to the private one.
* **One UDP port.** aioice binds each host candidate on an ephemeral port and has no option
  for it in 0.13; with ``media_udp_port`` set, the app starts a :class:`UdpMux`
  (``media.internals.udp_mux``: one socket per host address, ICE demultiplexed by ufrag) and the
  server's peer connections gather on it (:func:`bind_media_ports`, called by ``signaling``
  before every ``setLocalDescription``).
* **ICE over TCP on one port.** aioice has no TCP half; with ``media_tcp_port`` set, the app
  starts a :class:`TcpMux` (``media.internals.tcp_mux``: one listener per host address, RFC
  4571 framing, each connection demultiplexed by the ufrag of its first Binding request) and the
  server's peer connections add a ``tcptype passive`` host candidate on it, below every UDP one
  in priority (:func:`bind_media_ports`).
* **No STUN default.** aiortc adds Google's public STUN server when ``RTCConfiguration`` has
  ``iceServers=None`` (its default): :func:`rtc_configuration` always passes a list, possibly
  empty.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCPeerConnection

from media.internals.hosts import configure_host_addresses, host_addresses, use_host_addresses
from media.internals.peers import configure_peer_networks, use_peer_networks
from media.internals.tcp_mux import TCP_MUX, TcpMux
from media.internals.udp_mux import UDP_MUX, UdpMux

__all__ = [
    "TCP_MUX",
    "UDP_MUX",
    "TcpMux",
    "TurnServer",
    "UdpMux",
    "announce_address",
    "bind_media_ports",
    "configure_host_addresses",
    "configure_peer_networks",
    "host_addresses",
    "rtc_configuration",
    "turn_credentials",
    "turn_ice_server",
    "use_host_addresses",
    "use_peer_networks",
]


def bind_media_ports(pc: RTCPeerConnection) -> None:
    """Before a server-side ``setLocalDescription``: gather on the node's one UDP port and add
    its TCP candidates, whichever of them the node has (UDP first: the TCP wrapper calls it)."""
    UDP_MUX.bind(pc)
    TCP_MUX.bind(pc)


@dataclass(frozen=True)
class TurnServer:
    """A TURN server using coturn's ``use-auth-secret`` (REST API) credentials."""

    urls: tuple[str, ...]
    secret: str
    ttl: int = 24 * 3600


def rtc_configuration(
    ice_servers: Sequence[RTCIceServer] = (),
    bundle_policy: RTCBundlePolicy = RTCBundlePolicy.MAX_BUNDLE,
) -> RTCConfiguration:
    """An RTCConfiguration with exactly ``ice_servers``; never aiortc's default Google STUN.

    The server bundles everything on one ICE/DTLS transport per peer connection: one port,
    one handshake, one gathering, however many tracks a participant receives.
    """
    return RTCConfiguration(iceServers=list(ice_servers), bundlePolicy=bundle_policy)


def turn_credentials(secret: str, user: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    """coturn REST credentials: username ``"<expiry>:<user>"``, password b64(HMAC-SHA1)."""
    expiry = int(time.time() if now is None else now) + ttl
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def turn_ice_server(turn: TurnServer, user: str, now: float | None = None) -> RTCIceServer:
    """An RTCIceServer entry (for the server's own PCs or for a client) with fresh credentials."""
    username, password = turn_credentials(turn.secret, user, turn.ttl, now)
    return RTCIceServer(urls=list(turn.urls), username=username, credential=password)


def announce_address(sdp: str, public_address: str) -> str:
    """Add a copy of each host candidate with ``public_address`` (1:1 NAT), same port."""
    ipaddress.ip_address(public_address)  # reject garbage early
    out: list[str] = []
    for line in sdp.splitlines():
        out.append(line)
        if not line.startswith("a=candidate:") or " typ host" not in line:
            continue
        bits = line[len("a=candidate:") :].split()
        # foundation component transport priority address port typ host ...
        if len(bits) < 8 or bits[4] == public_address:
            continue
        bits[0] = bits[0] + "n"
        # Lower priority than the real host candidate so direct paths win when they exist.
        bits[3] = str(max(int(bits[3]) - 1000, 1))
        bits[4] = public_address
        out.append("a=candidate:" + " ".join(bits))
    return "\r\n".join(out) + "\r\n"
