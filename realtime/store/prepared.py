"""Statements of the hot paths, compiled once and run on SQLite's driver directly.

A chat message runs about seven statements. SQLAlchemy compiles each only once (its cache), but
every execution still walks its execution layer — contexts, cache keys, result wrappers — about
20 µs of Python per statement against 4 µs for SQLite itself, and three times that when the CPU's
caches are cold, as they are between two messages of a quiet class. :class:`Prepared` keeps the
SQL text, the order of the parameters and SQLAlchemy's own type processors of one Core statement,
and on SQLite hands them straight to the driver inside the store's transaction. Elsewhere
(PostgreSQL) it is an ordinary statement: ``DbConnection.execute`` unwraps it.

Only plain statements qualify: no expanding ``IN`` lists and no statements whose SQL depends on
their parameters. Driver errors come out as SQLAlchemy's exceptions (``IntegrityError`` and so
on), as they would from ``Connection.execute``.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any] | None


class Prepared:
    """A Core statement with, per dialect, its SQL text, parameter order and type processors."""

    __slots__ = ("_dialect", "_literals", "_order", "_processors", "_row", "_sql", "statement")

    def __init__(self, statement: Any) -> None:
        # Refused on every database, not only where it would run on the driver.
        if any(b.expanding for b in statement.compile().binds.values()):
            raise ValueError("a prepared statement cannot have an expanding IN list")
        self.statement = statement
        self._dialect: Dialect | None = None

    def _compile(self, dialect: Dialect) -> None:
        compiled = self.statement.compile(dialect=dialect)
        order = list(compiled.positiontup or ())
        binds = compiled.binds
        self._sql = str(compiled)
        self._order = order
        # Values fixed in the statement itself (``status == "approved"``, ``last_seq=1``).
        self._literals = {name: binds[name].value for name in order}
        self._processors = [binds[name].type.bind_processor(dialect) for name in order]
        columns = list(getattr(self.statement, "exported_columns", ()))
        keys = [c.key for c in columns]
        row = namedtuple("Row", keys, rename=True) if keys else None
        readers = [c.type.result_processor(dialect, None) for c in columns]
        self._row = (row, readers if any(readers) else None)
        self._dialect = dialect

    def run(self, dbapi_connection: sqlite3.Connection, dialect: Dialect, params: Any) -> Result:
        if self._dialect is not dialect:
            self._compile(dialect)
        given: Mapping[str, Any] = params or {}
        values = []
        for name, process in zip(self._order, self._processors, strict=True):
            value = given[name] if name in given else self._literals[name]
            values.append(value if process is None else process(value))
        try:
            cursor = dbapi_connection.execute(self._sql, values)
        except sqlite3.Error as err:
            raise exc.DBAPIError.instance(self._sql, values, err, sqlite3.Error) from err
        return Result(cursor, *self._row)


class Result:
    """What callers use of SQLAlchemy's ``CursorResult``: rows with named fields, ``first``,
    ``one``, ``scalar``, ``scalar_one``, ``all`` and ``inserted_primary_key``."""

    __slots__ = ("_cursor", "_readers", "_row")

    def __init__(self, cursor: sqlite3.Cursor, row: Any, readers: list[Processor] | None) -> None:
        self._cursor = cursor
        self._row = row
        self._readers = readers

    def _make(self, raw: tuple[Any, ...]) -> Any:
        if self._readers is not None:
            raw = tuple(v if r is None else r(v) for r, v in zip(self._readers, raw, strict=True))
        return self._row._make(raw)

    def __iter__(self) -> Iterator[Any]:
        for raw in self._cursor:
            yield self._make(raw)

    def all(self) -> list[Any]:
        return list(self)

    def first(self) -> Any:
        raw = self._cursor.fetchone()
        self._cursor.close()
        return None if raw is None else self._make(raw)

    def one(self) -> Any:
        row = self.first()
        if row is None:
            raise exc.NoResultFound("No row was found when one was required")
        return row

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    @property
    def inserted_primary_key(self) -> tuple[int]:
        lastrowid = self._cursor.lastrowid
        assert lastrowid is not None
        return (lastrowid,)
