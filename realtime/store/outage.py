"""The database unreachable, or busy: which errors mean it, and what the client is told.

When PostgreSQL cannot be reached (stopped, restarting, the network cut), every request that
needs it answers ``unavailable`` (HTTP 503) with a clear message, never ``internal``: nothing was
changed, because a transaction the server lost its connection in is rolled back by PostgreSQL.
The one ambiguous case is a connection lost while ``COMMIT`` was on the wire: the request is
answered ``unavailable`` though it may have committed; clients resend with the same client id
(chat, notices) and the action is idempotent on it, so nothing acknowledged is lost or doubled.

SQLAlchemy invalidates its whole pool at the first disconnect it sees, so once the database
answers again new connections are made and service resumes by itself.

A database that answers but whose pooled connections are all in use (a burst of requests) is
not down: the request waits its turn (realtime/store/db.py, a bounded queue) and, beyond the
queue or its wait, answers ``unavailable`` with the reason ``database_busy``; ``/healthz`` still
says the store is up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg
from sqlalchemy import exc as sa

from realtime.errors import HomeroomError

# SQLSTATE classes and codes that mean "the server is not there for you right now": 08 connection
# exception; 57P01-57P03 admin/crash shutdown, cannot connect now (starting or recovering); 53300
# too many connections.
_CONNECTION_STATES = ("08", "57P01", "57P02", "57P03", "53300")


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says the database could not be reached (not that a statement failed)."""
    if isinstance(exc, sa.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        inner = getattr(orig, "__cause__", None) or orig
        return orig is not None and (_asyncpg_unreachable(orig) or _asyncpg_unreachable(inner))
    return _asyncpg_unreachable(exc)


def pool_exhausted(exc: BaseException) -> bool:
    """True when no pooled connection came free in time: the database is there, busy."""
    return isinstance(exc, sa.TimeoutError)


def _asyncpg_unreachable(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(
        exc,
        (
            OSError,  # refused, reset, unreachable host
            TimeoutError,  # connect timed out
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.PostgresConnectionError,
        ),
    ):
        return True
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state.startswith(_CONNECTION_STATES)


# What the answer suggests: try again after this long (REST: the Retry-After header too).
RETRY_AFTER_S = 2


def store_unavailable() -> HomeroomError:
    return HomeroomError(
        "unavailable",
        "the database cannot be reached; nothing was changed, try again shortly",
        reason="database_unreachable",
        retry_after_s=RETRY_AFTER_S,
    )


def store_busy(retry_after_s: int = RETRY_AFTER_S) -> HomeroomError:
    return HomeroomError(
        "unavailable",
        "the database is busy with other requests; nothing was changed, try again shortly",
        reason="database_busy",
        retry_after_s=retry_after_s,
    )


@dataclass
class StoreHealth:
    """What /healthz and /metrics say about the database, from the requests themselves."""

    up: bool = True
    outages: int = 0  # times requests found it unreachable after it had answered
    refused: int = 0  # transactions and reads that could not reach it (requests, background)
    down_since: float | None = None  # time.time() of the first failure of this outage
    # Transactions and reads refused because every pooled connection stayed busy (the
    # database answers: not an outage).
    busy: int = 0

    def failed(self) -> None:
        self.refused += 1
        if self.up:
            self.up = False
            self.outages += 1
            self.down_since = time.time()

    def answered(self) -> None:
        self.up = True
        self.down_since = None
