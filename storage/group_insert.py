"""Group commit for small inserts that must be durable before anyone is answered.

Every WeChat delivery is recorded before it is handled (bot/inbox.py). One transaction
a record would cost a BEGIN, an INSERT and a COMMIT each; under load many deliveries
wait at the same moment, so the rows that queue up while one transaction runs are
written together by the next: one multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING`
and one commit for all of them. Each caller learns whether its row was new (False:
the key existed, e.g. WeChat's retry of a delivery recorded before), or gets the
exception that failed the batch (then nothing of the batch was committed). On SQLite
the batch's transaction is itself one of the shared COMMIT's (storage/shared_commit.py),
so records and handlings running at the same time are made durable together.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Any, Callable

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.prepared import Prepared

MAX_BATCH = 200


Begin = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


class GroupInsert:
    def __init__(self, engine: AsyncEngine, table: Table, key: str, begin: Begin | None = None) -> None:
        """`begin`: how a batch gets its transaction (default `engine.begin`; the app passes
        `Database.begin`, which on SQLite joins the shared COMMIT of storage/shared_commit.py)."""
        self.engine = engine
        self.begin: Begin = begin or engine.begin
        self.key = key
        dialect = sqlite if engine.dialect.name == "sqlite" else postgresql
        self.statement = Prepared(dialect.insert(table).on_conflict_do_nothing(index_elements=[key])
                                  .returning(table.c[key]))
        self._queue: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, row: dict[str, Any]) -> bool:
        """Insert `row` durably; True if it was new, False if its key existed."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_all(), name="group-insert")
        return await future

    async def _write_all(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                inserted = await self._write(batch)
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for row, future in batch:  # a key twice in one batch: only the first was new
                new = row[self.key] in inserted
                inserted.discard(row[self.key])
                if not future.done():
                    future.set_result(new)

    async def _write(self, batch: list[tuple[dict[str, Any], asyncio.Future[bool]]]) -> set[Any]:
        # One row per key: a second one in the same batch is a duplicate like any other.
        rows = list({row[self.key]: row for row, _ in reversed(batch)}.values())[::-1]
        async with self.begin() as connection:
            result = await self.statement.run(connection, rows)
            inserted = {r[0] for r in result.rows}
        return inserted
