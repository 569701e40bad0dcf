"""Leadership: exactly one process among all workers (of every host on one database)
runs the leader-only scheduled jobs (nightly retraining, the SLA tick).

PostgreSQL: the leader holds a session-level advisory lock (`pg_try_advisory_lock`) on
a connection of its own, opened with asyncpg outside the engine's pool and kept open.
When the leader dies its connection closes and PostgreSQL releases the lock; the other
workers try again every `[scheduler] leader_retry_seconds`, so one of them takes over
within that interval. On each try the leader checks that its connection still answers:
a broken connection means the lock may be gone, so it stops leading at once.

SQLite (one host): an exclusive, non-blocking `flock` on `<data dir>/leader.lock`,
tried the same way; the kernel releases it when the process dies.

The same locks, taken blocking, serialise work across processes (`exclusive`, used by
retraining with a key of its own).
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import hashlib
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any, AsyncIterator, Awaitable, Callable, ParamSpec, Protocol, TypeVar

from sqlalchemy.engine import make_url

from bot.settings import Settings

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

LEADER_LOCK = "minyi.scheduler.leader"
LEADER_FILE = "leader.lock"
CONNECT_TIMEOUT_SECONDS = 5.0
QUERY_TIMEOUT_SECONDS = 5.0


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name (the same in every process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL (postgresql+asyncpg://…) as a DSN asyncpg connects with."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class ProcessLock(Protocol):
    """A lock held by this process until released or until the process dies."""

    async def try_acquire(self) -> bool: ...

    async def acquire(self) -> None: ...

    async def alive(self) -> bool: ...

    async def release(self) -> None: ...


class AdvisoryLock:
    """A session-level PostgreSQL advisory lock on a dedicated asyncpg connection."""

    def __init__(self, url: str, key: int, application_name: str) -> None:
        self.dsn = asyncpg_dsn(url)
        self.key = key
        self.application_name = application_name
        self._conn: Any = None  # asyncpg.Connection while open

    async def _connection(self) -> Any:
        import asyncpg

        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self.dsn, timeout=CONNECT_TIMEOUT_SECONDS,
                server_settings={"application_name": self.application_name})
        return self._conn

    def _drop(self) -> None:
        """Forget the connection without waiting on it (it may be broken)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def try_acquire(self) -> bool:
        try:
            conn = await self._connection()
            return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key,
                                            timeout=QUERY_TIMEOUT_SECONDS))
        except BaseException:
            self._drop()
            raise

    async def acquire(self) -> None:
        """Wait for the lock (no timeout: the holder's death releases it)."""
        try:
            conn = await self._connection()
            await conn.execute("SELECT pg_advisory_lock($1)", self.key)
        except BaseException:
            self._drop()
            raise

    async def alive(self) -> bool:
        """The connection holding the lock still answers (else it is dropped)."""
        if self._conn is None or self._conn.is_closed():
            return False
        try:
            await self._conn.fetchval("SELECT 1", timeout=QUERY_TIMEOUT_SECONDS)
            return True
        except Exception:
            self._drop()
            return False

    async def release(self) -> None:
        """Unlock and close; closing alone would release the lock too."""
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await conn.execute("SELECT pg_advisory_unlock_all()", timeout=QUERY_TIMEOUT_SECONDS)
            await conn.close(timeout=QUERY_TIMEOUT_SECONDS)
        except Exception:
            conn.terminate()


class FileLock:
    """An exclusive flock on a file (one host only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def _open(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return open(self.path, "a")

    async def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        fh = self._open()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        except BaseException:
            fh.close()
            raise
        self._file = fh
        return True

    async def acquire(self) -> None:
        fh = self._open()
        try:
            await asyncio.to_thread(fcntl.flock, fh, fcntl.LOCK_EX)
        except BaseException:
            fh.close()
            raise
        self._file = fh

    async def alive(self) -> bool:
        return self._file is not None and not self._file.closed

    async def release(self) -> None:
        fh, self._file = self._file, None
        if fh is not None and not fh.closed:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()


def process_lock(settings: Settings, name: str, path: Path) -> ProcessLock:
    """An advisory lock named `name` on PostgreSQL, else an flock on `path`."""
    if settings.is_sqlite:
        return FileLock(path)
    return AdvisoryLock(settings.database_url, advisory_key(name), f"{name} pid={os.getpid()}")


@asynccontextmanager
async def exclusive(settings: Settings, name: str, path: Path) -> AsyncIterator[None]:
    """Hold `process_lock(settings, name, path)` for the block, waiting for it first."""
    lock = process_lock(settings, name, path)
    await lock.acquire()
    try:
        yield
    finally:
        await lock.release()


class Leadership:
    """Whether this process is the leader; `try_lead` is run every `interval` seconds."""

    def __init__(self, lock: ProcessLock, interval: float = 10.0) -> None:
        self.lock = lock
        self.interval = interval
        self._leader = False
        self._busy = asyncio.Lock()
        self._unreachable = False  # a failed try was logged (once, until one succeeds)
        self._released = False  # after release() (shutdown) it is never taken again

    @classmethod
    def for_settings(cls, settings: Settings) -> "Leadership":
        lock = process_lock(settings, LEADER_LOCK, settings.data_dir / LEADER_FILE)
        return cls(lock, settings.scheduler.leader_retry_seconds)

    @property
    def is_leader(self) -> bool:
        return self._leader

    async def try_lead(self) -> bool:
        """Take leadership if free, or check that it is still held; never raises."""
        async with self._busy:
            if self._released:
                return False
            try:
                if self._leader:
                    await self._check()
                else:
                    await self._take()
                self._unreachable = False
            except Exception as exc:
                self._failed(exc)
            return self._leader

    async def _take(self) -> None:
        if await self.lock.try_acquire():
            self._leader = True
            log.info("scheduler leadership taken by pid %d", os.getpid())

    async def _check(self) -> None:
        if not await self.lock.alive():
            self._leader = False
            await self.lock.release()
            log.warning("scheduler leadership lost by pid %d: its lock connection broke", os.getpid())

    def _failed(self, exc: Exception) -> None:
        if self._leader:
            self._leader = False
            log.warning("scheduler leadership lost by pid %d: %s", os.getpid(), exc)
        elif not self._unreachable:
            log.warning("leader election failed in pid %d (retrying every %g s): %s", os.getpid(),
                        self.interval, exc)
        self._unreachable = True

    async def release(self) -> None:
        """Give leadership up (on shutdown): another worker takes it on its next try."""
        async with self._busy:
            was_leader, self._leader, self._released = self._leader, False, True
            try:
                await self.lock.release()
            except Exception:
                log.exception("releasing the leader lock failed")
            if was_leader:
                log.info("scheduler leadership released by pid %d", os.getpid())

    def guard(self, job: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T | None]]:
        """`job` run only while this process leads (checked, or taken, just before);
        on a follower the wrapper returns None without doing anything."""

        @functools.wraps(job)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T | None:
            if not await self.try_lead():
                log.debug("%s skipped: pid %d is not the leader", getattr(job, "__name__", job), os.getpid())
                return None
            return await job(*args, **kwargs)

        return guarded
