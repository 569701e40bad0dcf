"""A write lock held by another SQLite connection never stalls the event loop (storage/db.py).

Statements run inline on the loop, so a blocking busy wait would freeze every request of the
process, including the one holding the lock when both engines live in one process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from storage import db as storage_db
from storage.db import Database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}"


async def test_a_writer_waiting_for_the_lock_lets_the_holder_finish(sqlite_url: str) -> None:
    first, second = Database(sqlite_url), Database(sqlite_url)
    try:
        async with first.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE note (body TEXT)"))
        ticks: list[float] = []

        async def heartbeat() -> None:
            for _ in range(20):
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        async def hold_the_lock() -> None:
            async with first.engine.begin() as conn:
                await conn.execute(text("INSERT INTO note VALUES ('first')"))
                await asyncio.sleep(0.3)  # the holder yields while in its transaction

        async def write_second() -> float:
            await asyncio.sleep(0.02)
            async with second.engine.begin() as conn:
                await conn.execute(text("INSERT INTO note VALUES ('second')"))
            return time.monotonic()

        started = time.monotonic()
        _, second_done, _ = await asyncio.gather(hold_the_lock(), write_second(), heartbeat())
        # The second writer waited for the first one's commit, and got in after it...
        assert second_done - started >= 0.3
        async with first.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT body FROM note ORDER BY rowid"))).scalars().all()
        assert rows == ["first", "second"]
        # ...while the loop kept running: no gap between heartbeats near SQLite's old 30 s wait,
        # nor even a tenth of the hold.
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        assert max(gaps) < storage_db.BUSY_WAIT_MS / 1000 + 0.1
    finally:
        await first.close()
        await second.close()


async def test_a_lock_never_released_fails_at_the_deadline_with_sqlites_error(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_db, "BUSY_DEADLINE_SECONDS", 0.2)
    first, second = Database(sqlite_url), Database(sqlite_url)
    try:
        async with first.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE note (body TEXT)"))
        async with first.engine.begin() as holder:
            await holder.execute(text("INSERT INTO note VALUES ('held')"))
            started = time.monotonic()
            with pytest.raises(Exception, match="database is locked"):
                async with second.engine.begin() as conn:
                    await conn.execute(text("INSERT INTO note VALUES ('never')"))
            assert 0.2 <= time.monotonic() - started < 1.0
        async with second.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT body FROM note"))).scalars().all()
        assert rows == ["held"]
    finally:
        await first.close()
        await second.close()
