"""Idempotent creation: a resent request that creates something gets the original back.

Chat messages, notices and questions carry a client-generated ``client_id``; a unique index on
(author, client id) stops a second row. A resend is rare, so the original is not looked for
first: the insert meets the unique key (or a check refuses: the sender was muted, rate-limited
or removed since), and only then is the original looked up and returned with
``"duplicate": true``, in the same form as the first answer (display names included).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import IntegrityError

from realtime.errors import HomeroomError
from realtime.hub import Hub
from realtime.store.db import DbConnection

Answer = dict[str, Any]


async def create_once(
    hub: Hub,
    create: Callable[[DbConnection], Awaitable[Answer]],
    original: Callable[[DbConnection], Awaitable[Answer | None]],
) -> Answer:
    """Run ``create`` in one transaction; if it fails, answer with ``original`` if there is one.

    ``create`` writes and returns the answer (its events are published on commit);
    ``original`` reads the earlier creation of the same request, or None if there is none, in
    which case the failure stands.
    """
    try:
        async with hub.store.transaction() as conn:
            return await create(conn)
    except (IntegrityError, HomeroomError):
        async with hub.store.read() as conn:
            answer = await original(conn)
        if answer is None:
            raise
        return {**answer, "duplicate": True}
