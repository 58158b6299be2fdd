"""Account actions: sign in, refresh, sign out, register, who am I."""

from __future__ import annotations

import math
import time
from typing import Any

from sqlalchemy import select

from realtime.auth import hash_password, new_refresh_token, refresh_hash
from realtime.domain.signin import Refusal
from realtime.errors import HomeroomError, conflict, not_found
from realtime.hub import Hub
from realtime.passwords import PoolBusy
from realtime.schemas import Login, RefreshBody, Register
from realtime.store.db import DbConnection, inserted_id
from realtime.store.schema import (
    classes,
    guardian_links,
    memberships,
    refresh_tokens,
    users,
)


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


class Throttled(HomeroomError):
    """Refused before any password was checked; REST adds a ``Retry-After`` header."""

    def __init__(self, what: str, refusal: Refusal) -> None:
        self.retry_after = max(1, math.ceil(refusal.retry_after))
        super().__init__(
            "rate_limited",
            f"too many {what}; try again in {self.retry_after} s",
            reason="sign_in_throttled",
            retry_after_s=self.retry_after,
        )


async def login(
    hub: Hub, req: Login, address: str, device_token: str | None = None
) -> dict[str, Any]:
    """Sign in. ``device_token``: the one this client got at an earlier sign-in (a cookie, or
    ``req.device_token``); it spares the owner the backoff an attacker caused."""
    token = req.device_token or device_token
    device = hub.devices.device_id(token, req.username)
    ticket = hub.signin.begin(req.username, address, device, time.monotonic())
    if isinstance(ticket, Refusal):
        raise Throttled("sign-in attempts", ticket)
    ok = False
    try:
        async with hub.store.read() as conn:
            user = (
                await conn.execute(select(users).where(users.c.username == req.username))
            ).first()
        stored = user.password_hash if user is not None else await hub.passwords.unknown_user_hash()
        ok = await hub.passwords.verify(stored, req.password) and user is not None
    except BaseException:
        hub.signin.abandon(ticket, time.monotonic())
        raise
    hub.signin.finish(ticket, ok, time.monotonic())
    if user is None or not ok:
        raise HomeroomError("unauthorized", "wrong username or password", reason="wrong_password")
    async with hub.store.transaction() as conn:
        result = await _issue(hub, conn, user)
    result["device_token"] = token if device is not None else hub.devices.issue(req.username)
    return result


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


async def register(hub: Hub, req: Register, address: str) -> dict[str, Any]:
    """A guardian creates an account with a class join code (then asks to link to a child).

    Only failures (a join code no class has, a taken name) count against the address, so one
    attacker guessing codes blocks nobody else; the password is hashed off the event loop.
    """
    refusal = hub.signin.begin_register(address, time.monotonic())
    if refusal is not None:
        raise Throttled("failed registrations", refusal)
    outcome = "failed"
    try:
        async with hub.store.read() as conn:
            cls = (
                await conn.execute(select(classes).where(classes.c.join_code == req.join_code))
            ).first()
            if cls is None:
                raise not_found("no class has this join code")
            taken = (
                await conn.execute(select(users.c.id).where(users.c.username == req.username))
            ).first()
            if taken is not None:
                raise conflict(f"the username {req.username} is taken")
        try:
            digest = await hub.passwords.hash(req.password)
        except PoolBusy:
            outcome = "busy"
            raise
        async with hub.store.transaction() as conn:
            uid = await create_user(
                conn,
                cls.school_id,
                req.username,
                req.display_name,
                None,
                password_hash=digest,
                now=hub.now(),
            )
            user = (await conn.execute(select(users).where(users.c.id == uid))).one()
            result = await _issue(hub, conn, user)
        outcome = "ok"
        return result
    finally:
        hub.signin.finish_register(address, outcome, time.monotonic())


async def me(hub: Hub, user_id: int) -> dict[str, Any]:
    async with hub.store.read() as conn:
        user = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        if user is None:
            raise HomeroomError(
                "unauthorized", "this account no longer exists", reason="account_gone"
            )
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
