"""Core statements of the message hot path, compiled once and run cheaply on SQLite.

Every WeChat message runs a dozen small statements (its record, the resident and dialog,
the day counter, duplicate candidates, the ticket, its events, the completion). Through
SQLAlchemy's execution layer each costs ~80 µs on the embedded SQLite, most of it
building execution contexts and results, against ~15 µs for the same SQL run on the
driver connection. `Prepared` keeps the Core statement as the one definition: on SQLite
it is compiled once per set of parameter names, and run on the sqlite3 connection of the
caller's transaction with SQLAlchemy's own value conversions (the compiled statement's
bind and result processors), so what is written and read back is what `execute` would
give. Other databases (PostgreSQL) run it through `AsyncConnection.execute` as usual.

Statements that need more than plain conversions (Python-side column defaults, expanding
IN parameters) are run through `execute` on SQLite too: `Prepared` never guesses.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

Params = Mapping[str, Any]


@dataclass
class Result:
    """Rows (tuples with column attributes) and, for UPDATE/DELETE, the rows matched."""

    rows: list[Any]
    rowcount: int

    def first(self) -> Any | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


@dataclass(frozen=True)
class _Plan:
    """One compiled form: SQL text, parameter order and the conversions either way."""

    sql: str
    compiled: SQLCompiler
    names: tuple[str, ...]
    binds: tuple[Callable[[Any], Any] | None, ...]
    defaults: tuple[tuple[str, Any], ...]  # scalar Python-side column defaults
    sources: tuple[tuple[bool, Any], ...]  # per position: (True, parameter name) or (False, constant)
    results: tuple[Callable[[Any], Any] | None, ...]
    row: type | None

    def values(self, params: Params) -> list[Any]:
        """The positional values, converted. Named parameters come from `params`, anonymous
        ones (a LIMIT's 8) are constants of the statement; anything else (a missing value,
        a parameter with a default) goes through SQLAlchemy's construct_params, which also
        raises its own error for a value that is missing."""
        if self.defaults:
            params = {**dict(self.defaults), **params}
        try:
            raw = [params[source] if named else source for named, source in self.sources]
        except KeyError:
            bound = self.compiled.construct_params(params)
            raw = [bound[name] for name in self.names]
        return [value if convert is None else convert(value) for value, convert in zip(raw, self.binds)]

    def convert(self, raw: Sequence[Any]) -> Any:
        assert self.row is not None
        return self.row._make(value if convert is None else convert(value)  # type: ignore[attr-defined]
                              for value, convert in zip(raw, self.results))


def _plan(statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
    assert isinstance(compiled, SQLCompiler)
    if any(bind.expanding for bind in compiled.binds.values()):
        return None
    defaults = []
    for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
        default = column.default if column in compiled.insert_prefetch else column.onupdate
        if default is None or not default.is_scalar:  # type: ignore[attr-defined]
            return None
        defaults.append((column.key, default.arg))  # type: ignore[attr-defined]
    names = tuple(compiled.positiontup or ())
    sources: list[tuple[bool, Any]] = []
    for name in names:
        bind = compiled.binds[name]
        if bind.key == name:
            sources.append((True, name))
        elif bind.callable is None and not bind.required:
            sources.append((False, bind.value))  # an anonymous constant: LIMIT 8, IS NOT …
        else:
            sources.append((True, f"\0{name}"))  # never given: construct_params decides
    processors = compiled._bind_processors  # SQLAlchemy's own conversions (datetime, JSON, bool)
    results = compiled._result_columns
    row = namedtuple("Row", [c[0] for c in results], rename=True) if results else None  # type: ignore[misc]
    return _Plan(
        sql=compiled.string,
        compiled=compiled,
        names=names,
        binds=tuple(processors.get(name) for name in names),  # type: ignore[misc]
        defaults=tuple(defaults),
        sources=tuple(sources),
        results=tuple(c[3]._cached_result_processor(dialect, None) for c in results),
        row=row,
    )


class Prepared:
    """A Core statement to run many times with different parameters."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, ...], _Plan | None] = {}

    async def run(self, connection: AsyncConnection, params: Params | Sequence[Params]) -> Result:
        """Execute with one set of parameters, or once per set of a list (executemany)."""
        many = not isinstance(params, Mapping)
        rows: Sequence[Params] = params if many else [params]  # type: ignore[assignment,list-item]
        if connection.dialect.name != "sqlite" or not rows:
            return await self._through_sqlalchemy(connection, params)
        keys = tuple(sorted(rows[0]))
        if keys not in self._plans:
            self._plans[keys] = _plan(self.statement, connection.dialect, keys)
        plan = self._plans[keys]
        if plan is None or any(tuple(sorted(row)) != keys for row in rows[1:]):
            return await self._through_sqlalchemy(connection, params)
        driver = await _driver(connection)
        try:
            if plan.row is None and len(rows) > 1:
                cursor = driver.executemany(plan.sql, [plan.values(row) for row in rows])
                return Result([], cursor.rowcount)
            out: list[Any] = []
            count = 0
            for row in rows:
                cursor = driver.execute(plan.sql, plan.values(row))
                fetched = [plan.convert(raw) for raw in cursor.fetchall()] if plan.row is not None else []
                out.extend(fetched)
                count += cursor.rowcount if cursor.rowcount >= 0 else len(fetched)
            return Result(out, count)
        except sqlite3.Error as exc:  # as execute() raises it: IntegrityError, OperationalError …
            raise DBAPIError.instance(plan.sql, None, exc, sqlite3.Error, hide_parameters=True,
                                      dialect=connection.dialect) from exc

    async def _through_sqlalchemy(self, connection: AsyncConnection, params: Params | Sequence[Params]) -> Result:
        result = await connection.execute(self.statement, params)  # type: ignore[arg-type]
        rows = list(result.all()) if result.returns_rows else []
        return Result(rows, result.rowcount)  # type: ignore[attr-defined]


async def _driver(connection: AsyncConnection) -> Any:
    """The sqlite3 connection under `connection`, inside its transaction (begun if not yet,
    as `execute` would: BEGIN IMMEDIATE, storage/db.py). Read from the already checked-out
    connection directly: the async accessor costs a greenlet switch a statement."""
    if not connection.in_transaction():
        await connection.begin()
    return connection.sync_connection.connection.driver_connection._connection  # type: ignore[union-attr]
