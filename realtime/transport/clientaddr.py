"""The client's address: the peer, or behind trusted proxies the address they forwarded.

``X-Forwarded-For`` is believed only when the peer is one of the configured trusted proxies
(setting ``trusted_proxies``); then the address is the rightmost entry that is not itself a
trusted proxy (entries left of it were written by the client and may be forged). Without the
setting, the header is ignored: anyone could send it.
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddresses:
    def __init__(self, trusted_proxies: str) -> None:
        self.trusted: list[Network] = [
            ipaddress.ip_network(p.strip(), strict=False)
            for p in trusted_proxies.split(",")
            if p.strip()
        ]

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str:
        peer = peer or "unknown"
        if not self.trusted or not forwarded_for or not self._is_trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer  # a malformed entry: fall back to what we know
        return peer
