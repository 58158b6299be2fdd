"""The nginx configuration for Homeroom nodes behind one load balancer (``homeroom nginx-config``).

What it does, and why (docs/operations.md, "Load balancer"):

* requests without an Engine.IO session id (sign-in, REST, the web app, Socket.IO handshakes,
  WebSocket-only clients) go to any node, the one with the fewest open connections first;
* a request with ``?sid=`` (every request of a long-polling client after its handshake, and its
  upgrade to WebSocket) goes to the node whose route starts the id (realtime/cluster/route.py):
  nginx's open-source build has no cookie stickiness, and hashing the client's address would put
  a whole school behind one NAT address on one node;
* WebSocket upgrades are proxied with the ``Upgrade`` and ``Connection`` headers; long-polling
  responses are not buffered; read timeouts outlast Engine.IO's ping interval;
* passive health: a node that refuses or times out a connection is left out for
  ``fail_timeout`` and the request is tried on the next one (before anything was sent to it, so
  a POST is never sent twice);
* the client's address goes in ``X-Forwarded-For`` (set ``trusted_proxies`` on every node to
  nginx's address), the scheme and host the browser used in ``X-Forwarded-Proto`` and
  ``X-Forwarded-Host`` (Engine.IO compares them with the ``Origin`` of browsers).

The output is an ``http``-level file: Debian's nginx includes ``/etc/nginx/conf.d/*.conf``.
``deploy/nginx/homeroom.conf`` is this output for the example in :data:`EXAMPLE`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from realtime.cluster.route import node_route

# nginx leaves a node out for this long after a failed connection (passive health).
FAIL_TIMEOUT_S = 10
MAX_FAILS = 1
# Longer than Engine.IO's ping interval (25 s) plus its timeout (20 s): an idle WebSocket or a
# long-poll waiting for news is not cut.
READ_TIMEOUT_S = 75
# A dead machine does not refuse, it just does not answer: try the next node soon.
CONNECT_TIMEOUT_S = 2
# One upload chunk (upload_chunk_max_bytes, 16 MiB by default) and its headers.
MAX_BODY = "17m"

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


@dataclass(frozen=True)
class Node:
    """A node as the load balancer sees it: its ``node_name`` and its ``host:port``."""

    name: str
    address: str

    @property
    def route(self) -> str:
        return node_route(self.name)


# The shipped example (deploy/nginx/homeroom.conf): three machines, one node each.
EXAMPLE = (
    Node("school-a", "10.0.0.11:8080"),
    Node("school-b", "10.0.0.12:8080"),
    Node("school-c", "10.0.0.13:8080"),
)


def parse_node(text: str) -> Node:
    """``NAME=HOST:PORT`` (the node's ``node_name`` and where nginx reaches it)."""
    name, sep, address = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"{text!r}: a node is NAME=HOST:PORT")
    return Node(name.strip(), address.strip())


def _check(nodes: list[Node] | tuple[Node, ...]) -> None:
    if not nodes:
        raise ValueError("at least one node")
    routes: dict[str, str] = {}
    for n in nodes:
        m = _ADDRESS.match(n.address)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ValueError(f"node {n.name!r}: {n.address!r} is not HOST:PORT")
        if n.route in routes:
            raise ValueError(
                f"nodes {routes[n.route]!r} and {n.name!r} have the same route {n.route!r}; "
                "give them names that differ in letters or digits"
            )
        routes[n.route] = n.name


def render(
    nodes: list[Node] | tuple[Node, ...],
    *,
    listen: str = "80",
    server_name: str = "_",
) -> str:
    """The configuration file for these nodes."""
    _check(nodes)
    width = max(len(n.address) for n in nodes)
    pool = "\n".join(
        f"    server {n.address:<{width}} max_fails={MAX_FAILS} "
        f"fail_timeout={FAIL_TIMEOUT_S}s;  # {n.name}"
        for n in nodes
    )
    singles = "\n".join(
        f"upstream homeroom_node{i} {{ server {n.address}; keepalive 8; }}  # {n.name}"
        for i, n in enumerate(nodes)
    )
    keys = [f'"~^{n.route}[.]"' for n in nodes]
    rwidth = max(len(k) for k in keys)
    routes = "\n".join(f"    {k:<{rwidth}} homeroom_node{i};" for i, k in enumerate(keys))
    return _TEMPLATE.format(
        count=len(nodes),
        pool=pool,
        singles=singles,
        routes=routes,
        default=f"{'default':<{rwidth}} homeroom;",
        listen=listen,
        server_name=server_name,
        fail_timeout=FAIL_TIMEOUT_S,
        max_fails=MAX_FAILS,
        read_timeout=READ_TIMEOUT_S,
        connect_timeout=CONNECT_TIMEOUT_S,
        max_body=MAX_BODY,
    )


_TEMPLATE = """\
# Homeroom behind nginx: {count} nodes. Made by `homeroom nginx-config` (realtime/cluster/nginx.py);
# what each part is for: docs/operations.md, "Load balancer". An http-level file: on Debian put it
# in /etc/nginx/conf.d/homeroom.conf. Every node: trusted_proxies = "<this nginx's address>".

# Sign-in, REST, the web app and Socket.IO handshakes: any node, the least busy first. A node
# that refuses or times out {max_fails} connection(s) is left out for {fail_timeout} s; the
# request goes to the next one.
upstream homeroom {{
    zone homeroom 64k;
    least_conn;
{pool}
    keepalive 32;
}}

# One per node: every later request of an Engine.IO session goes to the node that holds it.
{singles}

# An Engine.IO session id begins with its node's route and a dot (realtime/cluster/route.py).
map $arg_sid $homeroom_node {{
    {default}
{routes}
}}

map $http_upgrade $homeroom_connection {{
    default upgrade;
    ""      "";
}}

server {{
    listen {listen};
    server_name {server_name};
    # With TLS here instead: listen 443 ssl; ssl_certificate ...; ssl_certificate_key ...;

    client_max_body_size {max_body};

    proxy_http_version 1.1;
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $homeroom_connection;
    proxy_connect_timeout {connect_timeout}s;
    proxy_next_upstream error timeout;

    location /socket.io/ {{
        proxy_pass http://$homeroom_node;
        proxy_buffering off;
        proxy_read_timeout {read_timeout}s;
        proxy_send_timeout {read_timeout}s;
    }}

    location / {{
        proxy_pass http://homeroom;
        proxy_read_timeout {read_timeout}s;
    }}
}}
"""
