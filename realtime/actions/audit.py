"""The audit log: who did what, written in the same transaction as the action it records.

Recorded: roster imports, guardian links approved or refused, moderation (mutes, deleting
someone's message), exports (receipts CSV) and deletes. Read by the school's admins, newest
first, a page at a time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from realtime.domain import policy
from realtime.domain.policy import require
from realtime.errors import HomeroomError
from realtime.hub import Hub
from realtime.schemas import AuditQuery
from realtime.store.db import DbConnection
from realtime.store.schema import audit_log, classes, users


async def record(
    conn: DbConnection,
    *,
    actor_id: int | None,
    action: str,
    now: float,
    class_id: int | None = None,
    school_id: int | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write one entry on ``conn``: it commits or rolls back with the action."""
    if school_id is None:
        school_id = (
            await conn.execute(select(classes.c.school_id).where(classes.c.id == class_id))
        ).scalar_one()
    await conn.execute(
        audit_log.insert().values(
            school_id=school_id,
            at=now,
            actor_id=actor_id,
            action=action,
            class_id=class_id,
            target=target,
            detail=detail or {},
        )
    )


async def read(hub: Hub, user_id: int, req: AuditQuery) -> dict[str, Any]:
    limit = min(req.limit, hub.settings.history_page_max)
    async with hub.store.read() as conn:
        me = (
            await conn.execute(
                select(users.c.school_id, users.c.school_admin).where(users.c.id == user_id)
            )
        ).first()
        if me is None:
            raise HomeroomError(
                "unauthorized", "this account no longer exists", reason="account_gone"
            )
        admin = bool(me.school_admin)
        require(policy.may_read_audit(admin), "only school admins read the audit log")
        query = (
            select(audit_log, users.c.display_name.label("actor_name"))
            .outerjoin(users, users.c.id == audit_log.c.actor_id)
            .where(audit_log.c.school_id == me.school_id)
            .order_by(audit_log.c.id.desc())
            .limit(limit + 1)
        )
        if req.before is not None:
            query = query.where(audit_log.c.id < req.before)
        rows = list(await conn.execute(query))
    page = rows[:limit]
    return {
        "entries": [
            {
                "id": r.id,
                "at": r.at,
                "actor": None if r.actor_id is None else {"id": r.actor_id, "name": r.actor_name},
                "action": r.action,
                "class_id": r.class_id,
                "target": r.target,
                "detail": r.detail,
            }
            for r in page
        ],
        # Pass as ``before`` for the next (older) page; null: this was the oldest.
        "next_before": page[-1].id if len(rows) > limit else None,
    }
