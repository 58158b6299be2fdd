"""The networks ICE peers may be in: a process-wide setting, set explicitly (like ``hosts``).

aioice checks every remote candidate it is given and answers every connectivity check that
arrives, from wherever. A server meant for one network (a school's LAN), and tests whose
browser runs outside a loopback-only namespace (Chromium offers every interface of the machine
beside 127.0.0.1, and may pick one), need a bound: :func:`configure_peer_networks` makes aioice
ignore remote candidates outside ``networks`` (never checked, so nothing is sent to them) and
connectivity checks arriving from outside (unanswered, so no peer-reflexive candidate is learned
from them). It wraps two of ``aioice.ice.Connection``'s methods, process-wide, as aioice has no
option for it: ``_add_remote_candidate`` (every signalled candidate, mDNS ones once resolved)
and ``request_received`` (every incoming check, on UDP, the shared port and TCP alike).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

import aioice.ice

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_ADD_REMOTE: Callable[..., None] = aioice.ice.Connection._add_remote_candidate
_REQUEST_RECEIVED: Callable[..., None] = aioice.ice.Connection.request_received
_networks: tuple[Network, ...] | None = None


def allowed(host: str) -> bool:
    """Whether a peer at ``host`` (an IP address) may be talked to."""
    if _networks is None:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in n for n in _networks)


def _add_remote_candidate(self: Any, remote_candidate: Any, network_host: str) -> None:
    if allowed(network_host):
        _ADD_REMOTE(self, remote_candidate, network_host)


def _request_received(self: Any, message: Any, addr: tuple[str, int], protocol: Any) -> None:
    if allowed(addr[0]):
        _REQUEST_RECEIVED(self, message, addr, protocol)


def configure_peer_networks(networks: Sequence[Network] | None) -> None:
    """Talk ICE only with peers in ``networks`` (process-wide); None: with anyone."""
    global _networks
    if networks is None:
        setattr(aioice.ice.Connection, "_add_remote_candidate", _ADD_REMOTE)  # noqa: B010
        setattr(aioice.ice.Connection, "request_received", _REQUEST_RECEIVED)  # noqa: B010
        _networks = None
        return
    _networks = tuple(networks)
    setattr(aioice.ice.Connection, "_add_remote_candidate", _add_remote_candidate)  # noqa: B010
    setattr(aioice.ice.Connection, "request_received", _request_received)  # noqa: B010


def use_peer_networks(networks: Sequence[Network]) -> None:
    """An app's start-up: bound the peers to ``networks`` (empty: anyone), unless this process
    already bounds them otherwise (ValueError: one process cannot do both)."""
    wanted = tuple(networks) or None
    if _networks is None and wanted is not None:
        configure_peer_networks(wanted)
    elif _networks != wanted and wanted is not None:
        raise ValueError(
            f"media_peer_networks {','.join(map(str, wanted))}: this process already talks ICE "
            f"only with {','.join(map(str, _networks or ()))} (aioice's setting is process-wide)"
        )
