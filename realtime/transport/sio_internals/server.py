"""The Socket.IO server's and the room manager's overrides of python-socketio's private methods
(acks written directly, a request scope around each handler, one Engine.IO packet per binary
recipient; an index of each connection's rooms)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import socketio
from engineio import packet as eio_packet

from realtime.store.groupcommit import durable_wait
from realtime.transport.sio_internals.direct import DirectSockets

log = logging.getLogger(__name__)


# Requests of one connection in progress at once (waiting for the store or for the disk); the
# connection's next request is read only when fewer are. Each costs a task and its payload.
MAX_PIPELINED = 16


def _forget(pipelined: dict[str, set[asyncio.Task[None]]], eio_sid: str, task: Any) -> None:
    pending = pipelined.get(eio_sid)
    if pending is not None:
        pending.discard(task)
        if not pending:
            del pipelined[eio_sid]


class SocketServer(socketio.AsyncServer):
    """The Socket.IO server, safe for binary (msgpack) broadcasts to mixed transports.

    python-socketio encodes a broadcast once and hands the same Engine.IO packet to every
    recipient; an Engine.IO packet caches its first encoding whatever the transport asked for
    (bytes for WebSocket, base64 text for long-polling). With the msgpack serializer every packet
    is binary, so the first recipient decided what all others got: a polling client after a
    WebSocket one had its poll fail (str + bytes), a WebSocket client after a polling one got
    base64 text. A binary packet therefore goes out as its own Engine.IO packet per recipient;
    the msgpack encoding is still done once, and text (JSON) packets are shared as before.
    """

    direct: DirectSockets | None = None
    # Per connection (Engine.IO id): its requests handled and not answered yet.
    _pipelined: dict[str, set[asyncio.Task[None]]]
    # The events whose handling may overlap the connection's next ones (see below).
    pipelined: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pipelined = {}

    # Client events being handled, acks not yet sent (shutdown waits for them).
    in_flight = 0
    _idle: asyncio.Event | None = None
    # Wraps the handling of each client event, its ack included (Hub.acks_first).
    request_scope: Callable[[], AbstractAsyncContextManager[None]] | None = None

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any
    ) -> None:
        """Handle one client event; return (to read the connection's next one) once it is
        answered, or once all it still waits for is its commit reaching the disk.

        A connection's events are handled one at a time, in order (``async_handlers=False``).
        Waiting for the disk sync (group commit, store/groupcommit.py) as well would cap each
        connection at one request per sync and keep its next requests out of the batch being
        formed; so the event runs in a task, which hands the connection back when it parks on
        the sync. Its transaction is done by then: the next event's transaction still runs after
        it, and acks leave in commit order.

        Only the events in ``pipelined`` (whose work is all in store transactions: chat,
        notices, Q&A) run so; the others (``sync``, live sessions' signalling, whose order
        matters beyond the store) are handled to the end before the next is read.
        """
        self.in_flight += 1
        if not (isinstance(data, list) and data and data[0] in self.pipelined):
            try:
                await self._run(server, sid, eio_sid, data, namespace, id)
            finally:
                self._finished()
            return
        parked = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            self._handle_request(parked, server, sid, eio_sid, data, namespace, id)
        )
        task.add_done_callback(self._request_done)
        pending = self._pipelined.setdefault(eio_sid, set())
        pending.add(task)
        task.add_done_callback(lambda t: _forget(self._pipelined, eio_sid, t))
        await parked
        if len(pending) >= MAX_PIPELINED:
            # A client that sends faster than its requests are stored waits, as before.
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)

    async def _handle_request(
        self,
        parked: asyncio.Future[None],
        server: Any,
        sid: str,
        eio_sid: str,
        data: Any,
        namespace: str,
        id: Any,
    ) -> None:
        def park() -> None:
            if not parked.done():
                parked.set_result(None)

        durable_wait.set(park)  # this task's own context
        try:
            await self._run(server, sid, eio_sid, data, namespace, id)
        finally:
            park()

    async def _run(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any
    ) -> None:
        if self.request_scope is None:
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
            return
        async with self.request_scope():
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)

    def _finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._finished()
        if not task.cancelled() and task.exception() is not None:
            log.error("client event failed", exc_info=task.exception())

    async def idle(self) -> None:
        """Return once no client event is being handled."""
        while self.in_flight:
            self._idle = asyncio.Event()
            await self._idle.wait()

    async def _send_eio_packet(self, eio_sid: str, eio_pkt: Any) -> None:
        if eio_pkt.binary:
            eio_pkt = eio_packet.Packet(eio_pkt.packet_type, eio_pkt.data)
        await super()._send_eio_packet(eio_sid, eio_pkt)

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        """One packet to one connection (acks, mostly): framed and written straight to its
        WebSocket like a broadcast, not queued for a writer task to wake up and send."""
        encoded = pkt.encode()
        if isinstance(encoded, list):  # binary attachments: the stock path
            for part in encoded:
                await self.eio.send(eio_sid, part)
        elif self.direct is None or not await self.direct.write_one(eio_sid, encoded):
            await self.eio.send(eio_sid, encoded)


class IndexedManager(socketio.AsyncManager):
    """python-socketio's room manager, with an index of every connection's rooms.

    The stock manager finds the rooms of a connection that leaves by scanning every room of the
    namespace, and each connection has a room of its own: n connections leaving at once (a
    school's Wi-Fi dropping, a load balancer draining a node) cost n x n steps — measured at
    minutes of a busy event loop for 10,000. With the index a disconnect costs the number of its
    own rooms.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rooms_of: dict[tuple[str, str], set[Any]] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        for room in self._rooms_of.pop((namespace, sid), set()):
            super().basic_leave_room(sid, namespace, room)
        # What the stock method does after leaving the rooms.
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [r for r in self._rooms_of.get((namespace, sid), ()) if r is not None]
