"""Live sessions in the store: start, end, link a classroom, hand over the host's rights.

Each action validates, asks the policy, writes in one transaction and then publishes its events,
like every other action. The running session's rules are in ``realtime/domain/live.py``, the
effects of its requests in ``realtime/domain/live_protocol.py``; the node that runs the session's
media (``realtime/live/``) calls these for everything that must be stored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError

from realtime.actions import attendance, questions
from realtime.actions.access import class_access, display_names
from realtime.domain import policy
from realtime.domain.live import LiveSession, SessionKind
from realtime.domain.policy import require
from realtime.domain.roles import TEACHING_ROLES
from realtime.domain.streams import StreamKey, chat_stream, staff_stream
from realtime.errors import HomeroomError, bad_request, conflict, forbidden, not_found
from realtime.hub import Hub
from realtime.live import schemas as s
from realtime.store.db import inserted_id
from realtime.store.schema import classes, live_sessions, memberships

ALREADY_LIVE = "this class is already in a live session"


def announce_streams(session: LiveSession) -> list[StreamKey]:
    """Where a session's start and end are posted: its classrooms' students (or guardians)."""
    if session.kind is SessionKind.MEETING:
        return [chat_stream(session.class_id, "guardians")]
    return [chat_stream(cid, "students") for cid in session.classrooms]


async def start(hub: Hub, user_id: int, req: s.SessionStart, node: str) -> LiveSession:
    """A teacher starts a session of their class; at most one runs per class.

    A dual lesson links the other classrooms whose teacher (or school admin) the starter is at
    once, and asks the teachers of the rest: those classrooms join only when one of their
    teachers accepts (:func:`link`). Linked classrooms are never blocked from their own sessions.
    """
    kind = SessionKind(req.kind)
    linked = sorted(set(req.linked_class_ids) - {req.class_id})
    if kind is SessionKind.DUAL_LESSON and not linked:
        raise bad_request("a dual-teacher lesson links at least one other classroom")
    if kind is not SessionKind.DUAL_LESSON and linked:
        raise bad_request("only dual-teacher lessons link classrooms")
    title = req.title.strip()
    if not title:
        raise bad_request("a session needs a title")
    async with hub.store.transaction() as conn:
        access = await class_access(conn, user_id, req.class_id)
        require(policy.may_start_session(access), "only teachers of this class start sessions")
        # Only after the permission check: others must not learn that the class is live.
        running = await conn.execute(
            select(live_sessions.c.id)
            .where(live_sessions.c.class_id == req.class_id, live_sessions.c.ended_at.is_(None))
            .limit(1)
        )
        if running.first() is not None:
            raise conflict(ALREADY_LIVE)
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
            raise forbidden("linked classrooms must be of the same school")
        accepted = [
            cid
            for cid in linked
            if policy.may_link_classroom(await class_access(conn, user_id, cid))
        ]
        pending = [cid for cid in linked if cid not in accepted]
        session = LiveSession(
            0,
            kind,
            req.class_id,
            user_id,
            title,
            {cid: by_id[cid].name for cid in [req.class_id, *accepted]},
            pending_links={cid: by_id[cid].name for cid in pending},
            stage_places=req.stage_places,
        )
        try:
            # The unique index on a class's running session decides between concurrent starts
            # (PostgreSQL runs them at once; the check above cannot see an uncommitted one).
            res = await conn.execute(
                live_sessions.insert().values(
                    class_id=req.class_id,
                    kind=kind.value,
                    title=title,
                    host_id=user_id,
                    node=node,
                    linked=accepted,
                    pending_links=pending,
                    started_at=hub.now(),
                    live_state=session.kept(),  # its stage places, kept if it moves
                )
            )
        except IntegrityError:
            raise conflict(ALREADY_LIVE) from None
        session.id = inserted_id(res)
        for key in announce_streams(session):
            await hub.store.append(conn, str(key), "session.started", session.summary())
        asked = {**session.summary(), "requested_by": user_id}
        for cid in pending:
            await hub.store.append(conn, str(staff_stream(cid)), "session.link_requested", asked)
    return session


async def end(hub: Hub, session: LiveSession, reason: str) -> bool:
    """Store that the session ended and announce it; its open questions go to the boards.

    Exactly once, whoever calls it and however many nodes do at once (a host ending it, the
    idle watch, several nodes noticing its node is lost): only the caller whose conditional
    UPDATE (``WHERE ended_at IS NULL``) changed the row announces it. Returns whether it did.
    """
    data = {**session.summary(), "ended": True, "reason": reason}
    async with hub.store.transaction() as conn:
        res = await conn.execute(
            live_sessions.update()
            .where(live_sessions.c.id == session.id, live_sessions.c.ended_at.is_(None))
            .values(ended_at=hub.now(), pending_links=[])
        )
        if res.rowcount != 1:
            return False
        for key in announce_streams(session):
            await hub.store.append(conn, str(key), "session.ended", data)
        for cid in session.pending_links:
            await hub.store.append(conn, str(staff_stream(cid)), "session.ended", data)
    await attendance.session_ended(hub, session)
    for cid in session.classrooms:
        await questions.close_session(hub, cid, session.id)
    return True


def _running_on(session: LiveSession, node: str) -> Any:
    """The session's row while it runs on ``node`` (a conditional UPDATE's WHERE)."""
    return and_(
        live_sessions.c.id == session.id,
        live_sessions.c.node == node,
        live_sessions.c.ended_at.is_(None),
    )


async def move(
    hub: Hub, session: LiveSession, from_node: str, to_node: str, reason: str
) -> dict[str, Any] | None:
    """Store that a running session now runs on ``to_node`` and tell its classes.

    Exactly once however many nodes try at once (each that noticed its node is lost): only the
    caller whose conditional UPDATE (``WHERE node = from_node``) changed the row announces it,
    with a ``session.moved`` event in the class streams, so that every member (on any node, or
    reconnecting later) learns it and joins again. Returns what the session keeps
    (:meth:`LiveSession.kept`, ``{}`` if nothing was stored), read after the UPDATE in the same
    transaction: the old node's last change either committed before it (and is read) or finds
    the row moved (and was never acknowledged). None: another caller moved it.
    """
    data = {**session.summary(), "node": to_node, "reason": reason}
    async with hub.store.transaction() as conn:
        res = await conn.execute(
            live_sessions.update().where(_running_on(session, from_node)).values(node=to_node)
        )
        if res.rowcount != 1:
            return None
        kept = (
            await conn.execute(
                select(live_sessions.c.live_state).where(live_sessions.c.id == session.id)
            )
        ).scalar_one()
        for key in announce_streams(session):
            await hub.store.append(conn, str(key), "session.moved", data)
    return dict(kept or {})


async def keep(hub: Hub, session: LiveSession, node: str, kept: dict[str, Any]) -> None:
    """Store what a move keeps (:meth:`LiveSession.kept`) as it changed on ``node``.

    Written before the change is acknowledged or told: a hand raised and answered survives a
    ``kill -9`` of the node. Only while the session runs on ``node``: a node that others took
    for lost (and moved the session from) is answered ``unavailable`` and changes nothing.
    """
    async with hub.store.transaction() as conn:
        res = await conn.execute(
            live_sessions.update().where(_running_on(session, node)).values(live_state=kept)
        )
        if res.rowcount != 1:
            raise HomeroomError(
                "unavailable", "this session is moving to another server; try again"
            )


async def link(hub: Hub, user_id: int, session: LiveSession, class_id: int, accept: bool) -> None:
    """A teacher of ``class_id`` (or a school admin) answers a dual lesson's request to link it.

    Accepted, the classroom becomes part of the lesson and its students are told; declined, the
    request is gone. Nothing else about the class changes.
    """
    async with hub.store.read() as conn:
        access = await class_access(conn, user_id, class_id)
    if not access.is_member and not access.school_admin:
        raise forbidden("you are not a member of this class")
    require(policy.may_link_classroom(access), "only a teacher of that class links it")
    name = session.require_pending_link(class_id)
    # Change the rules' state first (no await between its check and change), then store it.
    (session.accept_link if accept else session.decline_link)(class_id)
    try:
        async with hub.store.transaction() as conn:
            await conn.execute(
                live_sessions.update()
                .where(live_sessions.c.id == session.id)
                .values(
                    linked=[c for c in session.classrooms if c != session.class_id],
                    pending_links=sorted(session.pending_links),
                )
            )
            if accept:
                key = str(chat_stream(class_id, "students"))
                await hub.store.append(conn, key, "session.started", session.summary())
    except BaseException:
        session.classrooms.pop(class_id, None)
        session.pending_links[class_id] = name
        raise


async def transfer_host(hub: Hub, session: LiveSession, actor: int, user_id: int) -> None:
    session.transfer_host(actor, user_id)
    async with hub.store.transaction() as conn:
        # The stored host decides who sees every classroom's questions.
        await conn.execute(
            live_sessions.update().where(live_sessions.c.id == session.id).values(host_id=user_id)
        )
        # Everyone who follows the lesson's class streams sees the new host once it is stored.
        for key in announce_streams(session):
            await hub.store.append(conn, str(key), "session.host", session.summary())


async def participant(
    hub: Hub, user_id: int, session: LiveSession
) -> tuple[str, dict[int, set[str]]]:
    """A joining person's display name and roles in the session's (and asked) classrooms."""
    class_ids = [*session.classrooms, *session.pending_links]
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(memberships.c.class_id, memberships.c.role).where(
                memberships.c.user_id == user_id, memberships.c.class_id.in_(class_ids)
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
    return name, roles


def teaches_pending(session: LiveSession, roles: dict[int, set[str]]) -> list[int]:
    """Classrooms still asked to link of which this person is a teacher."""
    teaching = {r.value for r in TEACHING_ROLES}
    return [cid for cid in session.pending_links if roles.get(cid, set()) & teaching]


async def running_on(hub: Hub, node: str) -> list[LiveSession]:
    """The sessions a node was running when it stopped (their state died with it)."""
    return await _load(hub, live_sessions.c.node == node)


async def running_nodes(hub: Hub) -> dict[int, str]:
    """Every running session of the deployment, and the node it runs on."""
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(live_sessions.c.id, live_sessions.c.node).where(
                live_sessions.c.ended_at.is_(None)
            )
        )
        return {r.id: r.node for r in rows}


async def node_of(hub: Hub, session_id: int) -> str | None:
    """The node a running session runs on (None: no such session running)."""
    async with hub.store.read() as conn:
        row = (
            await conn.execute(
                select(live_sessions.c.node).where(
                    live_sessions.c.id == session_id, live_sessions.c.ended_at.is_(None)
                )
            )
        ).first()
    return None if row is None else str(row.node)


async def running(hub: Hub, ids: list[int]) -> list[LiveSession]:
    """These running sessions as stored, whichever node runs them."""
    return await _load(hub, live_sessions.c.id.in_(ids))


async def running_for(hub: Hub, class_id: int) -> list[LiveSession]:
    """The running sessions a class may be part of, as stored, whichever node runs them: its
    own, and every dual lesson (few at a time; the caller looks at their classrooms)."""
    kinds = live_sessions.c.kind == SessionKind.DUAL_LESSON.value
    return await _load(hub, or_(live_sessions.c.class_id == class_id, kinds))


async def _load(hub: Hub, where: Any) -> list[LiveSession]:
    query = select(live_sessions).where(live_sessions.c.ended_at.is_(None))
    if where is not None:
        query = query.where(where)
    async with hub.store.read() as conn:
        rows = list(await conn.execute(query.order_by(live_sessions.c.id)))
        wanted = {
            c for r in rows for c in [r.class_id, *(r.linked or []), *(r.pending_links or [])]
        }
        names = (
            {
                r.id: r.name
                for r in await conn.execute(
                    select(classes.c.id, classes.c.name).where(classes.c.id.in_(sorted(wanted)))
                )
            }
            if wanted
            else {}
        )
    out = []
    for row in rows:
        pending: list[Any] = row.pending_links or []
        out.append(
            LiveSession(
                row.id,
                SessionKind(row.kind),
                row.class_id,
                row.host_id,
                row.title,
                {cid: names.get(cid, "") for cid in [row.class_id, *row.linked]},
                pending_links={cid: names.get(cid, "") for cid in pending},
            )
        )
    return out
