"""Live-session requests over Socket.IO: start, join, signalling, hands, stage, lobby, moderation.

A session's media runs on the node that started it; its row in the store (and the
``session.started`` / ``session.ended`` events in the class streams) is what every node sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from sqlalchemy import select

from media.ice import TurnServer, rtc_configuration, turn_credentials
from realtime.actions import questions
from realtime.actions.access import class_access, display_names
from realtime.domain import policy
from realtime.domain.live import LiveSession, SessionKind
from realtime.domain.policy import require
from realtime.domain.streams import chat_stream, qa_stream
from realtime.errors import HomeroomError, bad_request, conflict, not_found
from realtime.hub import Hub
from realtime.live import schemas as s
from realtime.live.runtime import LiveRuntime, MediaOptions, offer_message
from realtime.store.db import inserted_id
from realtime.store.schema import classes, live_sessions, memberships
from realtime.transport.socket import Gateway
from signaling import CodecPolicy, SignalingError


def _room(session_id: int) -> str:
    return f"live:{session_id}"


class LiveService:
    """The sessions this node runs, and the handlers of their requests."""

    def __init__(self, hub: Hub, gateway: Gateway) -> None:
        self.hub = hub
        self.gateway = gateway
        self.sio: socketio.AsyncServer = gateway.sio
        self.runtimes: dict[int, LiveRuntime] = {}
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
        routes: dict[str, tuple[type[Any], Callable[[str, int, Any], Awaitable[dict[str, Any]]]]]
        routes = {
            "session.start": (s.SessionStart, self.start),
            "session.list": (s.SessionList, self.list_live),
            "session.join": (s.SessionRef, self.join),
            "session.leave": (s.SessionRef, self.leave),
            "session.end": (s.SessionRef, self.end),
            "rtc.publish": (s.Publish, self.publish),
            "rtc.subscribe": (s.SessionRef, self.subscribe),
            "rtc.answer": (s.Answer, self.answer),
            "rtc.ice": (s.Ice, self.ice),
            "hand.raise": (s.Hand, self.raise_hand),
            "hand.lower": (s.LowerHand, self.lower_hand),
            "stage.invite": (s.Person, self.invite),
            "stage.accept": (s.SessionRef, self.accept),
            "stage.decline": (s.SessionRef, self.decline),
            "stage.remove": (s.Person, self.leave_stage),
            "stage.places": (s.StagePlaces, self.stage_places),
            "classroom.stage": (s.ClassroomStage, self.classroom_stage),
            "lobby.admit": (s.Admit, self.admit),
            "lobby.decline": (s.Decline, self.decline_lobby),
            "moderate.mute": (s.Mute, self.mute),
            "moderate.mute_all": (s.SessionRef, self.mute_all),
            "moderate.lock": (s.Lock, self.lock),
            "moderate.remove": (s.Person, self.remove),
            "host.transfer": (s.Person, self.transfer_host),
            "media.mute_self": (s.SelfMute, self.mute_self),
        }
        gateway.sid_routes.update(routes)
        gateway.disconnect_hooks.append(self.on_disconnect)

    # --- helpers --------------------------------------------------------------------------

    async def _send(self, sid: str, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(event, data, to=sid)

    def runtime(self, session_id: int) -> LiveRuntime:
        rt = self.runtimes.get(session_id)
        if rt is None or rt.session.ended:
            raise not_found("no such live session on this server (it may have ended)")
        return rt

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

    async def broadcast(self, rt: LiveRuntime) -> None:
        """Everyone admitted gets the session's state; people in the lobby get their own."""
        await self.sio.emit("session.state", rt.session.view(), to=_room(rt.session.id))
        for uid in rt.session.lobby():
            sid = rt.sids.get(uid)
            if sid is not None:
                await self._send(
                    sid, "session.lobby", {"session_id": rt.session.id, "status": "waiting"}
                )

    async def changed(self, rt: LiveRuntime) -> dict[str, Any]:
        await rt.refresh()
        await self.broadcast(rt)
        return {"session": rt.session.view()}

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, sid: str, user_id: int, req: s.SessionStart) -> dict[str, Any]:
        kind = SessionKind(req.kind)
        linked = sorted(set(req.linked_class_ids) - {req.class_id})
        if kind is SessionKind.DUAL_LESSON and not linked:
            raise bad_request("a dual-teacher lesson links at least one other classroom")
        if kind is not SessionKind.DUAL_LESSON and linked:
            raise bad_request("only dual-teacher lessons link classrooms")
        async with self.hub.store.transaction() as conn:
            access = await class_access(conn, user_id, req.class_id)
            require(policy.may_publish_notice(access), "only teachers of this class start sessions")
            # Only after the permission check: others must not learn that the class is live.
            for rt in self.runtimes.values():
                busy = set(rt.session.classrooms) & {req.class_id, *linked}
                if busy and not rt.session.ended:
                    raise conflict("a class of this session is already in a live session")
            rows = list(
                await conn.execute(
                    select(classes.c.id, classes.c.name, classes.c.school_id).where(
                        classes.c.id.in_([req.class_id, *linked])
                    )
                )
            )
            by_id = {r.id: r for r in rows}
            if len(by_id) != 1 + len(linked):
                raise not_found("a linked classroom does not exist")
            if any(r.school_id != by_id[req.class_id].school_id for r in rows):
                raise HomeroomError("forbidden", "linked classrooms must be of the same school")
            now = self.hub.now()
            res = await conn.execute(
                live_sessions.insert().values(
                    class_id=req.class_id,
                    kind=kind.value,
                    title=req.title.strip(),
                    host_id=user_id,
                    node=self.node,
                    linked=linked,
                    started_at=now,
                )
            )
            session_id = inserted_id(res)
            session = LiveSession(
                session_id,
                kind,
                req.class_id,
                user_id,
                req.title.strip(),
                {cid: by_id[cid].name for cid in [req.class_id, *linked]},
                stage_places=req.stage_places,
            )
            for key in self._announce_streams(session):
                await self.hub.store.append(conn, str(key), "session.started", session.summary())
        rt = LiveRuntime(session, self.media, self._send)
        self.runtimes[session_id] = rt
        self._ensure_idle_watch()
        return {"session": session.summary()}

    def _announce_streams(self, session: LiveSession) -> list[Any]:
        if session.kind is SessionKind.MEETING:
            return [chat_stream(session.class_id, "guardians")]
        return [chat_stream(cid, "students") for cid in session.classrooms]

    async def list_live(self, sid: str, user_id: int, req: s.SessionList) -> dict[str, Any]:
        async with self.hub.store.read() as conn:
            access = await class_access(conn, user_id, req.class_id)
            if not access.is_member:
                raise HomeroomError(
                    "forbidden", "you are not a member of this class", reason="not_member"
                )
        live = [
            rt.session.summary()
            for rt in self.runtimes.values()
            if not rt.session.ended and req.class_id in rt.session.classrooms
        ]
        return {"sessions": live}

    async def end(self, sid: str, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        rt.session.require_host(user_id)
        await self.finish(rt, "ended_by_host")
        return {}

    async def finish(self, rt: LiveRuntime, reason: str) -> None:
        session = rt.session
        session.ended = True
        # Stored first: nobody hears of the end before it is on disk.
        async with self.hub.store.transaction() as conn:
            await conn.execute(
                live_sessions.update()
                .where(live_sessions.c.id == session.id)
                .values(ended_at=self.hub.now())
            )
            for key in self._announce_streams(session):
                await self.hub.store.append(
                    conn, str(key), "session.ended", {**session.summary(), "reason": reason}
                )
        await self.sio.emit(
            "session.ended", {"session_id": session.id, "reason": reason}, to=_room(session.id)
        )
        for uid in session.lobby():
            sid = rt.sids.get(uid)
            if sid is not None:
                await self._send(sid, "session.ended", {"session_id": session.id, "reason": reason})
        await rt.close()
        self.runtimes.pop(session.id, None)
        for cid in session.classrooms:
            await questions.close_session(self.hub, cid, session.id)
        for sid in list(rt.sids.values()):
            with contextlib.suppress(Exception):
                await self.sio.leave_room(sid, _room(session.id))

    async def recover(self) -> int:
        """End the sessions this node was running when it stopped: their state died with it.

        Their unanswered questions move to the class boards and members are told, exactly as
        when a host ends a session.
        """
        async with self.hub.store.read() as conn:
            rows = list(
                await conn.execute(
                    select(live_sessions).where(
                        live_sessions.c.ended_at.is_(None), live_sessions.c.node == self.node
                    )
                )
            )
            names = {r.id: r.name for r in await conn.execute(select(classes.c.id, classes.c.name))}
        for row in rows:
            session = LiveSession(
                row.id,
                SessionKind(row.kind),
                row.class_id,
                row.host_id,
                row.title,
                {cid: names.get(cid, "") for cid in [row.class_id, *row.linked]},
            )
            await self.finish(LiveRuntime(session, self.media, self._send), "server_restart")
        return len(rows)

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
        for rt in list(self.runtimes.values()):
            await rt.close()
        self.runtimes.clear()

    # --- joining --------------------------------------------------------------------------

    async def join(self, sid: str, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        session = rt.session
        async with self.hub.store.read() as conn:
            rows = await conn.execute(
                select(memberships.c.class_id, memberships.c.role).where(
                    memberships.c.user_id == user_id,
                    memberships.c.class_id.in_(list(session.classrooms)),
                )
            )
            roles: dict[int, set[str]] = {}
            for r in rows:
                roles.setdefault(r.class_id, set()).add(r.role)
            if "guardian" in roles.get(session.class_id, set()):
                access = await class_access(conn, user_id, session.class_id)
                if not access.is_guardian:
                    roles[session.class_id].discard("guardian")
            name = (await display_names(conn, [user_id])).get(user_id, "")
        p = session.admit_role(user_id, name, roles)
        task = rt.grace.pop(user_id, None)
        if task is not None:
            task.cancel()
        old_sid = rt.sids.get(user_id)
        if old_sid is not None and old_sid != sid:
            await rt.drop_legs(user_id)  # a rejoin from a new connection starts fresh media
        rt.sids[user_id] = sid
        if not p.in_lobby:
            await self.sio.enter_room(sid, _room(session.id))
            await self.gateway.follow_extra(sid, self._qa_streams(rt, user_id))
        await self.broadcast(rt)
        return {
            "session": session.view() if not p.in_lobby else session.summary(),
            "you": p.view(),
            "ice_servers": self.ice_servers(user_id),
            "qa_streams": [] if p.in_lobby else self._qa_streams(rt, user_id),
        }

    def _qa_streams(self, rt: LiveRuntime, user_id: int) -> list[str]:
        p = rt.session.participants[user_id]
        if p.role.value in ("host", "teacher"):
            return [str(qa_stream(cid, rt.session.id)) for cid in rt.session.classrooms]
        if p.role.value in ("student", "local_teacher"):
            return [str(qa_stream(p.class_id, rt.session.id))]
        return []  # guardians in a parent meeting have no Q&A

    async def leave(self, sid: str, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        await self._remove(rt, user_id)
        return {}

    async def _remove(self, rt: LiveRuntime, user_id: int) -> None:
        sid = rt.sids.pop(user_id, None)
        await rt.drop_legs(user_id)
        rt.session.leave(user_id)
        if sid is not None:
            with contextlib.suppress(Exception):
                await self.sio.leave_room(sid, _room(rt.session.id))
        await self.changed(rt)

    async def on_disconnect(self, sid: str, user_id: int) -> None:
        for rt in list(self.runtimes.values()):
            if rt.sids.get(user_id) != sid:
                continue
            p = rt.session.participants.get(user_id)
            await rt.drop_legs(user_id)
            if p is None:
                continue
            p.connected = False
            await self.changed(rt)
            rt.grace[user_id] = asyncio.get_running_loop().create_task(
                self._expire(rt, user_id, sid)
            )

    async def _expire(self, rt: LiveRuntime, user_id: int, sid: str) -> None:
        await asyncio.sleep(self.hub.settings.session_grace_s)
        rt.grace.pop(user_id, None)
        if rt.sids.get(user_id) == sid and not rt.session.ended:
            await self._remove(rt, user_id)

    # --- signalling -----------------------------------------------------------------------

    def _participant_rt(self, session_id: int, user_id: int) -> LiveRuntime:
        rt = self.runtime(session_id)
        p = rt.session.get(user_id)
        if p.in_lobby:
            raise HomeroomError("forbidden", "you are waiting in the lobby", reason="in_lobby")
        return rt

    async def publish(self, sid: str, user_id: int, req: s.Publish) -> dict[str, Any]:
        rt = self._participant_rt(req.session_id, user_id)
        try:
            answer = await rt.publish_leg(user_id).apply_offer(req.sdp, req.sources)
        except SignalingError as exc:
            raise _error(exc) from None
        await self.changed(rt)
        return {
            "sdp": answer.sdp,
            "published": [
                {"mid": t.mid, "kind": t.kind, "source": t.source, "track_id": t.track_id}
                for t in answer.published
            ],
            "rejected": [
                {"mid": t.mid, "kind": t.kind, "source": t.source, "reason": t.reason}
                for t in answer.rejected
            ],
        }

    async def subscribe(self, sid: str, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        """Open the subscribe leg: the answer carries the server's first offer (or none)."""
        rt = self._participant_rt(req.session_id, user_id)
        leg = rt.subscribe_leg(user_id)
        try:
            offer = await leg.set_tracks(rt.wanted_tracks(user_id))
        except SignalingError as exc:
            raise _error(exc) from None
        return {"offer": offer_message(rt.session.id, offer) if offer else None}

    async def answer(self, sid: str, user_id: int, req: s.Answer) -> dict[str, Any]:
        rt = self._participant_rt(req.session_id, user_id)
        leg = rt.subscribers.get(user_id)
        if leg is None:
            raise conflict("there is no offer to answer: send rtc.subscribe first")
        try:
            follow_up = await leg.apply_answer(req.sdp)
        except SignalingError as exc:
            raise _error(exc) from None
        if follow_up is not None:
            await self._send(sid, "rtc.offer", offer_message(rt.session.id, follow_up))
        return {}

    async def ice(self, sid: str, user_id: int, req: s.Ice) -> dict[str, Any]:
        rt = self._participant_rt(req.session_id, user_id)
        legs: dict[int, Any] = rt.publishers if req.leg == "publish" else rt.subscribers
        leg = legs.get(user_id)
        if leg is None:
            raise conflict(f"no {req.leg} connection yet")
        try:
            await leg.add_ice_candidate(req.candidate)
        except SignalingError as exc:
            raise _error(exc) from None
        except ValueError as exc:
            raise bad_request(f"bad candidate: {exc}") from None
        return {}

    # --- hands, stage, lobby, moderation ----------------------------------------------------

    async def raise_hand(self, sid: str, user_id: int, req: s.Hand) -> dict[str, Any]:
        rt = self._participant_rt(req.session_id, user_id)
        rt.session.raise_hand(rt.session.hand_key(user_id, req.classroom))
        return await self.changed(rt)

    async def lower_hand(self, sid: str, user_id: int, req: s.LowerHand) -> dict[str, Any]:
        rt = self._participant_rt(req.session_id, user_id)
        rt.session.lower_hand(user_id, req.hand or f"user:{user_id}")
        return await self.changed(rt)

    async def invite(self, sid: str, user_id: int, req: s.Person) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        rt.session.invite(user_id, req.user_id)
        target = rt.sids.get(req.user_id)
        if target is not None:
            await self._send(target, "stage.invited", {"session_id": rt.session.id})
        return await self.changed(rt)

    async def accept(self, sid: str, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        rt = self._participant_rt(req.session_id, user_id)
        rt.session.accept(user_id)
        return await self.changed(rt)

    async def decline(self, sid: str, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        rt = self._participant_rt(req.session_id, user_id)
        rt.session.decline(user_id)
        return await self.changed(rt)

    async def leave_stage(self, sid: str, user_id: int, req: s.Person) -> dict[str, Any]:
        rt = self._participant_rt(req.session_id, user_id)
        rt.session.leave_stage(user_id, req.user_id)
        return await self.changed(rt)

    async def stage_places(self, sid: str, user_id: int, req: s.StagePlaces) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        rt.session.set_stage_places(user_id, req.places)
        return await self.changed(rt)

    async def classroom_stage(
        self, sid: str, user_id: int, req: s.ClassroomStage
    ) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        rt.session.put_classroom_on_stage(user_id, req.class_id)
        return await self.changed(rt)

    async def admit(self, sid: str, user_id: int, req: s.Admit) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        admitted = rt.session.admit(user_id, req.user_ids)
        for uid in admitted:
            target = rt.sids.get(uid)
            if target is not None:
                await self.sio.enter_room(target, _room(rt.session.id))
                await self._send(
                    target,
                    "session.lobby",
                    {
                        "session_id": rt.session.id,
                        "status": "admitted",
                        "session": rt.session.view(),
                        "you": rt.session.get(uid).view(),
                    },
                )
        result = await self.changed(rt)
        return {**result, "admitted": admitted}

    async def decline_lobby(self, sid: str, user_id: int, req: s.Decline) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        declined = rt.session.decline_lobby(user_id, req.user_ids)
        for uid in declined:
            target = rt.sids.pop(uid, None)
            if target is not None:
                await self._send(
                    target, "session.lobby", {"session_id": rt.session.id, "status": "declined"}
                )
        result = await self.changed(rt)
        return {**result, "declined": declined}

    async def mute(self, sid: str, user_id: int, req: s.Mute) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        if req.audio is None and req.video is None:
            raise bad_request("say what to mute: audio, video or both")
        for kind, value in (("audio", req.audio), ("video", req.video)):
            if value is not None:
                rt.session.host_mute(user_id, req.user_id, {kind}, value)
        target = rt.sids.get(req.user_id)
        if target is not None:
            await self._send(
                target,
                "media.muted",
                {
                    "session_id": rt.session.id,
                    "by": user_id,
                    "muted_by_host": sorted(rt.session.get(req.user_id).muted_by_host),
                },
            )
        return await self.changed(rt)

    async def mute_all(self, sid: str, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        for uid in rt.session.mute_all(user_id):
            target = rt.sids.get(uid)
            if target is not None:
                await self._send(
                    target,
                    "media.muted",
                    {
                        "session_id": rt.session.id,
                        "by": user_id,
                        "muted_by_host": sorted(rt.session.get(uid).muted_by_host),
                    },
                )
        return await self.changed(rt)

    async def lock(self, sid: str, user_id: int, req: s.Lock) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        rt.session.set_lock(user_id, req.locked, req.unmute_locked)
        return await self.changed(rt)

    async def remove(self, sid: str, user_id: int, req: s.Person) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        rt.session.remove(user_id, req.user_id)
        target = rt.sids.get(req.user_id)
        if target is not None:
            await self._send(target, "session.removed", {"session_id": rt.session.id})
        rt.session.participants.pop(req.user_id, None)
        await self._remove(rt, req.user_id)
        return {"session": rt.session.view()}

    async def transfer_host(self, sid: str, user_id: int, req: s.Person) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        rt.session.transfer_host(user_id, req.user_id)
        async with self.hub.store.transaction() as conn:
            # The stored host decides who sees every classroom's questions.
            await conn.execute(
                live_sessions.update()
                .where(live_sessions.c.id == rt.session.id)
                .values(host_id=req.user_id)
            )
            for key in self._announce_streams(rt.session):
                await self.hub.store.append(conn, str(key), "session.host", rt.session.summary())
        return await self.changed(rt)

    async def mute_self(self, sid: str, user_id: int, req: s.SelfMute) -> dict[str, Any]:
        rt = self._participant_rt(req.session_id, user_id)
        for kind, value in (("audio", req.audio), ("video", req.video)):
            if value is not None:
                rt.session.self_mute(user_id, {kind}, value)
        return await self.changed(rt)

    # --- statistics -----------------------------------------------------------------------

    def stats_for(self, user_id: int, session_id: int) -> dict[str, Any]:
        rt = self.runtime(session_id)
        rt.session.require_host(user_id)
        return rt.stats()


def _error(exc: SignalingError) -> HomeroomError:
    code = "conflict" if exc.code == "closed" else exc.code
    return HomeroomError(code, str(exc))
