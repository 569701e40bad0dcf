"""Group commit on SQLite: concurrent transactions share one database transaction.

SQLite has one writer at a time and this process one pooled connection (storage/db.py), so
`db.transaction()` blocks run one after another anyway; what each paid on top of its own
statements was a BEGIN IMMEDIATE and a COMMIT that writes every page it touched to the WAL
(the ticket's twelve index pages, the delivery record, the resident …), ~0.3 ms a message.
Here the blocks that run while a commit is pending take turns on one open transaction,
each inside its own SAVEPOINT, and one COMMIT makes them all durable:

  - a block that fails rolls back to its savepoint only; the others are unaffected;
  - no block returns before the COMMIT that includes it has succeeded (so nothing is
    answered, and no after-commit action runs, for work that is not durable); if that
    COMMIT fails, every block it held raises;
  - the COMMIT is queued as soon as a block finishes, behind the blocks already waiting
    for their turn, or made at once by the MAX_GROUP-th block (so a reply never waits
    for more than a few others); the connection then goes back to the pool, where other
    users (the write-ahead journal, jobs, the console's reads) wait their turn as before.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction
from sqlmodel.ext.asyncio.session import AsyncSession


LOST = "SQLite ended the shared transaction; nothing of it was committed"
# Blocks a COMMIT holds at most: under load the line of waiting blocks is long, and each
# reply waits for its COMMIT. 8 shares one COMMIT's cost among 8 and keeps the wait short.
MAX_GROUP = 8


class SharedTransactionLost(RuntimeError):
    """SQLite ended the shared transaction itself (after an I/O error, a full disk …)."""


class _Group:
    def __init__(self, connection: AsyncConnection, outer: AsyncTransaction) -> None:
        self.connection = connection
        self.outer = outer
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.broken = False
        self.members = 0


class SharedTransaction:
    def __init__(self, engine: AsyncEngine, turn_timeout: float) -> None:
        self.engine = engine
        self.turn_timeout = turn_timeout
        self._turn = asyncio.Lock()
        self._group: _Group | None = None
        self._flusher: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits with the group's; raises what the block raised, or
        what made the group's COMMIT fail."""
        async with asyncio.timeout(self.turn_timeout):
            await self._turn.acquire()
        try:
            group = await self._open()
            session = AsyncSession(bind=group.connection, join_transaction_mode="create_savepoint",
                                   expire_on_commit=False)
            try:
                async with session.begin():
                    yield session
            finally:
                await session.close()
                group.members += 1
                if not await _in_transaction(group.connection):
                    group.broken = True
                if group.members >= MAX_GROUP:
                    await self._commit(group)  # now, before the next in line: bounded latency
                else:
                    self._flush_soon()
        finally:
            self._turn.release()
        await asyncio.shield(group.committed)

    async def _open(self) -> _Group:
        lost = self._group
        if lost is not None and lost.broken:  # its blocks raise; later ones start afresh
            self._group = None
            _settle(lost.committed, SharedTransactionLost(LOST))
            await _quietly_close(lost.connection)
        if self._group is None:
            connection = await self.engine.connect()
            try:
                outer = await connection.begin()  # BEGIN IMMEDIATE (storage/db.py)
            except BaseException:
                await connection.close()
                raise
            self._group = _Group(connection, outer)
        return self._group

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="shared-commit")

    async def _flush(self) -> None:
        async with self._turn:  # after the blocks already waiting: they join this group
            if self._group is not None:
                await self._commit(self._group)

    async def _commit(self, group: _Group) -> None:
        """COMMIT the group (the caller has the turn); its blocks learn how it went."""
        if self._group is group:
            self._group = None
        try:
            if group.broken:
                raise SharedTransactionLost(LOST)
            await group.outer.commit()
        except BaseException as exc:
            _settle(group.committed, exc)
            await _quietly_close(group.connection)
            if not isinstance(exc, Exception):
                raise
        else:
            _settle(group.committed, None)
            await group.connection.close()


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
        future.exception()  # retrieved: a group nobody awaits any more logs nothing


async def _in_transaction(connection: AsyncConnection) -> bool:
    raw: Any = connection.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    return bool(raw._connection is not None and raw._connection.in_transaction)


async def _quietly_close(connection: AsyncConnection) -> None:
    """A connection whose transaction failed is discarded, not pooled: closing the sqlite3
    connection rolls back whatever it still holds; the pool opens a fresh one."""
    try:
        await connection.invalidate()
    finally:
        await connection.close()
