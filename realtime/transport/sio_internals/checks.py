"""The start-up check of every private name and signature realtime/transport/sio_internals/
relies on, from signatures and compiled code (``co_names``): no source files needed.

:func:`check_internals` is cached: the app factory calls it, once per process does the work.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
from typing import Any

import aiohttp.http_websocket
import bidict
import engineio
import engineio.async_drivers.aiohttp as eio_aiohttp
import engineio.async_socket
import engineio.base_server
import engineio.base_socket
import socketio
import socketio.base_manager
import socketio.base_server
from aiohttp import web
from engineio import packet as eio_packet

from realtime.transport.sio_internals.packets import packet_problems
from realtime.transport.sio_internals.sessionids import session_id_problems

# Exact versions sio_internals/ was written and tested against (pyproject.toml pins the same).
PINNED = {
    "python-socketio": "5.18.1",
    "python-engineio": "4.15.1",
    "aiohttp": "3.14.5",
    "bidict": "0.24.1",
}


class SioInternalsError(RuntimeError):
    """A private internal sio_internals/ relies on is not what it was written against."""


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


# Callables and the parameter names sio_internals/ calls or overrides them with.
_SIGNATURES: tuple[tuple[str, Any, list[str]], ...] = (
    (
        "socketio.AsyncServer._send_packet",
        lambda: socketio.AsyncServer._send_packet,
        ["self", "eio_sid", "pkt"],
    ),
    (
        "socketio.AsyncServer._send_eio_packet",
        lambda: socketio.AsyncServer._send_eio_packet,
        ["self", "eio_sid", "eio_pkt"],
    ),
    (
        "socketio.AsyncServer._handle_event_internal",
        lambda: socketio.AsyncServer._handle_event_internal,
        ["self", "server", "sid", "eio_sid", "data", "namespace", "id"],
    ),
    (
        "socketio.AsyncManager.basic_enter_room",
        lambda: socketio.AsyncManager.basic_enter_room,
        ["self", "sid", "namespace", "room", "eio_sid"],
    ),
    (
        "socketio.AsyncManager.basic_leave_room",
        lambda: socketio.AsyncManager.basic_leave_room,
        ["self", "sid", "namespace", "room"],
    ),
    (
        "socketio.AsyncManager.basic_disconnect",
        lambda: socketio.AsyncManager.basic_disconnect,
        ["self", "sid", "namespace", "kwargs"],
    ),
    (
        "socketio.AsyncManager.get_rooms",
        lambda: socketio.AsyncManager.get_rooms,
        ["self", "sid", "namespace"],
    ),
    (
        "socketio.packet.Packet",
        lambda: socketio.packet.Packet.__init__,
        ["self", "packet_type", "data", "namespace", "id", "binary", "encoded_packet"],
    ),
    (
        "engineio.packet.Packet",
        lambda: eio_packet.Packet.__init__,
        ["self", "packet_type", "data", "encoded_packet"],
    ),
    (
        "engineio.AsyncSocket._websocket_handler",
        lambda: engineio.async_socket.AsyncSocket._websocket_handler,
        ["self", "ws"],
    ),
    ("engineio.AsyncSocket.send", lambda: engineio.async_socket.AsyncSocket.send, ["self", "pkt"]),
    (
        "engineio aiohttp WebSocket",
        lambda: eio_aiohttp.WebSocket.__init__,
        ["self", "handler", "server"],
    ),
    (
        "engineio aiohttp WebSocket.__call__",
        lambda: eio_aiohttp.WebSocket.__call__,
        ["self", "environ"],
    ),
    # shutdown.py: our half of the closing handshake on the connection's own writer, and
    # Engine.IO closing the long-polling connections.
    (
        "aiohttp WebSocketWriter.close",
        lambda: aiohttp.http_websocket.WebSocketWriter.close,
        ["self", "code", "message"],
    ),
    (
        "engineio.AsyncServer.disconnect",
        lambda: engineio.AsyncServer.disconnect,
        ["self", "sid"],
    ),
    # sessionids.py: replaced per server so that every session id names its node.
    (
        "engineio BaseServer.generate_id",
        lambda: engineio.base_server.BaseServer.generate_id,
        ["self"],
    ),
)

# Attributes a function's compiled code must still use (``co_names``): instance attributes that
# exist only after ``__init__`` runs, and the state another method shares with an override.
_CODE_NAMES: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    (
        "engineio BaseSocket.__init__",
        lambda: engineio.base_socket.BaseSocket.__init__,
        ("sid", "upgraded", "upgrading", "closed"),
    ),
    (
        "engineio BaseServer.__init__",
        lambda: engineio.base_server.BaseServer.__init__,
        ("_async", "sockets", "max_http_buffer_size"),
    ),
    (
        "engineio aiohttp WebSocket.__init__",
        lambda: eio_aiohttp.WebSocket.__init__,
        ("handler", "server", "_sock"),
    ),
    (
        "engineio.packet.Packet.__init__",
        lambda: eio_packet.Packet.__init__,
        ("packet_type", "data", "binary"),
    ),
    (
        "socketio BaseServer.__init__",
        lambda: socketio.base_server.BaseServer.__init__,
        ("packet_class", "eio", "manager"),
    ),
    # Acks go through _send_packet (overridden); every room change through the manager's
    # basic_* methods (overridden by the room index).
    (
        "socketio AsyncServer._handle_event_internal",
        lambda: socketio.AsyncServer._handle_event_internal,
        ("_trigger_event", "_send_packet"),
    ),
    (
        "socketio BaseManager.pre_connect",
        lambda: socketio.base_manager.BaseManager.pre_connect,
        ("basic_enter_room",),
    ),
    (
        "socketio AsyncManager.enter_room",
        lambda: socketio.AsyncManager.enter_room,
        ("basic_enter_room",),
    ),
    (
        "socketio AsyncManager.leave_room",
        lambda: socketio.AsyncManager.leave_room,
        ("basic_leave_room",),
    ),
    (
        "socketio AsyncManager.disconnect",
        lambda: socketio.AsyncManager.disconnect,
        ("basic_disconnect",),
    ),
    ("engineio aiohttp WebSocket.send", lambda: eio_aiohttp.WebSocket.send, ("_sock",)),
    ("engineio aiohttp WebSocket.wait", lambda: eio_aiohttp.WebSocket.wait, ("_sock",)),
    # shutdown.py reads ``ws._writer`` (set when the handshake is done) to close and abort.
    (
        "aiohttp WebSocketResponse._post_start",
        lambda: web.WebSocketResponse._post_start,
        ("_writer",),
    ),
    (
        "aiohttp WebSocketWriter.__init__",
        lambda: aiohttp.http_websocket.WebSocketWriter.__init__,
        ("transport", "_closing"),
    ),
    (
        "socketio BaseManager.basic_disconnect",
        lambda: socketio.base_manager.BaseManager.basic_disconnect,
        ("rooms", "basic_leave_room", "callbacks", "pending_connect", "pending_disconnect"),
    ),
    (
        "socketio AsyncServer._send_packet",
        lambda: socketio.AsyncServer._send_packet,
        ("encode", "eio", "send"),
    ),
)


def _problems() -> list[str]:
    problems: list[str] = []
    for dist, pinned in PINNED.items():
        installed = importlib.metadata.version(dist)
        if installed != pinned:
            problems.append(f"{dist} {installed} installed, {pinned} pinned")
    for what, get, params in _SIGNATURES:
        try:
            found = _params(get())
        except (AttributeError, TypeError, ValueError):
            problems.append(f"{what} is missing")
            continue
        if found != params:
            problems.append(f"{what}({', '.join(params[1:])}) is now ({', '.join(found[1:])})")
    for what, get, names in _CODE_NAMES:
        try:
            code_names = set(get().__code__.co_names)
        except AttributeError:
            problems.append(f"{what} is missing")
            continue
        problems.extend(f"{what} no longer uses .{n}" for n in names if n not in code_names)
    problems.extend(_instance_problems())
    problems.extend(packet_problems())
    problems.extend(session_id_problems())
    return problems


def _instance_problems() -> list[str]:
    """What only real (throwaway) objects show: the driver table, a room's bidict."""
    problems: list[str] = []
    eio = engineio.AsyncServer(async_mode="aiohttp")
    driver = getattr(eio, "_async", {}).get("websocket") if isinstance(eio._async, dict) else None
    if not (isinstance(driver, type) and issubclass(driver, eio_aiohttp.WebSocket)):
        problems.append("engineio AsyncServer._async['websocket'] is not the aiohttp WebSocket")
    if not isinstance(getattr(eio, "sockets", None), dict):
        problems.append("engineio AsyncServer.sockets is not a dict")
    if not hasattr(web.WebSocketResponse(), "_writer"):
        problems.append("aiohttp WebSocketResponse._writer is missing")
    manager = socketio.AsyncManager()
    manager.basic_enter_room("s", "/", "r", eio_sid="e")
    room = manager.rooms.get("/", {}).get("r")
    if not isinstance(room, bidict.bidict) or getattr(room, "_fwdm", None) != {"s": "e"}:
        problems.append("socketio manager.rooms[ns][room] is not a bidict with _fwdm {sid: eio}")
    for name in ("callbacks", "pending_connect", "pending_disconnect"):
        if not isinstance(getattr(manager, name, None), dict):
            problems.append(f"socketio manager.{name} is not a dict")
    return problems


@functools.cache
def check_internals() -> None:
    """Raise :class:`SioInternalsError` naming every private name or signature that changed.

    Cached: the first call (the app factory's) does the work, once per process.
    """
    problems = _problems()
    if problems:
        raise SioInternalsError(
            "python-socketio/python-engineio/aiohttp/bidict internals used by "
            "realtime/transport/sio_internals/ have changed: " + "; ".join(problems)
        )
