"""Requests addressed to one node over the bus, and their answers.

A node asks another (``call``): the request goes on the other node's own channel with an id and
the asker's name; the other node runs the handler registered for its kind in a task of its own
(the bus listener never waits for it) and sends the answer back on the asker's channel. The
asker waits at most ``timeout_s``; a node that does not answer (killed, frozen, cut off) or
that nobody listens for any more is answered ``unavailable``, with a message that says so. A
refused request comes back as the same :class:`HomeroomError` (code, message, reason, details)
it was refused with on the other node; anything else that went wrong there is ``internal``.

Messages are maps, msgpack on the wire (``realtime/bus``):
``{"t": "call", "id", "reply_to", "kind", "body"}`` and ``{"t": "call.reply", "id", "body"}`` or
``{"t": "call.reply", "id", "error": {"code", "message", "details"}}``.
Messages from one node to another arrive in the order sent, so whatever the handler sent to
the asker's node before answering (a live session's effects) is carried out there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from realtime.bus import Bus
from realtime.errors import HomeroomError

log = logging.getLogger(__name__)

# handler(asking node, body) -> the answer's body
CallHandler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def unavailable(node: str, why: str) -> HomeroomError:
    return HomeroomError("unavailable", f"the server running this ({node}) {why}; try again")


def error_from(wire: dict[str, Any]) -> HomeroomError:
    """The error a request was refused with on the other node, as it was."""
    details = dict(wire.get("details") or {})
    reason = details.pop("reason", None)
    try:
        return HomeroomError(str(wire["code"]), str(wire["message"]), reason=reason, **details)
    except (AssertionError, KeyError):
        return HomeroomError("internal", "something went wrong; nothing was changed")


class NodeCalls:
    def __init__(self, bus: Bus, me: str, timeout_s: float) -> None:
        self.bus = bus
        self.me = me
        self.timeout_s = timeout_s
        self.handlers: dict[str, CallHandler] = {}
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._running: set[asyncio.Task[None]] = set()
        # Counters for /metrics: calls made, and those answered unavailable (time-out or gone).
        self.made = 0
        self.unanswered = 0

    async def call(
        self, node: str, kind: str, body: dict[str, Any], *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Ask ``node``; its answer's body, or the error it refused with, or ``unavailable``
        after ``timeout_s`` (default: this node's ``node_request_timeout_s``)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        call_id = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = waiter
        self.made += 1
        message = {"t": "call", "id": call_id, "reply_to": self.me, "kind": kind, "body": body}
        try:
            try:
                listening = await self.bus.send(node, message)
            except ConnectionError:
                self.unanswered += 1
                raise unavailable(node, "cannot be reached (the bus is down)") from None
            if not listening:
                self.unanswered += 1
                raise unavailable(node, "is not running")
            try:
                async with asyncio.timeout(timeout):
                    reply = await waiter
            except TimeoutError:
                self.unanswered += 1
                raise unavailable(node, f"did not answer within {timeout:g} s") from None
        finally:
            self._waiting.pop(call_id, None)
        if "error" in reply:
            raise error_from(reply["error"])
        body_out: dict[str, Any] = reply.get("body") or {}
        return body_out

    async def on_bus(self, message: dict[str, Any]) -> None:
        """A message of this module's from the bus: a request to answer, or an answer."""
        if message.get("t") == "call.reply":
            waiter = self._waiting.get(int(message.get("id", 0)))
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
            return
        task = asyncio.get_running_loop().create_task(self._answer(message))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _answer(self, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"t": "call.reply", "id": message.get("id")}
        try:
            handler = self.handlers.get(str(message.get("kind")))
            if handler is None:
                raise HomeroomError("bad_request", f"no such call {message.get('kind')!r}")
            reply["body"] = await handler(str(message["reply_to"]), message.get("body") or {})
        except HomeroomError as exc:
            reply["error"] = exc.to_ack()["error"]
        except Exception:
            log.exception("a call from node %s failed", message.get("reply_to"))
            reply["error"] = {"code": "internal", "message": "something went wrong"}
        try:
            await self.bus.send(str(message["reply_to"]), reply)
        except (ConnectionError, KeyError) as exc:
            log.warning("an answer to node %s was lost: %s", message.get("reply_to"), exc)

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.cancel()
