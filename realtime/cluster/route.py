"""A node's route: the short key at the start of every Engine.IO session id the node hands out.

A Socket.IO client that falls back to HTTP long-polling sends every request of its session as a
separate HTTP request carrying ``?sid=<session id>``; only the node that made the session knows
it. Each node's session ids therefore begin with the node's route and a dot
(``school-w1.Xk3...``), and the load balancer sends a request with a ``sid`` to the node whose
route it begins with (deploy/nginx/, docs/operations.md "Load balancer"). Requests without a
``sid`` (handshakes, WebSocket-only clients, REST) may go to any node.

The route is the node's name with every character other than ASCII letters, digits, ``-`` and
``_`` turned into ``-``: it stays readable, needs no escaping in a URL or an nginx ``map``, and
Engine.IO's own ids (URL-safe base64) never contain the dot that ends it.
"""

from __future__ import annotations

import re

SEPARATOR = "."
# Long enough for any sensible node name; a bound keeps session ids short.
MAX_ROUTE = 64
_OUTSIDE = re.compile(r"[^A-Za-z0-9_-]")
_ROUTED = re.compile(r"^([A-Za-z0-9_-]{1,64})\.")


def node_route(node_name: str) -> str:
    """The route of the node called ``node_name``."""
    route = _OUTSIDE.sub("-", node_name)[:MAX_ROUTE]
    if not route:
        raise ValueError("a node name is needed for its route")
    return route


def routed_id(route: str, session_id: str) -> str:
    """A session id carrying its node's route."""
    return f"{route}{SEPARATOR}{session_id}"


def route_of(session_id: str) -> str | None:
    """The route a session id carries, or ``None``."""
    m = _ROUTED.match(session_id)
    return m.group(1) if m else None
