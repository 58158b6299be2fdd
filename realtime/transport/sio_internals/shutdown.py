"""Stopping a node that has clients connected (SIGTERM, or the app's runner cleaning up).

aiohttp first stops accepting connections, then runs ``on_shutdown`` (this), then waits for the
remaining request handlers. A WebSocket handler lives as long as its client, so without this the
process waited for every client to leave. In order, within ``shutdown_timeout_s``:

1. new client requests are refused with ``unavailable`` (nothing changed; send again after
   reconnecting), and every client is told ``shutdown`` (a push: why the connection is ending);
2. requests in flight finish: their transactions commit and their acks go out, so whatever
   was acknowledged is stored, and whatever was stored is acknowledged;
3. every WebSocket is closed with code 1012 ("service restart") and every long-polling
   connection is closed by Engine.IO. Clients see their transport close, which socket.io
   clients (the web app, ``clients/homeroom.py``) answer by reconnecting with backoff, to
   another node or to this one once it is back, and catching up by sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from realtime.transport.sio_internals.server import SocketServer

log = logging.getLogger(__name__)

# WebSocket close code 1012, "Service Restart" (RFC 6455 registry): come back later.
CLOSE_CODE = 1012
CLOSE_REASON = b"server restarting"
SHUTDOWN_PUSH = {
    "code": "unavailable",
    "message": "the server is restarting; reconnecting",
    "reconnect": True,
}
# A long-polling client takes its close packet with its next poll, which is outstanding (or a
# moment away) while it is connected; one that never polls (a bare handshake) must not hold the
# shutdown for the whole time-out.
POLL_GRACE_S = 2.0


async def close_connections(sio: SocketServer, timeout: float) -> None:
    """Steps 2 and 3 of the module docstring (step 1 is the caller's flag), bounded by
    ``timeout`` seconds overall."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if sio.eio.sockets:
        with contextlib.suppress(Exception):
            if sio.direct is not None:
                # Written to each WebSocket now, so it is on the wire before the close frame
                # (Engine.IO's queue would still hold it when the socket closes).
                wire, pkt = sio.direct.encode("shutdown", SHUTDOWN_PUSH)
                await sio.direct.write(wire, pkt, list(sio.eio.sockets))
            else:
                await sio.emit("shutdown", SHUTDOWN_PUSH)
    # Keep a second for the closing itself.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, deadline - 1 - loop.time())):
            await sio.idle()
    if sio.in_flight:
        log.warning("shutdown: %d requests still in flight; closing anyway", sio.in_flight)
    sockets = dict(sio.direct.sockets) if sio.direct is not None else {}
    if sockets:
        # The closing handshake: our close frame out, then each connection's handler reads on
        # until the client's close frame and ends. Closing the socket with the client's last
        # requests still unread would send a reset, and the client would lose what it had not
        # read yet (acks, the push above).
        sending = [asyncio.create_task(_send_close(ws)) for ws in sockets.values()]
        await asyncio.wait(sending, timeout=max(0.1, deadline - 0.5 - loop.time()))
        while loop.time() < deadline - 0.5 and _open(sio, sockets):  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # Engine.IO offers no event to wait for
        for sid in _open(sio, sockets):
            # No answer: drop the connection.
            _abort(sockets[sid])
    # Long-polling connections: Engine.IO closes them (its close packet ends their poll).
    left = [sid for sid, s in list(sio.eio.sockets.items()) if not s.closed and sid not in sockets]
    if left:
        await _close_polling(sio, left, min(POLL_GRACE_S, deadline - loop.time()))
    log.info("shutdown: %d connections closed", len(sockets) + len(left))


async def _close_polling(sio: SocketServer, sids: list[str], grace: float) -> None:
    """Engine.IO's own close (the disconnect handlers run, the close packet is queued), then a
    bounded wait for each client to poll it away."""
    closing = []
    for sid in sids:
        socket = sio.eio.sockets.get(sid)
        if socket is None:
            continue
        with contextlib.suppress(Exception):
            await socket.close(wait=False, reason=sio.eio.reason.SERVER_DISCONNECT)
        sio.eio.sockets.pop(sid, None)
        closing.append(socket)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.1, grace)):
            await asyncio.gather(*(s.queue.join() for s in closing))


def _open(sio: SocketServer, sockets: dict[str, Any]) -> list[str]:
    return [sid for sid, s in list(sio.eio.sockets.items()) if sid in sockets and not s.closed]


async def _send_close(ws: Any) -> None:
    """Our half of the WebSocket closing handshake (aiohttp's ``close()`` from another task
    than the reader would close the socket at once, without reading the client's answer)."""
    writer = ws._writer
    if writer is None or writer._closing:
        return
    try:
        await writer.close(CLOSE_CODE, CLOSE_REASON)
    except Exception:
        _abort(ws)


def _abort(ws: Any) -> None:
    writer = ws._writer
    transport = writer.transport if writer is not None else None
    if transport is not None:
        transport.abort()
