"""A person's push subscriptions and push settings (REST: /api/v1/push/...)."""

from __future__ import annotations

import binascii
from typing import Any

from sqlalchemy import delete, select

from realtime.domain import push as rules
from realtime.errors import bad_request
from realtime.hub import Hub
from realtime.push.dispatcher import load_prefs
from realtime.push.vapid import b64url_decode
from realtime.schemas import PushSettings, PushSubscribe, PushUnsubscribe
from realtime.store.schema import push_settings, push_subscriptions


def _key(text: str, size: int, what: str) -> None:
    try:
        raw = b64url_decode(text)
    except (binascii.Error, ValueError):
        raise bad_request(f"{what} is not base64url") from None
    if len(raw) != size or (what == "keys.p256dh" and raw[0] != 4):
        raise bad_request(f"{what} is not a {'P-256 public key' if size == 65 else 'secret'}")


async def subscribe(hub: Hub, user_id: int, req: PushSubscribe) -> dict[str, Any]:
    """Remember a browser's subscription for this person (the same endpoint: replaced, so a
    shared device that changes hands pushes to whoever subscribed last)."""
    if not rules.endpoint_allowed(req.endpoint, hub.settings.push_endpoint_hosts):
        raise bad_request("the endpoint is not a push service this server sends to")
    _key(req.keys.p256dh, 65, "keys.p256dh")
    _key(req.keys.auth, 16, "keys.auth")
    async with hub.store.transaction() as conn:
        await conn.execute(
            delete(push_subscriptions).where(push_subscriptions.c.endpoint == req.endpoint)
        )
        await conn.execute(
            push_subscriptions.insert().values(
                user_id=user_id,
                endpoint=req.endpoint,
                p256dh=req.keys.p256dh,
                auth=req.keys.auth,
                created_at=hub.now(),
            )
        )
        rows = (
            await conn.execute(
                select(push_subscriptions.c.id)
                .where(push_subscriptions.c.user_id == user_id)
                .order_by(push_subscriptions.c.id.desc())
            )
        ).all()
        extra = [r.id for r in rows[rules.MAX_SUBSCRIPTIONS_PER_PERSON :]]
        if extra:
            await conn.execute(delete(push_subscriptions).where(push_subscriptions.c.id.in_(extra)))
    return {"subscribed": True, "devices": min(len(rows), rules.MAX_SUBSCRIPTIONS_PER_PERSON)}


async def unsubscribe(hub: Hub, user_id: int, req: PushUnsubscribe) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        res = await conn.execute(
            delete(push_subscriptions).where(
                push_subscriptions.c.endpoint == req.endpoint,
                push_subscriptions.c.user_id == user_id,
            )
        )
    return {"removed": bool(res.rowcount)}


async def get_settings(hub: Hub, user_id: int) -> dict[str, Any]:
    async with hub.store.read() as conn:
        prefs = (await load_prefs(conn, [user_id]))[user_id]
        n = len(
            (
                await conn.execute(
                    select(push_subscriptions.c.id).where(push_subscriptions.c.user_id == user_id)
                )
            ).all()
        )
    return {
        **prefs.view(),
        "devices": n,
        "time_zone": hub.settings.school_time_zone,
        "available": list(rules.KINDS),
    }


async def put_settings(hub: Hub, user_id: int, req: PushSettings) -> dict[str, Any]:
    unknown = sorted(set(req.kinds) - set(rules.KINDS))
    if unknown:
        raise bad_request(f"unknown push kinds: {', '.join(unknown)[:200]}")
    start = end = None
    if req.quiet_hours is not None:
        start = rules.parse_hhmm(req.quiet_hours.start)
        end = rules.parse_hhmm(req.quiet_hours.end)
        if start is None or end is None:
            raise bad_request("quiet hours are HH:MM, 00:00 to 23:59")
    values = {
        "kinds": sorted(set(req.kinds)),
        "quiet_start": start,
        "quiet_end": end,
        "updated_at": hub.now(),
    }
    async with hub.store.transaction() as conn:
        await conn.execute(delete(push_settings).where(push_settings.c.user_id == user_id))
        await conn.execute(push_settings.insert().values(user_id=user_id, **values))
    return await get_settings(hub, user_id)


def public_key(hub: Hub) -> dict[str, Any]:
    pusher = hub.pusher
    return {
        "enabled": pusher is not None,
        "public_key": pusher.vapid.public_key if pusher is not None else None,
    }
