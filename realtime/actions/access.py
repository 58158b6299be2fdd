"""Loading what a person is to a class or a stream, for the policy to decide on."""

from __future__ import annotations

from sqlalchemy import and_, bindparam, or_, select

from realtime.domain import policy
from realtime.domain.roles import ClassAccess, Role
from realtime.domain.streams import StreamKey, Visibility, parse_stream
from realtime.errors import forbidden, not_found
from realtime.store.db import DbConnection
from realtime.store.prepared import Prepared
from realtime.store.schema import (
    classes,
    conversations,
    guardian_links,
    live_sessions,
    memberships,
    users,
)

# Built once: every request checks access, most with these two.
_ROLES = Prepared(
    select(memberships.c.role).where(
        memberships.c.user_id == bindparam("user_id"),
        memberships.c.class_id == bindparam("class_id"),
    )
)
_CHILDREN = Prepared(
    select(guardian_links.c.student_id).where(
        guardian_links.c.guardian_id == bindparam("user_id"),
        guardian_links.c.class_id == bindparam("class_id"),
        guardian_links.c.status == "approved",
    )
)


async def class_access(conn: DbConnection, user_id: int, class_id: int) -> ClassAccess:
    params = {"user_id": user_id, "class_id": class_id}
    roles = frozenset(Role(r.role) for r in await conn.execute(_ROLES, params))
    children: frozenset[int] = frozenset()
    if Role.GUARDIAN in roles:
        children = frozenset(r.student_id for r in await conn.execute(_CHILDREN, params))
    admin = False
    if not roles:
        row = (
            await conn.execute(
                select(users.c.school_admin, users.c.school_id).where(users.c.id == user_id)
            )
        ).first()
        cls = (
            await conn.execute(select(classes.c.school_id).where(classes.c.id == class_id))
        ).first()
        admin = bool(row and cls and row.school_admin and row.school_id == cls.school_id)
    return ClassAccess(user_id, class_id, roles, children, admin)


async def require_class(conn: DbConnection, class_id: int) -> None:
    row = (await conn.execute(select(classes.c.id).where(classes.c.id == class_id))).first()
    if row is None:
        raise not_found("no such class")


async def conversation_participants(conn: DbConnection, conv_id: int) -> frozenset[int]:
    row = (
        await conn.execute(
            select(conversations.c.user_a, conversations.c.user_b).where(
                conversations.c.id == conv_id
            )
        )
    ).first()
    if row is None:
        raise not_found("no such conversation")
    return frozenset((row.user_a, row.user_b))


async def stream_visibility(
    conn: DbConnection, user_id: int, stream: StreamKey
) -> tuple[Visibility, ClassAccess | None, frozenset[int]]:
    """How much of a stream a person sees, with what the policy decided it from."""
    if stream.kind == "user":
        access = ClassAccess(user_id, 0)
        return policy.stream_visibility(stream, access), access, frozenset()
    if stream.kind == "conv":
        participants = await conversation_participants(conn, stream.id)
        access = ClassAccess(user_id, 0)
        vis = policy.stream_visibility(stream, access, participants=participants)
        return vis, access, participants
    class_id = stream.class_id
    assert class_id is not None
    access = await class_access(conn, user_id, class_id)
    if not access.roles:
        await require_class(conn, class_id)  # a member's class exists: skip the look-up
    vis = policy.stream_visibility(stream, access)
    # A live session's Q&A: its host and teachers see every classroom's questions.
    if (
        stream.kind == "qa"
        and stream.part
        and vis is not Visibility.STAFF
        and await session_staff(conn, user_id, int(stream.part[1:]), class_id)
    ):
        vis = Visibility.STAFF
    return vis, access, frozenset()


async def session_staff(conn: DbConnection, user_id: int, session_id: int, class_id: int) -> bool:
    """Whether this person teaches the live session that ``class_id`` takes part in."""
    row = (
        await conn.execute(select(live_sessions).where(live_sessions.c.id == session_id))
    ).first()
    if row is None or class_id not in (row.class_id, *row.linked):
        return False
    if row.host_id == user_id:
        return True
    return (await class_access(conn, user_id, row.class_id)).is_staff


