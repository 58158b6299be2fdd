"""Account actions: sign in, refresh, sign out, register, who am I."""

from __future__ import annotations

import functools
import secrets
from typing import Any

from sqlalchemy import select

from realtime.auth import hash_password, new_refresh_token, refresh_hash, verify_password
from realtime.errors import HomeroomError, conflict, not_found
from realtime.hub import Hub
from realtime.schemas import Login, RefreshBody, Register
from realtime.store.db import DbConnection, inserted_id
from realtime.store.schema import (
    classes,
    guardian_links,
    memberships,
    refresh_tokens,
    users,
)


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the username is unknown, so that a wrong username takes
    as long as a wrong password. Made at the first sign-in, not at import (it costs ~50 ms+)."""
    return hash_password(secrets.token_urlsafe(16))


async def _issue(hub: Hub, conn: DbConnection, user: Any) -> dict[str, Any]:
    token, digest = new_refresh_token()
    await conn.execute(
        refresh_tokens.insert().values(
            token_hash=digest,
            user_id=user.id,
            expires_at=hub.now() + hub.settings.refresh_token_ttl_s,
        )
    )
    return {
        "access_token": hub.tokens.issue(user.id, user.school_id),
        "refresh_token": token,
        "expires_in": hub.settings.access_token_ttl_s,
        "user": {"id": user.id, "username": user.username, "display_name": user.display_name},
    }


async def login(hub: Hub, req: Login) -> dict[str, Any]:
    hub.check_rate(0, "login:" + req.username.lower())
    async with hub.store.transaction() as conn:
        user = (await conn.execute(select(users).where(users.c.username == req.username))).first()
        ok = verify_password(user.password_hash if user else _dummy_hash(), req.password)
        if user is None or not ok:
            raise HomeroomError("unauthorized", "wrong username or password")
        return await _issue(hub, conn, user)


async def refresh(hub: Hub, req: RefreshBody) -> dict[str, Any]:
    """Trade a refresh token for new tokens; the old refresh token stops working."""
    digest = refresh_hash(req.refresh_token)
    async with hub.store.transaction() as conn:
        row = (
            await conn.execute(select(refresh_tokens).where(refresh_tokens.c.token_hash == digest))
        ).first()
        if row is None or row.revoked_at is not None or row.expires_at < hub.now():
            raise HomeroomError("unauthorized", "the refresh token is not valid; sign in again")
        await conn.execute(
            refresh_tokens.update()
            .where(refresh_tokens.c.token_hash == digest)
            .values(revoked_at=hub.now())
        )
        user = (await conn.execute(select(users).where(users.c.id == row.user_id))).one()
        return await _issue(hub, conn, user)


async def logout(hub: Hub, req: RefreshBody) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        await conn.execute(
            refresh_tokens.update()
            .where(refresh_tokens.c.token_hash == refresh_hash(req.refresh_token))
            .values(revoked_at=hub.now())
        )
    return {}


async def create_user(
    conn: DbConnection,
    school_id: int,
    username: str,
    display_name: str,
    password: str | None,
    *,
    phone: str | None = None,
    school_admin: bool = False,
    now: float,
    password_hash: str | None = None,
) -> int:
    taken = (await conn.execute(select(users.c.id).where(users.c.username == username))).first()
    if taken is not None:
        raise conflict(f"the username {username} is taken")
    res = await conn.execute(
        users.insert().values(
            school_id=school_id,
            username=username,
            display_name=display_name,
            password_hash=password_hash or (hash_password(password) if password else None),
            phone=phone,
            school_admin=school_admin,
            created_at=now,
        )
    )
    return inserted_id(res)


async def register(hub: Hub, req: Register) -> dict[str, Any]:
    """A guardian creates an account with a class join code (then asks to link to a child)."""
    hub.check_rate(0, "register")
    async with hub.store.transaction() as conn:
        cls = (
            await conn.execute(select(classes).where(classes.c.join_code == req.join_code))
        ).first()
        if cls is None:
            raise not_found("no class has this join code")
        uid = await create_user(
            conn, cls.school_id, req.username, req.display_name, req.password, now=hub.now()
        )
        user = (await conn.execute(select(users).where(users.c.id == uid))).one()
        return await _issue(hub, conn, user)


async def me(hub: Hub, user_id: int) -> dict[str, Any]:
    async with hub.store.read() as conn:
        user = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        if user is None:
            raise HomeroomError("unauthorized", "this account no longer exists")
        rows = await conn.execute(
            select(memberships.c.class_id, memberships.c.role, classes.c.name)
            .join(classes, classes.c.id == memberships.c.class_id)
            .where(memberships.c.user_id == user_id)
        )
        by_class: dict[int, dict[str, Any]] = {}
        for r in rows:
            entry = by_class.setdefault(
                r.class_id, {"id": r.class_id, "name": r.name, "roles": [], "children": []}
            )
            entry["roles"].append(r.role)
        links = await conn.execute(
            select(
                guardian_links.c.class_id,
                guardian_links.c.student_id,
                guardian_links.c.status,
                guardian_links.c.id,
                users.c.display_name,
            )
            .join(users, users.c.id == guardian_links.c.student_id)
            .where(guardian_links.c.guardian_id == user_id)
        )
        pending = []
        for link in links:
            child = {"id": link.student_id, "name": link.display_name}
            if link.status == "approved" and link.class_id in by_class:
                by_class[link.class_id]["children"].append(child)
            elif link.status == "pending":
                pending.append({"link_id": link.id, "class_id": link.class_id, "child": child})
    return {
        "user": {
            "id": user.id,
            "username": user.username,
            "display_name": user.display_name,
            "school_admin": user.school_admin,
        },
        "classes": sorted(by_class.values(), key=lambda c: c["id"]),
        "pending_links": pending,
    }
