"""The Socket.IO gateway: authenticate on connect, route events to actions, follow streams.

Every client event is a request with an acknowledgement: ``{"ok": true, ...}`` or
``{"ok": false, "error": {"code", "message"}}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from realtime import schemas
from realtime.actions import (
    attendance,
    chat,
    homework,
    notices,
    polls,
    questions,
    read_by,
    records,
    sync,
)
from realtime.actions.sync import Following
from realtime.auth import Identity
from realtime.bus import BusHandler
from realtime.cluster.positions import StreamPositions
from realtime.domain.streams import room_name
from realtime.errors import HomeroomError, bad_request
from realtime.gate import Full, Gate
from realtime.hub import Hub
from realtime.metrics import Metrics
from realtime.transport.admission import Busy, ticket_of
from realtime.transport.fanout import Fanout, HistoryFloors
from realtime.transport.sio_internals import SocketServer
from realtime.transport.sio_internals.packets import Unreadable

log = logging.getLogger(__name__)

Action = Callable[[Hub, int, Any], Awaitable[dict[str, Any]]]
# Actions bound to one connection (live sessions): they get the connection id too.
SidAction = Callable[[str, int, Any], Awaitable[dict[str, Any]]]
DisconnectHook = Callable[[str, int], Awaitable[None]]

# event name -> (payload schema, action). The whole client protocol in one table.
ROUTES: dict[str, tuple[type[Any], Action]] = {
    "chat.send": (schemas.ChatSend, chat.send),
    "chat.edit": (schemas.ChatEdit, chat.edit),
    "chat.delete": (schemas.MessageRef, chat.delete),
    "chat.history": (schemas.ChatHistory, chat.history),
    "chat.read": (schemas.ChatRead, chat.mark_read),
    "chat.read_by": (schemas.MessageRef, read_by.read_by),
    "chat.typing": (schemas.Typing, chat.typing),
    "chat.mute": (schemas.Mute, chat.mute),
    "conversation.open": (schemas.OpenConversation, chat.open_conversation),
    "notice.publish": (schemas.NoticePublish, notices.publish),
    "notice.list": (schemas.NoticeList, notices.list_notices),
    "notice.delivered": (schemas.NoticesDelivered, notices.delivered),
    "notice.read": (schemas.NoticeRef, notices.read),
    "notice.confirm": (schemas.NoticeRef, notices.confirm),
    "notice.reply": (schemas.NoticeReply, notices.reply),
    "notice.receipts": (schemas.NoticeReceipts, notices.receipts_rollup),
    "notice.remind": (schemas.NoticeRef, notices.remind),
    "question.ask": (schemas.QuestionAsk, questions.ask),
    "question.edit": (schemas.QuestionEdit, questions.edit),
    "question.withdraw": (schemas.QuestionRef, questions.withdraw),
    "question.vote": (schemas.QuestionVote, questions.vote),
    "question.answer": (schemas.QuestionAnswer, questions.answer),
    "question.dismiss": (schemas.QuestionRef, questions.dismiss),
    "question.reopen": (schemas.QuestionRef, questions.reopen),
    "question.list": (schemas.QuestionList, questions.list_questions),
    "poll.create": (schemas.PollCreate, polls.create),
    "poll.answer": (schemas.PollAnswer, polls.answer),
    "poll.close": (schemas.PollRef, polls.close),
    "poll.publish": (schemas.PollRef, polls.publish),
    "poll.get": (schemas.PollRef, polls.get),
    "poll.list": (schemas.PollList, polls.list_polls),
    "attendance.report": (schemas.LessonRef, attendance.report),
    "attendance.correct": (schemas.AttendanceCorrect, attendance.correct),
    "record.student": (schemas.StudentRecordQuery, records.student_record),
    "record.class": (schemas.ClassRecordQuery, records.class_record),
    "record.digest": (schemas.ClassRef, records.send_digest),
    "homework.assign": (schemas.HomeworkAssign, homework.assign),
    "homework.submit": (schemas.HomeworkSubmit, homework.submit),
    "homework.review": (schemas.HomeworkReview, homework.review),
    "homework.rollup": (schemas.HomeworkRef, homework.rollup),
    "homework.remind": (schemas.HomeworkRef, homework.remind),
    "homework.list": (schemas.HomeworkList, homework.list_homework),
}


class Gateway:
    """Owns the Socket.IO server's handlers and who is connected on this node."""

    def __init__(self, hub: Hub, sio: socketio.AsyncServer, metrics: Metrics) -> None:
        self.hub = hub
        self.sio = sio
        self.metrics = metrics
        self.fanout = Fanout(sio, metrics, hub.settings.client_buffer_bytes)
        if isinstance(sio, SocketServer):
            sio.request_scope = hub.acks_first
            # Their work is all in store transactions: they may overlap a connection's next
            # requests while they wait for the disk (transport/fanout.py).
            sio.pipelined = frozenset(ROUTES)
        self.identities: dict[str, Identity] = {}
        self.rooms: dict[str, set[str]] = {}
        self.sids_by_user: dict[int, set[str]] = {}
        self.sid_routes: dict[str, tuple[type[Any], SidAction]] = {}
        self.disconnect_hooks: list[DisconnectHook] = []
        # Other kinds of bus message (``t``) and who handles them (live sessions across nodes).
        self.bus_routes: dict[str, BusHandler] = {}
        # The streams followed on this node and what was delivered of each: the bus and the
        # follower (realtime/cluster/follower.py) both deliver through it, each event once.
        self.positions = StreamPositions()
        # Where a connection sees a stream only from a point on (a guardian approved later):
        # the fan-out gives it only the number of an event about a message before that point.
        self.floors = HistoryFloors()
        self._event_counters: dict[str, Any] = {}
        # Set when the node is shutting down (transport/sio_internals/shutdown.py): requests
        # are refused.
        self.closing = False
        # When the last client request arrived (time.monotonic): the garbage collector's
        # maintenance waits for a quiet moment (realtime/collector.py).
        self.last_event_at = time.monotonic()
        # Catch-ups (``sync``) in progress at once on this node, the rest waiting their turn
        # (a storm of reconnections: each reads the store for every stream followed).
        s = hub.settings
        self.syncs = Gate(s.sync_concurrency, s.handshake_queue, s.handshake_wait_s)
        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        sio.on("*", self.on_event)

    # --- connection ---------------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        ticket = ticket_of(environ)
        try:
            identity = self.hub.tokens.verify(token)
        except HomeroomError as exc:
            if ticket is not None:
                ticket.release()
            self.metrics.errors.labels(exc.code).inc()
            # Two arguments: the client's connect_error gets {"message", "data": {code, message}}
            # (err.message / err.data in socket.io-client). One dict argument would arrive as
            # its Python repr inside "message", and no client could read the code.
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, exc.to_ack()["error"]
            ) from None
        if ticket is not None:
            ticket.release()  # its handshake is over: the next one may start
        self.identities[sid] = identity
        self.rooms[sid] = set()
        self.sids_by_user.setdefault(identity.user_id, set()).add(sid)
        self.metrics.connections.inc()

    async def on_disconnect(self, sid: str, *args: Any) -> None:
        identity = self.identities.pop(sid, None)
        self.floors.forget(sid)
        for stream in _streams(self.rooms.pop(sid, set())):
            self.positions.unfollow(stream)
        if identity is None:
            return
        self.metrics.connections.dec()
        for hook in self.disconnect_hooks:
            try:
                await hook(sid, identity.user_id)
            except Exception:
                log.exception("disconnect hook failed")
        sids = self.sids_by_user.get(identity.user_id)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self.sids_by_user[identity.user_id]

    # --- requests -----------------------------------------------------------------------------

    async def on_event(self, event: str, sid: str, data: Any = None, *extra: Any) -> dict[str, Any]:
        started = time.perf_counter()
        self.last_event_at = time.monotonic()
        try:
            identity = self.identities.get(sid)
            if identity is None:
                raise HomeroomError("unauthorized", "not connected")
            if self.closing:
                raise HomeroomError(
                    "unavailable", "the server is restarting; send again once reconnected"
                )
            if isinstance(event, Unreadable):
                raise bad_request(event.reason)
            if extra:
                raise bad_request("an event carries one payload object")
            if event == "sync":
                result = await self.sync(sid, identity, schemas.parse(schemas.Sync, data))
            elif event in self.sid_routes:
                schema, sid_action = self.sid_routes[event]
                result = await sid_action(sid, identity.user_id, schemas.parse(schema, data))
            else:
                route = ROUTES.get(event)
                if route is None:
                    raise bad_request(f"unknown event {event[:60]!r}")
                schema, action = route
                result = await action(self.hub, identity.user_id, schemas.parse(schema, data))
            self._count(event)
            return {"ok": True, **result}
        except HomeroomError as exc:
            self.metrics.errors.labels(exc.code).inc()
            return exc.to_ack()
        except Exception:
            log.exception("event %s failed", event)
            self.metrics.errors.labels("internal").inc()
            return HomeroomError("internal", "something went wrong; nothing was changed").to_ack()
        finally:
            self.metrics.ack_latency.observe(time.perf_counter() - started)

    def _count(self, event: str) -> None:
        """One more answered request of this kind (prometheus' labelled child, kept)."""
        counter = self._event_counters.get(event)
        if counter is None:
            known = event in ROUTES or event in self.sid_routes or event == "sync"
            counter = self.metrics.events.labels(event if known else "other")
            if known:
                self._event_counters[event] = counter
        counter.inc()

    async def sync(self, sid: str, identity: Identity, req: schemas.Sync) -> dict[str, Any]:
        try:
            ticket = await self.syncs.enter()
        except Full as full:
            raise Busy(full.retry_after_s) from None
        async with ticket:
            return await self._sync(sid, identity, req)

    async def _sync(self, sid: str, identity: Identity, req: schemas.Sync) -> dict[str, Any]:
        # Enter the rooms before reading: an event committed meanwhile arrives live or in the
        # read, maybe both; clients drop what they already have by (stream, seq).
        following = await sync.follows(self.hub, identity.user_id, list(req.cursors))
        await self._set_rooms(sid, following)
        caught = await sync.catch_up(self.hub, identity.user_id, following, dict(req.cursors))
        for entry in caught["streams"]:
            self.positions.caught_up(entry["stream"], entry["last_seq"])
        return caught

    async def _set_rooms(self, sid: str, following: Following) -> None:
        wanted = {room_name(k, v) for k, v in following.streams.items()}
        current = self.rooms.get(sid)
        if current is None:
            return  # disconnected meanwhile
        # The floors are in place before the connection enters a room: nothing about a message
        # before its floor can reach it in between.
        self.floors.set(sid, following.floors)
        for room in current - wanted:
            await self.sio.leave_room(sid, room)
        for room in wanted - current:
            await self.sio.enter_room(sid, room)
        if self.rooms.get(sid) is not current:
            return  # disconnected (or moved on) meanwhile: its streams are not followed here
        self.rooms[sid] = wanted
        before, after = _streams(current), _streams(wanted)
        for stream in after - before:
            self.positions.follow(stream)
        for stream in before - after:
            self.positions.unfollow(stream)

    async def follow_extra(self, sid: str, keys: list[str]) -> None:
        """Add streams (a live session's Q&A) to what a connection follows."""
        identity = self.identities.get(sid)
        if identity is None:
            return
        following = await sync.follows(self.hub, identity.user_id, keys)
        current = _streams(self.rooms.get(sid, set()))
        keep = {k: v for k, v in following.streams.items() if k in current or k in keys}
        await self._set_rooms(sid, Following(keep, following.floors))

    # --- bus ----------------------------------------------------------------------------------

    async def on_bus(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == "events":
            await self.deliver(message["events"])
        elif kind == "eph":
            skip = list(self.sids_by_user.get(message.get("skip_user") or -1, ()))
            await self.fanout.deliver_ephemeral(
                message["rooms"], message["event"], message["data"], skip
            )
        elif kind == "resync":
            await self._resync(int(message["user"]))
        elif kind == "resync_all":
            # The bus was cut off (realtime/bus/redis.py): events may have been missed by
            # anyone here; every client catches up by sequence.
            await self.sio.emit("resync", {})
        elif kind in self.bus_routes:
            await self.bus_routes[kind](message)

    async def deliver(self, events: list[dict[str, Any]], recovered: bool = False) -> None:
        """Committed events (bus form) to this node's followers, each (stream, seq) once
        whether the bus or the follower brings it (``recovered``: the follower)."""
        first = self.positions.first_delivery
        fresh = [e for e in events if first(e["stream"], e["seq"], recovered=recovered)]
        if fresh:
            await self.fanout.deliver_events(fresh, self.floors)

    async def _resync(self, user_id: int) -> None:
        """This person's streams changed: refresh their rooms and ask their clients to sync."""
        for sid in list(self.sids_by_user.get(user_id, ())):
            current = _streams(self.rooms.get(sid, set()))
            following = await sync.follows(self.hub, user_id, sorted(current))
            await self._set_rooms(sid, following)
            await self.sio.emit("resync", {}, to=sid)


def _streams(rooms: set[str]) -> set[str]:
    """The streams of a connection's rooms (``stream#visibility``)."""
    return {r.rsplit("#", 1)[0] for r in rooms}