async def session_classrooms(conn: DbConnection, session_id: int) -> tuple[int, ...] | None:
    """The classes of a session that has not ended, or None."""
    row = (
        await conn.execute(select(live_sessions).where(live_sessions.c.id == session_id))
    ).first()
    if row is None or row.ended_at is not None:
        return None
    return (row.class_id, *row.linked)


async def require_visible(
    conn: DbConnection, user_id: int, key: str
) -> tuple[StreamKey, Visibility, ClassAccess | None, frozenset[int]]:
    stream = parse_stream(key)
    vis, access, participants = await stream_visibility(conn, user_id, stream)
    if vis is Visibility.NONE:
        raise forbidden("you are not a member of this stream")
    return stream, vis, access, participants


# Every class a person is a member of, with their roles and (as a guardian) approved children
# there: one row per role, times their children for the guardian role.
_MEMBERSHIPS = Prepared(
    select(memberships.c.class_id, memberships.c.role, guardian_links.c.student_id)
    .select_from(
        memberships.outerjoin(
            guardian_links,
            and_(
                memberships.c.role == Role.GUARDIAN.value,
                guardian_links.c.guardian_id == memberships.c.user_id,
                guardian_links.c.class_id == memberships.c.class_id,
                guardian_links.c.status == "approved",
            ),
        )
    )
    .where(memberships.c.user_id == bindparam("user_id"))
)
_CONVERSATION_IDS = Prepared(
    select(conversations.c.id).where(
        or_(
            conversations.c.user_a == bindparam("user_id"),
            conversations.c.user_b == bindparam("user_id"),
        )
    )
)


async def member_accesses(conn: DbConnection, user_id: int) -> dict[int, ClassAccess]:
    """What this person is to each class they are a member of, as :func:`class_access` says
    for each, in one statement (a catch-up reads them all)."""
    roles: dict[int, set[Role]] = {}
    children: dict[int, set[int]] = {}
    for r in await conn.execute(_MEMBERSHIPS, {"user_id": user_id}):
        roles.setdefault(r.class_id, set()).add(Role(r.role))
        if r.student_id is not None:
            children.setdefault(r.class_id, set()).add(r.student_id)
    return {
        class_id: ClassAccess(
            user_id, class_id, frozenset(rs), frozenset(children.get(class_id, ()))
        )
        for class_id, rs in roles.items()
    }


async def followed_streams(
    conn: DbConnection, user_id: int, accesses: dict[int, ClassAccess]
) -> dict[str, Visibility]:
    """Every stream this person follows, from their memberships (``accesses``, from
    :func:`member_accesses`) and conversations."""
    out: dict[str, Visibility] = {f"user:{user_id}": Visibility.MEMBER}
    for class_id, access in accesses.items():
        candidates = [
            StreamKey("class", class_id, "students"),
            StreamKey("class", class_id, "guardians"),
            StreamKey("notices", class_id, "students"),
            StreamKey("notices", class_id, "guardians"),
            StreamKey("qa", class_id),
            StreamKey("staff", class_id),
        ]
        for key in candidates:
            vis = policy.stream_visibility(key, access)
            if vis > Visibility.NONE:
                out[str(key)] = vis
    convs = await conn.execute(_CONVERSATION_IDS, {"user_id": user_id})
    for c in convs:
        out[f"conv:{c.id}"] = Visibility.MEMBER
    return out


async def guardians_of(
    conn: DbConnection, class_id: int, student_ids: list[int] | None = None
) -> dict[int, list[int]]:
    cond = and_(guardian_links.c.class_id == class_id, guardian_links.c.status == "approved")
    if student_ids is not None:
        cond = and_(cond, guardian_links.c.student_id.in_(student_ids))
    rows = await conn.execute(
        select(guardian_links.c.student_id, guardian_links.c.guardian_id).where(cond)
    )
    out: dict[int, list[int]] = {}
    for r in rows:
        out.setdefault(r.student_id, []).append(r.guardian_id)
    return out


async def members_with_role(conn: DbConnection, class_id: int, role: Role) -> list[int]:
    rows = await conn.execute(
        select(memberships.c.user_id).where(
            memberships.c.class_id == class_id, memberships.c.role == role.value
        )
    )
    return sorted(r.user_id for r in rows)


async def display_names(conn: DbConnection, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await conn.execute(select(users.c.id, users.c.display_name).where(users.c.id.in_(ids)))
    return {r.id: r.display_name for r in rows}
