"""Admission control: a bounded number of new connections in their handshake at once per node.

A handshake is what a new Socket.IO connection costs before it is served: the HTTP request that
opens its Engine.IO session (the WebSocket upgrade, or the first long-poll) and the Socket.IO
connect with its token; then its catch-up ``sync``, which reads the store for every stream
followed. When a node dies, all of its clients reconnect to the others within a second or two.
Unbounded, every handshake and catch-up starts at once, each progresses a little at a time on
the one event loop and in the database pool, they all finish late together, and those whose
connect times out start again: the work done for them is lost (a thundering herd; 2,000 clients
took 82 s onto one worker), and the pool's waiters were answered ``database_unreachable``.

Here at most ``limit`` handshakes are in progress; up to ``queue`` more wait their turn in order
(each at most ``wait_s``, then refused); beyond that a new one is refused at once. A refusal is
HTTP 503 with ``Retry-After`` and the body ``unavailable`` / ``server_busy`` / ``retry_after_s``,
the wait estimated from the backlog and the rate handshakes have been finishing at, so refused
clients come back spread over the time the node needs rather than all together (clients add
their own jitter). Only requests that open a new Engine.IO session are counted; the requests of
an open session (polls, posts, its upgrade) pass.

A handshake's place is a ticket of a :class:`realtime.gate.Gate`, held from its HTTP request
until the Socket.IO connect is answered (or refused), or ``HOLD_S`` passed (a client that never
connects cannot keep a place). The catch-ups have a gate of their own in the gateway
(``sync_concurrency``, the same queue and wait; refused ``server_busy`` too): a ``sync`` waits
its turn on the server, so neither gate holds a place while a slow client is on its way (a
place held across the client's round trips left the node idle while 2,000 clients queued).

A request whose client has closed its connection by the time it is admitted (it timed out
while it waited) is answered without a handshake, so its place goes to the next (a catch-up
waiting its turn is cancelled with its connection already).

Memory: a waiting handshake is a pending HTTP request (its socket and a future): ``queue`` x a
few KiB at most.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from realtime.errors import HomeroomError
from realtime.gate import Full, Gate, Ticket

# A handshake that has not connected this long after admission gives its place back.
HOLD_S = 10.0


def handshake_gate(limit: int, queue: int, wait_s: float) -> Gate:
    return Gate(limit, queue, wait_s, hold_s=HOLD_S)


class Busy(HomeroomError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "unavailable",
            "the server is busy with other connections; try again shortly",
            reason="server_busy",
            retry_after_s=retry_after_s,
        )


# The node's gate of handshakes, on its app.
HANDSHAKES = web.AppKey("handshakes", Gate)
# Where the admitted handshake's ticket is kept on its HTTP request (the Socket.IO connect
# finds it through the Engine.IO environ: :func:`ticket_of`).
TICKET = web.RequestKey("handshake_ticket", Ticket)


def opens_session(request: web.Request, path: str) -> bool:
    """Whether this request opens a new Engine.IO session (no ``sid`` yet) on ``path``."""
    return request.path.rstrip("/") == path and "sid" not in request.query


def middleware(gate: Gate, path: str = "/socket.io") -> Any:
    """The aiohttp middleware that admits (or queues, or refuses) every new session."""
    from realtime.transport.rest import error_response  # (rest imports much of the app)

    @web.middleware
    async def admit(request: web.Request, handler: Any) -> web.StreamResponse:
        if not opens_session(request, path):
            return await handler(request)
        if gone(request):
            return error_response(Busy(1))  # to no one: the client gave up waiting
        try:
            ticket = await gate.enter()
        except Full as full:
            return error_response(Busy(full.retry_after_s))
        if gone(request):
            ticket.release()
            return error_response(Busy(1))
        request[TICKET] = ticket
        try:
            response: web.StreamResponse = await handler(request)
        except BaseException:
            ticket.release()
            raise
        # A long-poll opening answers at once (200) and the connect follows in its own
        # requests: the ticket stays. Otherwise (a WebSocket, closed by now; a refusal) it goes.
        if response.status != 200:
            ticket.release()
        return response

    return admit


def gone(request: web.Request) -> bool:
    """Whether the client of this request has closed its connection. In a storm a request can
    wait seconds in the node's loop or queue, and a client that timed out meanwhile will not
    read its answer: no handshake is started for it (its place goes to the next)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def ticket_of(environ: dict[str, Any]) -> Ticket | None:
    """The ticket of the handshake whose Engine.IO environ this is (python-engineio's aiohttp
    driver keeps the request under ``aiohttp.request``), if it was admitted here."""
    request = environ.get("aiohttp.request")
    if not isinstance(request, web.Request):
        return None
    return request.get(TICKET)
