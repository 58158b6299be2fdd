"""The live sessions this node runs, and the transport that carries their effects out.

A request arrives over Socket.IO with a connection (sid) and a user; everything below the
connection bookkeeping is addressed by (session, participant): the rules answer with effects
(``realtime/domain/live_protocol.py``), stored changes go through ``realtime/actions/live.py``,
media requests go to the session's :class:`LiveRuntime`, and :meth:`LiveService.carry_out` turns
the effects into Socket.IO emits, room membership and media work. A session's media runs on the
node that started it; its row in the store (and the ``session.started`` / ``session.ended`` events
in the class streams) is what every node sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import socketio

from media.ice import TurnServer, rtc_configuration, turn_credentials
from realtime.actions import attendance
from realtime.actions import live as actions
from realtime.actions.access import class_access
from realtime.domain import live_protocol as protocol
from realtime.domain.live import LiveSession
from realtime.domain.live_protocol import (
    DropMedia,
    Effect,
    Follow,
    SyncMedia,
    Tell,
    TellSession,
    Unfollow,
)
from realtime.errors import HomeroomError, bad_request, forbidden, not_found
from realtime.hub import Hub
from realtime.live import schemas as s
from realtime.live.runtime import LiveRuntime, MediaOptions
from realtime.transport.socket import Gateway
from signaling import CodecPolicy, SignalingError

SidHandler = Callable[[str, int, Any], Awaitable[dict[str, Any]]]
Request = Callable[[int, Any], Awaitable[dict[str, Any]]]


def _room(session_id: int) -> str:
    return f"live:{session_id}"


class LiveService:
    """The sessions this node runs: their runtimes, and who is connected to each, by sid."""

    def __init__(self, hub: Hub, gateway: Gateway) -> None:
        self.hub = hub
        self.gateway = gateway
        self.sio: socketio.AsyncServer = gateway.sio
        self.runtimes: dict[int, LiveRuntime] = {}
        # session id -> participant -> the Socket.IO connection their session events go to.
        self.connections: dict[int, dict[int, str]] = {}
        # (session id, participant) -> the end of the grace period after their connection dropped.
        self.grace: dict[tuple[int, int], asyncio.Task[None]] = {}
        settings = hub.settings
        self.turn = (
            TurnServer(
                tuple(u.strip() for u in settings.turn_urls.split(",") if u.strip()),
                settings.turn_secret,
                settings.turn_ttl_s,
            )
            if settings.turn_urls and settings.turn_secret
            else None
        )
        self.media = MediaOptions(
            codecs=CodecPolicy("H264" if settings.video_codec.upper() == "H264" else "VP8"),
            configuration=lambda: rtc_configuration(),
            public_address=settings.ice_public_address or None,
        )
        self._idle_task: asyncio.Task[None] | None = None
        self.node = settings.node_name or f"{socket.gethostname()}:{settings.port}"
        # Requests addressed by (session, participant): none needs the asker's connection, so
        # any node could hand them to the session's node (issue #12). Join binds a connection.
        self.requests: dict[str, tuple[type[Any], Request]] = {
            "session.leave": (s.SessionRef, self.leave),
            "session.end": (s.SessionRef, self.end),
            "classroom.link": (s.LinkClassroom, self.link),
            "rtc.publish": (s.Publish, self.publish),
            "rtc.subscribe": (s.SessionRef, self.subscribe),
            "rtc.answer": (s.Answer, self.answer),
            "rtc.ice": (s.Ice, self.ice),
            "host.transfer": (s.Person, self.transfer_host),
        }
        for event, (schema, _rule) in protocol.RULES.items():
            self.requests[event] = (schema, functools.partial(self._rule, event))
        routes: dict[str, tuple[type[Any], SidHandler]] = {
            "session.start": (s.SessionStart, self.start),
            "session.list": (s.SessionList, self.list_live),
            "session.join": (s.SessionRef, self.join),
        }
        for event, (schema, _handler) in self.requests.items():
            routes[event] = (schema, functools.partial(self._request, event))
        gateway.sid_routes.update(routes)
        gateway.disconnect_hooks.append(self.on_disconnect)

    # --- carrying effects out ---------------------------------------------------------------

    def runtime(self, session_id: int) -> LiveRuntime:
        rt = self.runtimes.get(session_id)
        if rt is None or rt.session.ended:
            raise not_found("no such live session on this server (it may have ended)")
        return rt

    async def tell(self, session_id: int, user_id: int, event: str, data: dict[str, Any]) -> None:
        sid = self.connections.get(session_id, {}).get(user_id)
        if sid is not None:
            await self.sio.emit(event, data, to=sid)

    async def carry_out(self, session_id: int, effects: list[Effect]) -> None:
        """Do what the rules said, in order.

        Media effects belong to the node that runs the session's media; the others to the node
        holding the participant's connection. Both are this node today; carried over the bus
        (issue #12), a session's node would do the first half and publish the second.
        """
        rt = self.runtimes.get(session_id)
        if rt is not None and any(
            isinstance(e, TellSession) and e.event == "session.state" for e in effects
        ):
            # Who is there, with a hand up, on stage: the lesson's attendance record.
            await attendance.observe(self.hub, rt.session)
        for effect in effects:
            if isinstance(effect, (DropMedia, SyncMedia)):
                await self._media_effect(session_id, effect)
            else:
                await self._connection_effect(session_id, effect)

    async def _media_effect(self, session_id: int, effect: DropMedia | SyncMedia) -> None:
        rt = self.runtimes.get(session_id)
        if rt is None:
            return
        if isinstance(effect, DropMedia):
            await rt.drop_legs(effect.user_id)
        else:
            await rt.refresh()

    async def _connection_effect(
        self, session_id: int, effect: Tell | TellSession | Follow | Unfollow
    ) -> None:
        conns = self.connections.setdefault(session_id, {})
        if isinstance(effect, Tell):
            await self.tell(session_id, effect.user_id, effect.event, effect.data)
        elif isinstance(effect, TellSession):
            await self.sio.emit(effect.event, effect.data, to=_room(session_id))
        elif isinstance(effect, Follow):
            sid = conns.get(effect.user_id)
            if sid is not None:
                await self.sio.enter_room(sid, _room(session_id))
                if effect.qa_streams:
                    await self.gateway.follow_extra(sid, effect.qa_streams)
        else:
            task = self.grace.pop((session_id, effect.user_id), None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            sid = conns.pop(effect.user_id, None)
            if sid is not None:
                with contextlib.suppress(Exception):
                    await self.sio.leave_room(sid, _room(session_id))

    async def handle(self, event: str, user_id: int, req: Any) -> dict[str, Any]:
        """A request addressed by (session, participant): signalling, hands, stage, lobby,
        moderation, leaving, ending, linking. Nothing here needs the asker's connection."""
        return await self.requests[event][1](user_id, req)

    async def _request(self, event: str, sid: str, user_id: int, req: Any) -> dict[str, Any]:
        return await self.handle(event, user_id, req)

    async def _rule(self, event: str, user_id: int, req: Any) -> dict[str, Any]:
        """A request the rules decide alone (hands, stage, lobby, moderation, self-mute)."""
        rt = self.runtime(req.session_id)
        outcome = protocol.RULES[event][1](rt.session, user_id, req)
        await self.carry_out(rt.session.id, outcome.effects)
        return outcome.reply

    def ice_servers(self, user_id: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        stun = [u.strip() for u in self.hub.settings.stun_urls.split(",") if u.strip()]
        if stun:
            out.append({"urls": stun})
        if self.turn is not None:
            username, credential = turn_credentials(self.turn.secret, str(user_id), self.turn.ttl)
            out.append(
                {"urls": list(self.turn.urls), "username": username, "credential": credential}
            )
        return out

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, sid: str, user_id: int, req: s.SessionStart) -> dict[str, Any]:
        session = await actions.start(self.hub, user_id, req, self.node)
        self._run(session)
        return {"session": session.summary()}

    def _run(self, session: LiveSession) -> LiveRuntime:
        sid_ = session.id

        async def tell(user_id: int, event: str, data: dict[str, Any]) -> None:
            await self.tell(sid_, user_id, event, data)

        rt = LiveRuntime(session, self.media, tell)
        self.runtimes[session.id] = rt
        self.connections[session.id] = {}
        self._ensure_idle_watch()
        return rt

    async def list_live(self, sid: str, user_id: int, req: s.SessionList) -> dict[str, Any]:
        async with self.hub.store.read() as conn:
            access = await class_access(conn, user_id, req.class_id)
        if not access.is_member:
            raise forbidden("you are not a member of this class")
        # From the store, not this node's memory: any node answers for every node's sessions.
        live = []
        for session in await actions.running_for(self.hub, req.class_id):
            # A classroom asked to link (not yet accepted) sees the request: its teachers only.
            asked = access.is_teacher and req.class_id in session.pending_links
            if req.class_id in session.classrooms or asked:
                live.append(session.summary())
        return {"sessions": live}

    async def end(self, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        rt.session.require_host(user_id)
        await self.finish(rt, "ended_by_host")
        return {}

    async def finish(self, rt: LiveRuntime, reason: str) -> None:
        """Stored first, then announced: members are told only what the store already holds."""
        session = rt.session
        if session.ended:
            return
        session.ended = True  # no request is taken from here on
        try:
            # False when another node stored its end first (it thought this node lost): the
            # members were told then; this node only lets its own connections go.
            await actions.end(self.hub, session, reason)
        finally:
            await self.carry_out(session.id, protocol.ended(session, reason).effects)
            await rt.close()
            self.runtimes.pop(session.id, None)
            self.connections.pop(session.id, None)

    async def recover(self) -> int:
        """End the sessions this node was running when it stopped: their state died with it.

        Their unanswered questions move to the class boards and members are told, exactly as
        when a host ends a session.
        """
        sessions = await actions.running_on(self.hub, self.node)
        for session in sessions:
            await self.finish(self._run(session), "server_restart")
        return len(sessions)

    def _ensure_idle_watch(self) -> None:
        if self._idle_task is None or self._idle_task.done():
            self._idle_task = asyncio.get_running_loop().create_task(self._idle_watch())

    async def _idle_watch(self) -> None:
        limit = self.hub.settings.session_idle_end_s
        while self.runtimes:
            await asyncio.sleep(min(30.0, max(limit / 4, 0.05)))
            now = time.monotonic()
            for rt in list(self.runtimes.values()):
                if rt.router.tracks():
                    rt.last_activity = now
                elif now - rt.last_activity > limit:
                    await self.finish(rt, "idle")

    async def close(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        for task in self.grace.values():
            task.cancel()
        self.grace.clear()
        for rt in list(self.runtimes.values()):
            await rt.close()
        self.runtimes.clear()
        self.connections.clear()

    # --- joining --------------------------------------------------------------------------

    async def join(self, sid: str, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        session = rt.session
        name, roles = await actions.participant(self.hub, user_id, session)
        if user_id not in session.participants:
            # A teacher of a classroom the lesson asked to link brings it by joining.
            for cid in actions.teaches_pending(session, roles):
                await actions.link(self.hub, user_id, session, cid, accept=True)
                await self.carry_out(session.id, protocol.linked(session).effects)
        conns = self.connections.setdefault(session.id, {})
        old = conns.get(user_id)
        outcome = protocol.join(
            session, user_id, name, roles, new_connection=old is not None and old != sid
        )
        task = self.grace.pop((session.id, user_id), None)
        if task is not None:
            task.cancel()
        conns[user_id] = sid
        await self.carry_out(session.id, outcome.effects)
        return {**outcome.reply, "ice_servers": self.ice_servers(user_id)}

    async def leave(self, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        outcome = protocol.leave(rt.session, user_id)
        await self.carry_out(rt.session.id, outcome.effects)
        return outcome.reply

    async def link(self, user_id: int, req: s.LinkClassroom) -> dict[str, Any]:
        """A teacher of a classroom a dual lesson asked to link accepts or declines."""
        rt = self.runtime(req.session_id)
        await actions.link(self.hub, user_id, rt.session, req.class_id, req.accept)
        outcome = protocol.linked(rt.session)
        await self.carry_out(rt.session.id, outcome.effects)
        return outcome.reply

    async def on_disconnect(self, sid: str, user_id: int) -> None:
        for session_id, conns in list(self.connections.items()):
            rt = self.runtimes.get(session_id)
            if rt is None or conns.get(user_id) != sid:
                continue
            outcome = protocol.disconnected(rt.session, user_id)
            await self.carry_out(session_id, outcome.effects)
            if user_id in rt.session.participants:
                self.grace[(session_id, user_id)] = asyncio.get_running_loop().create_task(
                    self._expire(rt, user_id, sid)
                )

    async def _expire(self, rt: LiveRuntime, user_id: int, sid: str) -> None:
        await asyncio.sleep(self.hub.settings.session_grace_s)
        session = rt.session
        if self.grace.get((session.id, user_id)) is asyncio.current_task():
            del self.grace[(session.id, user_id)]
        conns = self.connections.get(session.id, {})
        if conns.get(user_id) == sid and not session.ended:
            await self.carry_out(session.id, protocol.leave(session, user_id).effects)

    # --- signalling -----------------------------------------------------------------------

    def _admitted(self, session_id: int, user_id: int) -> LiveRuntime:
        rt = self.runtime(session_id)
        protocol.admitted(rt.session, user_id)
        return rt

    async def publish(self, user_id: int, req: s.Publish) -> dict[str, Any]:
        rt = self._admitted(req.session_id, user_id)
        try:
            reply = await rt.publish(user_id, req.sdp, dict(req.sources), dict(req.layers))
        except SignalingError as exc:
            raise _error(exc) from None
        await self.carry_out(rt.session.id, protocol.changed(rt.session).effects)
        return reply

    async def subscribe(self, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        """Open the subscribe leg: the answer carries the server's first offer (or none)."""
        rt = self._admitted(req.session_id, user_id)
        try:
            return await rt.subscribe(user_id)
        except SignalingError as exc:
            raise _error(exc) from None

    async def answer(self, user_id: int, req: s.Answer) -> dict[str, Any]:
        rt = self._admitted(req.session_id, user_id)
        try:
            await rt.answer(user_id, req.sdp)
        except SignalingError as exc:
            raise _error(exc) from None
        return {}

    async def ice(self, user_id: int, req: s.Ice) -> dict[str, Any]:
        rt = self._admitted(req.session_id, user_id)
        try:
            candidate = None if req.candidate is None else msgspec.structs.asdict(req.candidate)
            await rt.add_ice_candidate(user_id, req.leg, candidate)
        except SignalingError as exc:
            raise _error(exc) from None
        except ValueError as exc:
            raise bad_request(f"bad candidate: {exc}") from None
        return {}

    # --- host controls that are stored ------------------------------------------------------

    async def transfer_host(self, user_id: int, req: s.Person) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        await actions.transfer_host(self.hub, rt.session, user_id, req.user_id)
        outcome = protocol.changed(rt.session)
        await self.carry_out(rt.session.id, outcome.effects)
        return outcome.reply

    # --- statistics -----------------------------------------------------------------------

    def stats_for(self, user_id: int, session_id: int) -> dict[str, Any]:
        rt = self.runtime(session_id)
        rt.session.require_host(user_id)
        return rt.stats()


def _error(exc: SignalingError) -> HomeroomError:
    code = "conflict" if exc.code == "closed" else exc.code
    return HomeroomError(code, str(exc))
