"""The async engine and sessions.

SQLite (embedded default): WAL, one pooled connection per process so writers queue
in asyncio instead of spinning on the file lock, and BEGIN IMMEDIATE so a transaction
that reads and then writes cannot deadlock with another process. SQLite calls run
inline on the event loop: a small WAL transaction takes microseconds, far less than
handing each statement to aiosqlite's worker thread (~150 µs a hop, measured). So that
a write lock held elsewhere (another process, or another engine in this one) never
stalls the loop, SQLite's own busy wait is kept short and a statement refused as busy
outside a transaction (in practice BEGIN IMMEDIATE) is retried after an asyncio sleep,
until the busy deadline. Several workers still belong on PostgreSQL. PostgreSQL (production): asyncpg, ordinary pool.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.shared_commit import SharedTransaction


BUSY_WAIT_MS = 20  # SQLite's own (blocking) busy wait: covers another process's short commit
BUSY_DEADLINE_SECONDS = 30.0  # then async retries until this long
BUSY_FIRST_PAUSE_SECONDS = 0.002
BUSY_MAX_PAUSE_SECONDS = 0.05


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


class InlineSQLiteConnection(aiosqlite.Connection):
    """aiosqlite's API, executed on the calling (event loop) thread."""

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._open().__await__()

    async def _open(self) -> "InlineSQLiteConnection":
        self._connection = self._connector()
        return self

    async def _execute(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not self._connection:
            raise ValueError("Connection closed")
        deadline = None
        pause = BUSY_FIRST_PAUSE_SECONDS
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as error:
                # Only a statement that began nothing may be tried again.
                if not _is_busy(error) or self._connection.in_transaction:
                    raise
                now = time.monotonic()
                deadline = deadline or now + BUSY_DEADLINE_SECONDS
                if now >= deadline:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, BUSY_MAX_PAUSE_SECONDS)

    def stop(self) -> None:  # type: ignore[override]
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def _sqlite_engine(url: str, echo: bool, pool_timeout: float) -> AsyncEngine:
    database = make_url(url).database or ":memory:"
    if database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    async def connect() -> InlineSQLiteConnection:
        connector = functools.partial(sqlite3.connect, database, timeout=BUSY_WAIT_MS / 1000,
                                      check_same_thread=False,
                                      isolation_level=None)  # we issue BEGIN ourselves
        return await InlineSQLiteConnection(connector, iter_chunk_size=64)

    engine = create_async_engine(
        url,
        echo=echo,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=pool_timeout,
        async_creator=connect,
        hide_parameters=True,  # bound values (openids, complaint text) stay out of errors and logs
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    _direct_savepoints(engine)
    return engine


def _direct_savepoints(engine: AsyncEngine) -> None:
    """SAVEPOINT, RELEASE and ROLLBACK TO straight on the sqlite3 connection. SQLAlchemy
    compiles a fresh clause for each (every savepoint has its own name), ~60 µs apiece;
    the shared COMMIT (storage/shared_commit.py) makes two of them per transaction."""
    dialect = engine.sync_engine.dialect

    def run(connection: Connection, sql: str) -> None:
        raw: sqlite3.Connection = connection.connection.driver_connection._connection  # type: ignore[union-attr]
        try:
            raw.execute(sql)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc

    dialect.do_savepoint = lambda connection, name: run(connection, f"SAVEPOINT {name}")  # type: ignore[method-assign]
    dialect.do_release_savepoint = (  # type: ignore[method-assign]
        lambda connection, name: run(connection, f"RELEASE SAVEPOINT {name}"))
    dialect.do_rollback_to_savepoint = (  # type: ignore[method-assign]
        lambda connection, name: run(connection, f"ROLLBACK TO SAVEPOINT {name}"))


class Database:
    """Owns the engine; opened and closed by the app's cleanup context."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10, pool_timeout: float = 30.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, echo, pool_timeout)
        else:
            self.engine = create_async_engine(
                url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_timeout=pool_timeout,
                pool_pre_ping=True,
                # Bound values (openids, complaint text) stay out of error messages and logs.
                hide_parameters=True)
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        # SQLite: one writer, one connection; concurrent transactions share a COMMIT.
        self._shared = SharedTransaction(self.engine, pool_timeout) if self.is_sqlite else None

    def session(self) -> AsyncSession:
        return self._sessions()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error.
        On SQLite the COMMIT may be shared with other transactions running meanwhile
        (storage/shared_commit.py); either way this returns once the work is durable.
        Inside it, use this session only: on SQLite it holds the process's one connection,
        so another session opened meanwhile waits for it (and times out)."""
        if self._shared is not None:
            async with self._shared.transaction() as session:
                yield session
            return
        async with self._sessions() as session:
            async with session.begin():
                yield session

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction, for Core statements: committed like
        `transaction()` (on SQLite in the shared COMMIT), rolled back on error."""
        if self._shared is not None:
            async with self._shared.transaction() as session:
                yield await session.connection()
            return
        async with self.engine.begin() as connection:
            yield connection

    async def close(self) -> None:
        await self.engine.dispose()
