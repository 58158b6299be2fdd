"""The live sessions this node runs, and the transport that carries their effects out.

A request arrives over Socket.IO with a connection (sid) and a user; everything below the
connection bookkeeping is addressed by (session, participant): the rules answer with effects
(``realtime/domain/live_protocol.py``), stored changes go through ``realtime/actions/live.py``,
media requests go to the session's :class:`LiveRuntime`, and :meth:`LiveService.carry_out` turns
the effects into Socket.IO emits, room membership and media work.

Any node serves any participant (issue #12). A session runs on one node (the ``node`` column
of its row; :mod:`realtime.cluster.placement` chooses it at ``session.start``); a request that
arrives on another node is carried there over the bus (:class:`NodeCalls`: an id, a time-out,
``unavailable`` when that node does not answer) and its answer comes back. The session's node
knows each participant's connection as (node, sid): the effects for a connection on another
node are sent to that node as *connection operations* (``{"t": "live.fx", "ops": [...]}``:
tell a connection, tell the session's room, follow, unfollow), which it applies to its own
Socket.IO server; those for its own connections it applies itself, the same operations. A
connection that drops is reported to the session's node (which keeps the grace period). A
request for a session on this node is handled here, with no hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import socketio

from media.ice import TurnServer, rtc_configuration, turn_credentials
from realtime import schemas
from realtime.actions import attendance
from realtime.actions import live as actions
from realtime.actions.access import class_access
from realtime.cluster import placement
from realtime.cluster.calls import NodeCalls
from realtime.cluster.registry import Membership
from realtime.domain import live_protocol as protocol
from realtime.domain.live import LiveSession, Saved
from realtime.domain.live_protocol import (
    DropMedia,
    Effect,
    Follow,
    Outcome,
    SyncMedia,
    Tell,
    TellSession,
    Unfollow,
)
from realtime.errors import HomeroomError, bad_request, forbidden, not_found
from realtime.hub import Hub
from realtime.live import cascade as cascading
from realtime.live import schemas as s
from realtime.live.cascade import Cascade
from realtime.live.edge import EdgeLayer, Edges
from realtime.live.runtime import LiveRuntime, MediaOptions, offer_message
from realtime.transport.socket import Gateway
from signaling import CodecPolicy, SignalingError, SubscribeOffer

log = logging.getLogger(__name__)

SidHandler = Callable[[str, int, Any], Awaitable[dict[str, Any]]]
Request = Callable[[int, Any], Awaitable[dict[str, Any]]]
# A participant's connection: (the node it is on, its Socket.IO sid there).
Conn = tuple[str, str]
# A connection operation, applied by the node that holds the connection (see the module doc).
Op = dict[str, Any]
# Sessions whose node this node remembers (running elsewhere); forgotten beyond this many.
LOCATED_MAX = 10_000
# Draining: a moved session's old legs keep forwarding this long while members join anew.
HANDOVER_S = 2.0
# An edge that did not answer (or failed) takes no new viewer for this long: alive in the
# registry but frozen or broken, it would make every join through it wait again.
EDGE_SHUNNED_S = 30.0
# A track that ended by itself is told this much later: the other tracks of its leg end in the
# meantime (one state for all), and a publisher's own change, told anyway, comes first.
ANNOUNCE_AFTER_S = 0.2


def _room(session_id: int) -> str:
    return f"live:{session_id}"


class LiveService:
    """The sessions this node runs: their runtimes, and who is connected to each, by sid."""

    def __init__(self, hub: Hub, gateway: Gateway) -> None:
        self.hub = hub
        self.gateway = gateway
        self.sio: socketio.AsyncServer = gateway.sio
        self.runtimes: dict[int, LiveRuntime] = {}
        # session id -> participant -> the connection their session events go to.
        self.connections: dict[int, dict[int, Conn]] = {}
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
        self.node = settings.node
        # Requests carried to other nodes, and answered for them.
        self.calls = NodeCalls(hub.bus, self.node, settings.node_request_timeout_s)
        self.calls.handlers["live"] = self._called
        self.calls.handlers["adopt"] = self._adopt_called
        # The cascaded sessions of other nodes this node serves viewers of, as their edge.
        self.edges = Edges(self.media, self._tell_layer_upstream)
        self.calls.handlers["edge"] = self.edges.called
        self.calls.handlers["edge_layer"] = self._edge_layer_called
        # Shutting down (SIGTERM): no session is placed or moved here; its own move away.
        self.draining = False
        gateway.bus_routes["call"] = self.calls.on_bus
        gateway.bus_routes["call.reply"] = self.calls.on_bus
        gateway.bus_routes["live.fx"] = self._remote_ops
        # Sessions this node is moving here now (their runtime exists, the move is not stored).
        self.adopting: set[int] = set()
        # Sessions whose people are about to hear that a track ended (``_announce``).
        self._announcing: dict[int, asyncio.Task[None]] = {}
        # Where sessions running on other nodes run (from the store, remembered).
        self.located: dict[int, str] = {}
        # A connection on this node -> the sessions it joined on other nodes (id -> node).
        self.joined_elsewhere: dict[str, dict[int, str]] = {}
        # Who is alive, with what load (realtime/cluster/watch.py sets it): for placement.
        self.membership: Membership | None = None
        # Edges that did not answer or failed -> until when they take no new viewer here.
        self.shunned: dict[str, float] = {}
        # Requests addressed by (session, participant): none needs the asker's connection, so
        # any node hands them to the session's node. Join binds a connection; start places.
        self.requests: dict[str, tuple[type[Any], Request]] = {
            "session.start": (s.SessionStart, self.start_here),
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
        # What another node may ask of this one (the requests, and what binds a connection).
        self.schemas: dict[str, type[Any]] = {e: schema for e, (schema, _) in self.requests.items()}
        self.schemas.update(
            {
                "session.join": s.Join,
                "session.gone": s.SessionRef,
                "session.stats": s.SessionRef,
            }
        )
        routes: dict[str, tuple[type[Any], SidHandler]] = {
            "session.list": (s.SessionList, self.list_live),
            "session.join": (s.Join, functools.partial(self._request, "session.join")),
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
        conn = self.connections.get(session_id, {}).get(user_id)
        if conn is not None:
            await self._send_ops(
                conn[0], [{"op": "tell", "sid": conn[1], "event": event, "data": data}]
            )

    async def carry_out(self, session_id: int, effects: list[Effect]) -> None:
        """Do what the rules said, in order.

        Media effects are this node's (it runs the session's media); the others belong to the
        node holding each participant's connection: this node's are applied here, the other
        nodes' are sent to them, one message per node for a run of effects (kept in order:
        a media effect, whose offers go out as it runs, first sends what came before it).
        """
        rt = self.runtimes.get(session_id)
        if rt is not None and any(
            isinstance(e, TellSession) and e.event == "session.state" for e in effects
        ):
            # Who is there, with a hand up, on stage: the lesson's attendance record.
            await attendance.observe(self.hub, rt.session)
            rt.announced = rt.publishing()
        remote: dict[str, list[Op]] = {}
        for effect in effects:
            if isinstance(effect, (DropMedia, SyncMedia)):
                await self._flush(remote)
                await self._media_effect(session_id, effect)
                continue
            for node, op in self._address(session_id, effect):
                if node == self.node:
                    await self._apply(op)
                else:
                    remote.setdefault(node, []).append(op)
        await self._flush(remote)

    async def _flush(self, remote: dict[str, list[Op]]) -> None:
        for node, ops in remote.items():
            await self._send_ops(node, ops)
        remote.clear()

    async def _send_ops(self, node: str, ops: list[Op]) -> None:
        """Connection operations to the node holding the connections (this one: applied)."""
        if node == self.node:
            for op in ops:
                await self._apply(op)
            return
        try:
            await self.hub.bus.send(node, {"t": "live.fx", "ops": ops})
        except ConnectionError as exc:
            # Its connections miss this change; they get the next state (or rejoin).
            log.warning("live session effects for node %s were lost: %s", node, exc)

    async def _media_effect(self, session_id: int, effect: DropMedia | SyncMedia) -> None:
        rt = self.runtimes.get(session_id)
        if rt is None:
            return
        if isinstance(effect, DropMedia):
            await rt.drop_legs(effect.user_id)
        else:
            await rt.refresh()

    def _address(
        self, session_id: int, effect: Tell | TellSession | Follow | Unfollow
    ) -> list[tuple[str, Op]]:
        """An effect as connection operations, each for the node holding its connection."""
        conns = self.connections.setdefault(session_id, {})
        room = _room(session_id)
        if isinstance(effect, TellSession):
            op: Op = {"op": "room", "room": room, "event": effect.event, "data": effect.data}
            nodes = {self.node} | {node for node, _sid in conns.values()}
            return [(node, op) for node in sorted(nodes)]
        if isinstance(effect, Unfollow):
            task = self.grace.pop((session_id, effect.user_id), None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        conn = (
            conns.pop(effect.user_id, None)
            if isinstance(effect, Unfollow)
            else conns.get(effect.user_id)
        )
        if conn is None:
            return []
        node, sid = conn
        if isinstance(effect, Tell):
            return [(node, {"op": "tell", "sid": sid, "event": effect.event, "data": effect.data})]
        if isinstance(effect, Follow):
            return [(node, {"op": "follow", "sid": sid, "room": room, "qa": effect.qa_streams})]
        return [(node, {"op": "unfollow", "sid": sid, "room": room, "session_id": session_id})]

    async def _apply(self, op: Op) -> None:
        """One connection operation on this node's Socket.IO server."""
        kind = op["op"]
        if kind == "room":
            await self.sio.emit(op["event"], op["data"], to=op["room"])
            return
        sid = op["sid"]
        if sid not in self.gateway.identities:
            return  # that connection is gone (its session's node hears of it)
        if kind == "tell":
            await self.sio.emit(op["event"], op["data"], to=sid)
        elif kind == "follow":
            await self.sio.enter_room(sid, op["room"])
            if op["qa"]:
                await self.gateway.follow_extra(sid, op["qa"])
        elif kind == "unfollow":
            self.joined_elsewhere.get(sid, {}).pop(int(op["session_id"]), None)
            with contextlib.suppress(Exception):
                await self.sio.leave_room(sid, op["room"])

    async def _remote_ops(self, message: dict[str, Any]) -> None:
        """Connection operations another node sent for connections on this one (in order)."""
        for op in message.get("ops") or []:
            try:
                await self._apply(op)
            except Exception:
                log.exception("a live session operation from another node failed")

    async def handle(
        self, event: str, user_id: int, req: Any, conn: Conn | None = None
    ) -> dict[str, Any]:
        """A request for a session on this node: signalling, hands, stage, lobby, moderation,
        leaving, ending, linking, starting; joining and a dropped connection name ``conn``."""
        if event == "session.join":
            assert conn is not None
            return await self.join(conn, user_id, req)
        if event == "session.gone":
            assert conn is not None
            await self.gone(conn, user_id, req.session_id)
            return {}
        if event == "session.stats":
            return self.stats_for(user_id, req.session_id)
        return await self.requests[event][1](user_id, req)

    async def _request(self, event: str, sid: str, user_id: int, req: Any) -> dict[str, Any]:
        return await self.route(event, user_id, req, sid)

    async def route(self, event: str, user_id: int, req: Any, sid: str = "") -> dict[str, Any]:
        """Handle a request here if its session runs here, or carry it to the node it runs on
        (``session.start``: the node placement chooses). ``sid``: the asker's connection on
        this node, if any."""
        node = (
            await self.place() if event == "session.start" else await self.node_of(req.session_id)
        )
        for attempt in (1, 2):
            if node == self.node:
                return await self.handle(event, user_id, req, (self.node, sid))
            body = {"event": event, "user": user_id, "req": msgspec.to_builtins(req), "sid": sid}
            try:
                reply = await self.calls.call(node, "live", body)
            except HomeroomError as exc:
                if event == "session.start" or attempt == 2:
                    raise
                if exc.code not in ("not_found", "unavailable"):
                    raise
                # Ended, or moved to another node: the store says which.
                self.located.pop(req.session_id, None)
                fresh = await self.node_of(req.session_id)
                if fresh == node:
                    raise
                node = fresh
                continue
            if event == "session.join" and sid:
                self.joined_elsewhere.setdefault(sid, {})[req.session_id] = node
            return reply
        raise AssertionError("unreachable")

    async def _called(self, node: str, body: dict[str, Any]) -> dict[str, Any]:
        """Another node carried a request here (see :meth:`route`)."""
        event = str(body.get("event"))
        schema = self.schemas.get(event)
        if schema is None:
            raise bad_request(f"no such live session request {event[:60]!r}")
        req = schemas.parse(schema, body.get("req"))
        sid = body.get("sid")
        conn = (node, str(sid)) if sid else None
        if event in ("session.join", "session.gone") and conn is None:
            raise bad_request(f"{event} names a connection")
        return await self.handle(event, int(body["user"]), req, conn)

    async def node_of(self, session_id: int) -> str:
        """The node a running session runs on: this one, or as the store says (remembered)."""
        rt = self.runtimes.get(session_id)
        if rt is not None and not rt.session.ended:
            return self.node
        node = self.located.get(session_id)
        if node is None:
            node = await actions.node_of(self.hub, session_id)
            if node is None:
                raise not_found("no such live session (it may have ended)")
            if len(self.located) >= LOCATED_MAX:
                self.located.clear()
            self.located[session_id] = node
        return node

    async def place(self) -> str:
        """The node a new session should run on (realtime/cluster/placement.py)."""
        members = self.membership
        if members is None or not members.known or set(members.nodes) <= {self.node}:
            if self.draining:
                raise HomeroomError("unavailable", "the server is restarting; start it again")
            return self.node  # alone, or no reading of the registry yet
        nodes = list(members.nodes.values())
        if self.draining:  # its own announcement may not say so yet
            nodes = [n for n in nodes if n.name != self.node]
        running = Counter((await actions.running_nodes(self.hub)).values())
        return placement.place(nodes, running, self.node, self.hub.settings.placement_cpu_full)

    # --- moving sessions between nodes ------------------------------------------------------

    async def adopt(self, session_id: int, from_node: str, reason: str) -> bool:
        """Run here a session whose node is lost (``node_lost``) or draining (``drain``).

        Rebuilt from the store: kind, title, host, classrooms, classrooms asked to link, and
        what its node kept there as it changed (``LiveSession.kept``: the hand queue in order,
        the stage, the lobby and admitted guardians, mutes, locks). The people in that are
        listed as away until they join again (the ``session.moved`` event tells everyone to),
        with the grace period of a dropped connection; everyone else joins again as new. The
        runtime is ready before the move is stored, and the kept state is taken back before
        any request of it is handled, so nobody told of the move finds it missing or empty.
        Returns whether this node moved it (of several trying at once, exactly one does).
        """
        if self.draining or session_id in self.runtimes:
            return False
        self.adopting.add(session_id)
        try:
            found = await actions.running(self.hub, [session_id])
            if not found:
                return False
            rt = self._run(found[0])
            kept: dict[str, Any] | None = None
            async with rt.kept_lock:  # joins and changes wait until what it keeps is back
                try:
                    kept = await actions.move(self.hub, rt.session, from_node, self.node, reason)
                finally:
                    if kept is None:
                        await rt.close()
                        self.runtimes.pop(session_id, None)
                        self.connections.pop(session_id, None)
                if kept is None:
                    return False
                away = rt.session.restore(kept)
                rt.kept = rt.session.kept()
                await attendance.resumed(self.hub, rt.session)
        finally:
            self.adopting.discard(session_id)
        loop = asyncio.get_running_loop()
        for user_id in away:
            self.grace[(session_id, user_id)] = loop.create_task(self._expire(rt, user_id, None))
        self.located.pop(session_id, None)
        log.warning(
            "session %s moved here from %s (%s), keeping %d people's places",
            session_id,
            from_node,
            reason,
            len(away),
        )
        return True

    async def _tell_layer_upstream(
        self, origin: str, session_id: int, user_id: int, track_id: str, layer: int
    ) -> None:
        """As an edge: a viewer served here receives another layer; its origin tells it."""
        body = {"session_id": session_id, "user": user_id, "track_id": track_id, "layer": layer}
        try:
            await self.calls.call(origin, "edge_layer", body)
        except HomeroomError as exc:  # the origin gone or moved: the viewer joins again anyway
            log.info("media.layer for %s in %s not told: %s", user_id, session_id, exc)

    async def _edge_layer_called(self, node: str, body: dict[str, Any]) -> dict[str, Any]:
        """An edge says which layer a viewer it serves now receives: told as a local one's."""
        req = schemas.parse(EdgeLayer, body)
        rt = self.runtimes.get(req.session_id)
        # Only the edge serving that viewer for this session speaks for it.
        if rt is not None and rt.cascade is not None and rt.cascade.viewers.get(req.user) == node:
            rt.layer_changed(req.user, req.track_id, req.layer)
        return {}

    async def _adopt_called(self, node: str, body: dict[str, Any]) -> dict[str, Any]:
        """A draining node hands one of its sessions to this one."""
        moved = await self.adopt(int(body["session_id"]), node, "drain")
        return {"moved": moved}

    async def let_go(self, rt: LiveRuntime) -> None:
        """A session that now runs on another node: its legs here close, nothing is stored
        (its members were told it moved, and join it there)."""
        rt.session.ended = True  # requests for it here now go to its new node
        for key in [k for k in self.grace if k[0] == rt.session.id]:
            self.grace.pop(key).cancel()
        await rt.close()
        self.runtimes.pop(rt.session.id, None)
        self.connections.pop(rt.session.id, None)

    async def move_all(self, timeout: float) -> int:
        """Draining: hand every session of this node to the node placement chooses for it,
        then close the old legs once members had a moment to join on the new node (a short
        freeze for viewers). Bounded by ``timeout``; what could not move is left to end with
        the node (or to be moved by the others when its announcement is gone)."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        handed: list[LiveRuntime] = []
        for rt in list(self.runtimes.values()):
            if rt.session.ended or loop.time() >= deadline:
                continue
            try:
                target = await self.place()
            except HomeroomError:
                break  # no other node to take it
            if target == self.node:
                break
            # From now on requests for it are not taken here: answered not_found (the client
            # tries again) until the store names the new node, then carried there.
            rt.session.ended = True
            try:
                left = max(0.5, deadline - loop.time())
                body = {"session_id": rt.session.id}
                reply = await self.calls.call(target, "adopt", body, timeout_s=left)
            except HomeroomError as exc:
                reply = {}
                log.warning("session %s could not move to %s: %s", rt.session.id, target, exc)
            if reply.get("moved"):
                handed.append(rt)
            else:
                rt.session.ended = False  # it stays, and ends with this node
        if handed:
            await asyncio.sleep(max(0.0, min(HANDOVER_S, deadline - loop.time())))
        for rt in handed:
            await self.let_go(rt)
        return len(handed)

    async def _rule(self, event: str, user_id: int, req: Any) -> dict[str, Any]:
        """A request the rules decide alone (hands, stage, lobby, moderation, self-mute)."""
        rt = self.runtime(req.session_id)
        rule = protocol.RULES[event][1]
        outcome = await self.change(rt, lambda: rule(rt.session, user_id, req))
        await self.carry_out(rt.session.id, outcome.effects)
        return outcome.reply

    async def change(self, rt: LiveRuntime, change: Callable[[], Outcome]) -> Outcome:
        """Change the session's rules' state; what a move keeps is stored before anyone hears
        of the change (the answer included), so nothing acknowledged is lost with the node.

        One change at a time per session (the change and its storing are one step). When
        storing fails the change is undone whole and the error is the answer."""
        async with rt.kept_lock:
            if self.runtimes.get(rt.session.id) is not rt:
                # It waited for a move here that another node won (or the session ended
                # meanwhile): this runtime is gone. The client asks again, and is routed to
                # where the session runs now.
                raise HomeroomError("unavailable", "the session moved; ask again")
            saved = rt.session.save()
            outcome = change()
            await self._keep(rt, saved)
        return outcome

    async def _keep(self, rt: LiveRuntime, saved: Saved | None) -> None:
        """Store what a move keeps if it changed (callers hold ``rt.kept_lock``)."""
        kept = rt.session.kept()
        if kept == rt.kept:
            return
        try:
            await actions.keep(self.hub, rt.session, self.node, kept)
        except BaseException:
            if saved is not None:
                rt.session.undo(saved)
            raise
        rt.kept = kept

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

    async def start_here(self, user_id: int, req: s.SessionStart) -> dict[str, Any]:
        """Start a session on this node (placement chose it)."""
        session = await actions.start(self.hub, user_id, req, self.node)
        self._run(session)
        return {"session": session.summary()}

    def _run(self, session: LiveSession) -> LiveRuntime:
        sid_ = session.id

        async def tell(user_id: int, event: str, data: dict[str, Any]) -> None:
            await self.tell(sid_, user_id, event, data)

        async def edge_call(node: str, body: dict[str, Any]) -> dict[str, Any]:
            timeout = self.hub.settings.cascade_edge_timeout_s
            return await self.calls.call(node, "edge", body, timeout_s=timeout)

        async def tell_offer(user_id: int, offer: SubscribeOffer) -> None:
            await self.tell(sid_, user_id, "rtc.offer", offer_message(sid_, offer))

        rt = LiveRuntime(
            session,
            self.media,
            tell,
            cascade=lambda router: Cascade(sid_, router, self.media, edge_call, tell_offer),
        )
        rt.on_publishing_ended = lambda: self._announce_soon(sid_)
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

    async def recover(self, *, move: bool = False) -> int:
        """The sessions this node was running when it stopped (killed): their state died with it.

        Alone (``move`` false), they end: their unanswered questions move to the class boards
        and members are told, exactly as when a host ends a session. With other nodes
        (``move``: a shared registry), they move instead, as when another node finds this one
        lost: a worker restarted by its supervisor faster than the others notice it gone
        (``node_ttl_s`` plus a beat; its name announced again before it ever expired) would
        otherwise end lessons that are meant to go on. They move here (this node is fresh), by
        the same conditional UPDATE, so a node that noticed first and moved one keeps it; members
        are told by ``session.moved`` and join again.
        """
        sessions = await actions.running_on(self.hub, self.node)
        for session in sessions:
            if move:
                await self.adopt(session.id, self.node, "node_lost")
            else:
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

    def _announce_soon(self, session_id: int) -> None:
        """A track of ``session_id`` ended without its publisher asking (its leg failed, or the
        edge it came through died, and he may never publish again): unless a change told
        meanwhile says so already, everyone is told who still publishes, once for the tracks
        ending together."""
        if session_id not in self._announcing:
            task = asyncio.get_running_loop().create_task(self._announce(session_id))
            self._announcing[session_id] = task

    async def _announce(self, session_id: int) -> None:
        try:
            await asyncio.sleep(ANNOUNCE_AFTER_S)
        finally:
            self._announcing.pop(session_id, None)
        rt = self.runtimes.get(session_id)
        if rt is None or rt.session.ended or rt.publishing() == rt.announced:
            return
        try:
            await self.carry_out(session_id, protocol.state(rt.session))
        except HomeroomError as exc:
            log.warning("session %s: a track's end not told: %s", session_id, exc)

    async def close(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        for announcing in self._announcing.values():
            announcing.cancel()
        for task in self.grace.values():
            task.cancel()
        self.grace.clear()
        for rt in list(self.runtimes.values()):
            await rt.close()  # its edges are told to let go while the bus still answers
        self.runtimes.clear()
        self.connections.clear()
        await self.edges.close()
        await self.calls.close()

    # --- joining --------------------------------------------------------------------------

    async def join(self, conn: Conn, user_id: int, req: s.Join) -> dict[str, Any]:
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
        # Back on a new Socket.IO connection with the peer connections it had: they go on
        # (its media never stopped), and an offer it may have missed meanwhile is sent again.
        resumed = req.resume and old is not None and await rt.resumable(user_id)
        outcome = await self.change(
            rt,
            lambda: protocol.join(
                session,
                user_id,
                name,
                roles,
                new_connection=old is not None and old != conn and not resumed,
            ),
        )
        task = self.grace.pop((session.id, user_id), None)
        if task is not None:
            task.cancel()
        conns[user_id] = conn
        await self.carry_out(session.id, outcome.effects)
        if resumed:
            missed = await rt.missed_offer(user_id)
            if missed is not None:
                await self.tell(session.id, user_id, "rtc.offer", missed)
        return {**outcome.reply, "ice_servers": self.ice_servers(user_id), "resumed": resumed}

    async def leave(self, user_id: int, req: s.SessionRef) -> dict[str, Any]:
        rt = self.runtime(req.session_id)
        outcome = await self.change(rt, lambda: protocol.leave(rt.session, user_id))
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
        """A connection on this node dropped: the sessions it was in hear of it, here or on
        their nodes."""
        conn = (self.node, sid)
        for session_id, conns in list(self.connections.items()):
            if conns.get(user_id) == conn:
                await self.gone(conn, user_id, session_id)
        for session_id in self.joined_elsewhere.pop(sid, {}):
            try:
                await self.route("session.gone", user_id, s.SessionRef(session_id=session_id), sid)
            except HomeroomError as exc:
                log.info("session %s did not hear that %s left: %s", session_id, user_id, exc)

    async def gone(self, conn: Conn, user_id: int, session_id: int) -> None:
        """A participant's connection dropped: media stops; they stay for the grace period."""
        rt = self.runtimes.get(session_id)
        if rt is None or self.connections.get(session_id, {}).get(user_id) != conn:
            return  # not this session's, or they came back on another connection already
        outcome = protocol.disconnected(rt.session, user_id)
        await self.carry_out(session_id, outcome.effects)
        if user_id in rt.session.participants:
            self.grace[(session_id, user_id)] = asyncio.get_running_loop().create_task(
                self._expire(rt, user_id, conn)
            )

    async def node_gone(self, name: str) -> None:
        """Another node left the registry: its connections to sessions here are gone; the
        viewers it served as an edge subscribe again (placed anew); the sessions it fed this
        node as their origin end here."""
        for session_id, conns in list(self.connections.items()):
            for user_id, conn in list(conns.items()):
                if conn[0] == name:
                    await self.gone(conn, user_id, session_id)
        for session_id in [k for k, v in self.located.items() if v == name]:
            del self.located[session_id]
        for rt in list(self.runtimes.values()):
            await self._edge_lost(rt, name)
        await self.edges.origin_gone(name)

    async def _edge_lost(self, rt: LiveRuntime, edge: str) -> None:
        """``edge`` no longer serves ``rt``'s viewers: they subscribe again (placed anew); those
        who published there publish again (after subscribing: on the node that serves them
        next), each told on his connection, in that order."""
        if rt.cascade is None or (edge not in rt.cascade.legs and edge not in rt.cascade.uplinks):
            return
        session_id = rt.session.id
        viewers, publishers = rt.cascade.lost(edge)
        data = {"session_id": session_id, "reason": "edge_lost"}
        for user_id in viewers:
            log.warning("session %s: viewer %s lost edge %s", session_id, user_id, edge)
            await self.tell(session_id, user_id, "rtc.resubscribe", data)
        for user_id in publishers:
            log.warning("session %s: publisher %s lost edge %s", session_id, user_id, edge)
            await self.tell(session_id, user_id, "rtc.republish", data)

    async def _expire(self, rt: LiveRuntime, user_id: int, conn: Conn | None) -> None:
        """The grace period of a dropped connection (``conn``), or of a person a moved session
        kept who has not joined it again yet (None): then they leave."""
        await asyncio.sleep(self.hub.settings.session_grace_s)
        session = rt.session
        if self.grace.get((session.id, user_id)) is asyncio.current_task():
            del self.grace[(session.id, user_id)]
        conns = self.connections.get(session.id, {})
        if conns.get(user_id) == conn and not session.ended:
            try:
                outcome = await self.change(rt, lambda: protocol.leave(session, user_id))
            except HomeroomError as exc:  # not stored (the store or the session moving)
                log.warning("session %s: %s could not leave: %s", session.id, user_id, exc)
                return
            await self.carry_out(session.id, outcome.effects)

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
        """Open the subscribe leg, here or on an edge node when this one is full: the answer
        carries the first offer (or none)."""
        rt = self._admitted(req.session_id, user_id)
        edge = rt.at_edge(user_id)
        if edge is None and user_id not in rt.subscribers:
            edge = self._edge_for(rt, user_id)
        try:
            for _attempt in range(2):
                if edge is None:
                    return await rt.subscribe(user_id)
                try:
                    return await rt.subscribe_at_edge(user_id, edge)
                except HomeroomError as exc:
                    if exc.code not in ("unavailable", "internal"):
                        raise
                    log.warning("session %s: edge %s failed: %s", rt.session.id, edge, exc)
                # The edge did not answer (dead or frozen before the registry says so) or
                # failed: it takes no new viewer for a while, its viewers are placed again,
                # and so is this one, elsewhere.
                self.shunned[edge] = time.monotonic() + EDGE_SHUNNED_S
                await self._edge_lost(rt, edge)
                edge = self._edge_for(rt, user_id)
            raise HomeroomError(
                "unavailable", "the servers for this lesson's viewers are not answering; try again"
            )
        except SignalingError as exc:
            raise _error(exc) from None

    def streams_here(self) -> float:
        """The streams this node sends now: its viewers (own sessions' and as an edge), its
        legs to edges and uplinks to origins, and the legs it receives."""
        own = sum(
            len(rt.subscribers) + (rt.cascade.streams() if rt.cascade else 0)
            for rt in self.runtimes.values()
        )
        return own + sum(edge.streams() for edge in self.edges.sessions.values())

    def _edge_for(self, rt: LiveRuntime, user_id: int) -> str | None:
        """Where a new viewer of a session of this node is served: None (here) or an edge
        (not one shunned: it did not answer lately)."""
        members = self.membership
        if rt.cascade is None or members is None or set(members.nodes) <= {self.node}:
            return None
        now = time.monotonic()
        for name, until in list(self.shunned.items()):
            if until <= now:
                del self.shunned[name]
        nodes = {n: info for n, info in members.nodes.items() if n not in self.shunned}
        settings = self.hub.settings
        conn = self.connections.get(rt.session.id, {}).get(user_id)
        return cascading.place(
            rt.cascade,
            self.node,
            nodes,
            here=self.streams_here(),
            capacity=settings.cascade_node_streams,
            leg_reserve=settings.cascade_leg_reserve,
            cpu_full=settings.placement_cpu_full,
            local_viewers=len(rt.subscribers),
            near=conn[0] if conn else None,
        )

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
        async with rt.kept_lock:
            await actions.transfer_host(self.hub, rt.session, user_id, req.user_id)
            await self._keep(rt, None)  # the roles it keeps (the host is the row's)
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
