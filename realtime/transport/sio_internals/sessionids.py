"""Engine.IO session ids that name their node (realtime/cluster/route.py): ``<route>.<id>``.

python-engineio makes every session id with ``AsyncServer.generate_id()`` (URL-safe base64 of
random bytes and a counter) and offers no option to shape it; :func:`route_session_ids`
replaces that method on one server instance with one that puts the node's route in front of the
stock id. Only new ids change: Engine.IO looks sessions up by the whole id, whatever it is.
python-socketio makes its own per-namespace ids with the same method, so those carry the route
too (nothing reads them but the server itself).

Relied on, and checked by :func:`session_id_problems` (part of ``checks.check_internals``): the
method's name and signature, ``_handle_connect`` calling it, and stock ids being made of
``[A-Za-z0-9_-]`` only, so the dot after the route is unambiguous.
"""

from __future__ import annotations

import re

import engineio
import engineio.base_server

from realtime.cluster.route import routed_id

_STOCK_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def route_session_ids(eio: engineio.AsyncServer, route: str) -> None:
    """From now on every session id ``eio`` makes begins with ``route`` and a dot."""
    stock = eio.generate_id

    def generate_id() -> str:
        return routed_id(route, stock())

    # An instance attribute: this server only (tests run several nodes in one process).
    setattr(eio, "generate_id", generate_id)  # noqa: B010 (mypy refuses assigning a method)


def session_id_problems() -> list[str]:
    """What changed in how python-engineio makes session ids (checks.check_internals)."""
    problems: list[str] = []
    generate = getattr(engineio.base_server.BaseServer, "generate_id", None)
    if generate is None:
        return ["engineio BaseServer.generate_id is missing"]
    if "generate_id" not in engineio.AsyncServer._handle_connect.__code__.co_names:
        problems.append("engineio AsyncServer._handle_connect no longer calls generate_id")
    probe = engineio.AsyncServer(async_mode="aiohttp")
    ids = [probe.generate_id() for _ in range(64)]
    if not all(isinstance(i, str) and _STOCK_ID.match(i) for i in ids):
        problems.append("engineio session ids are no longer made of [A-Za-z0-9_-] only")
    route_session_ids(probe, "probe")
    if not probe.generate_id().startswith("probe."):
        problems.append("engineio AsyncServer.generate_id can no longer be replaced per server")
    return problems
