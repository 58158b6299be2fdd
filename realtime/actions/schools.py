"""A school's own settings, read by the actions that need them."""

from __future__ import annotations

from sqlalchemy import select

from realtime.domain.exportlang import DEFAULT_TIME_ZONE
from realtime.store.db import DbConnection
from realtime.store.schema import classes, schools


async def school_time_zone(conn: DbConnection, class_id: int) -> str:
    """The IANA time zone of the class's school (Asia/Shanghai unless the school set one)."""
    row = (
        await conn.execute(
            select(schools.c.time_zone)
            .join(classes, classes.c.school_id == schools.c.id)
            .where(classes.c.id == class_id)
        )
    ).first()
    return str(row.time_zone) if row is not None and row.time_zone else DEFAULT_TIME_ZONE
