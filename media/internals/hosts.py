"""The host addresses aioice gathers ICE candidates on: a process-wide setting, set explicitly.

aioice gathers host candidates from the module function ``aioice.ice.get_host_addresses()``,
which lists every interface address *except loopback*, and has no option for it. The server
needs the list to be a setting (a multi-homed host must not offer its internal interfaces; tests
and single-host set-ups need 127.0.0.1), so :func:`configure_host_addresses` replaces that
module function. It is process-wide by nature (aioice looks it up at gather time), so it is done
explicitly: by the app at start-up (``realtime.app``, from ``ice_host_addresses``), by a test
fixture or a bench, never by constructing an object. Two apps of one process cannot gather on
different addresses: the second one's start-up is refused (:func:`use_host_addresses`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import aioice.ice

_AIOICE_GET_HOST_ADDRESSES: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
_installed: list[str] | None = None


def configure_host_addresses(addresses: Sequence[str] | None) -> None:
    """Gather host candidates only on ``addresses`` (process-wide); None restores aioice's."""
    global _installed
    if addresses is None:
        setattr(aioice.ice, "get_host_addresses", _AIOICE_GET_HOST_ADDRESSES)  # noqa: B010
        _installed = None
        return
    fixed = [str(ipaddress.ip_address(a)) for a in addresses]

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            a
            for a in fixed
            if (use_ipv4 and ipaddress.ip_address(a).version == 4)
            or (use_ipv6 and ipaddress.ip_address(a).version == 6)
        ]

    # aioice looks the function up in its module at gather time, so this takes effect for
    # every connection gathered afterwards.
    setattr(aioice.ice, "get_host_addresses", get_host_addresses)  # noqa: B010
    _installed = fixed


def use_host_addresses(addresses: Sequence[str]) -> None:
    """An app's start-up: gather on ``addresses``, unless this process already gathers on
    others (ValueError: one process cannot do both)."""
    fixed = [str(ipaddress.ip_address(a)) for a in addresses]
    if _installed is None:
        configure_host_addresses(fixed)
    elif _installed != fixed:
        raise ValueError(
            f"ice_host_addresses {','.join(fixed)}: this process already gathers ICE candidates "
            f"on {','.join(_installed)} (aioice's setting is process-wide)"
        )


def host_addresses() -> list[str]:
    """The host addresses ICE currently gathers on (IPv4 and IPv6)."""
    return aioice.ice.get_host_addresses(True, True)
