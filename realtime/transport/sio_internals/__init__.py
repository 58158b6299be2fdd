"""Every touch of python-socketio's, python-engineio's, aiohttp's and bidict's private internals.

The broadcast and ack path needs four things these libraries do not offer publicly:

* **Direct writes** (:class:`DirectSockets`). The stock path queues a packet per recipient, wakes
  one writer task per connection and frames each message separately. A broadcast is encoded and
  framed once here and the same bytes are written straight to every recipient's transport: no
  task, no await. It reads engineio's ``AsyncServer._async['websocket']`` (the aiohttp driver,
  subclassed to record each connection's ``WebSocketResponse`` and to refuse permessage-deflate),
  ``AsyncServer.sockets`` and each socket's ``upgraded``/``upgrading``, and aiohttp's
  ``WebSocketResponse._writer`` with the writer's ``transport`` and ``_closing``.
* **Room members** (:meth:`DirectSockets.participants`): python-socketio keeps a room as a
  ``bidict`` of Socket.IO id to Engine.IO id; its forward dict ``_fwdm`` is read directly.
* **Acks and request scope** (:class:`SocketServer`): overrides of ``AsyncServer._send_packet``
  (an ack is written like a broadcast), ``_send_eio_packet`` (a binary packet per recipient) and
  ``_handle_event_internal`` (the hub's request scope around a handler and its ack).
* **The room index** (:class:`IndexedManager`): overrides of the manager's ``basic_*`` methods,
  reproducing what the stock ``basic_disconnect`` does to ``callbacks`` and ``pending_*``.

The four libraries are pinned exactly in pyproject.toml. ``checks.check_internals`` (run by the
app factory, cached) checks the installed versions and every name and signature used here, from
signatures and compiled code (no source needed), and names what changed.
``tests/test_sio_internals.py`` compares the bytes written here with the libraries' own path.

* **Session ids that name their node** (``sessionids``): engineio's ``generate_id`` replaced on
  the server instance, so that a load balancer can send every long-polling request of a session
  to the node that holds it (realtime/cluster/route.py).
* **Stopping** (``shutdown``): on SIGTERM every connection is told ``shutdown`` and closed with
  WebSocket code 1012 through aiohttp's writer (``_writer.close``, ``transport.abort``), after
  the requests in flight (tracked by :class:`SocketServer`) are answered.

Modules: ``checks`` (pins and the start-up check), ``direct`` (framing and direct writes),
``server`` (the server's and the room manager's overrides), ``sessionids`` (routed session
ids), ``shutdown`` (closing every connection on SIGTERM). Nothing outside this package
touches these libraries' private parts.
"""

from __future__ import annotations

from realtime.transport.sio_internals.checks import PINNED, SioInternalsError, check_internals
from realtime.transport.sio_internals.direct import DirectSockets, frame, message_frame
from realtime.transport.sio_internals.server import IndexedManager, SocketServer
from realtime.transport.sio_internals.sessionids import route_session_ids

__all__ = [
    "PINNED",
    "DirectSockets",
    "IndexedManager",
    "SioInternalsError",
    "SocketServer",
    "check_internals",
    "frame",
    "message_frame",
    "route_session_ids",
]
