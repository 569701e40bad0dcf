"""Group commit on SQLite (storage/shared_commit.py): transactions running at the same time
share one COMMIT, each in its own savepoint; none returns before its work is durable; a
failing one loses only its own work; a failed COMMIT fails every transaction it held."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.exc import OperationalError

from storage import migrate
from storage.db import Database
from storage.group_insert import GroupInsert
from storage.models import Counter, InboundMessage
from storage.shared_commit import MAX_GROUP, SharedTransactionLost
from tests.steps import inbound_record

COUNTER = Counter.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]



@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'minyi.db'}")
    await migrate.upgrade(database.engine)
    yield database
    await database.close()


def commits(db: Database) -> list[int]:
    seen: list[int] = []
    event.listen(db.engine.sync_engine, "commit", lambda conn: seen.append(1))
    return seen


async def add(db: Database, name: str, fail: bool = False) -> str:
    async with db.transaction() as session:
        await (await session.connection()).execute(insert(COUNTER), {"name": name, "value": 1})
        await asyncio.sleep(0)  # let the others queue up meanwhile
        if fail:
            raise ValueError(f"{name} failed")
    return name


def names_on_disk(db: Database) -> set[str]:
    """What another process reading the file sees: committed rows only."""
    path = db.url.split("///", 1)[1]
    with sqlite3.connect(path) as other:
        return {row[0] for row in other.execute("SELECT name FROM counter")}


async def test_transactions_at_the_same_time_share_a_commit(db):
    seen = commits(db)
    done = await asyncio.gather(*(add(db, f"n{i}") for i in range(20)))
    assert done == [f"n{i}" for i in range(20)]
    assert names_on_disk(db) == {f"n{i}" for i in range(20)}
    assert MAX_GROUP == 8 and len(seen) == 3  # groups of 8, 8 and the last 4


async def test_a_transaction_returns_only_once_its_work_is_on_disk(db):
    async with db.transaction() as session:
        await (await session.connection()).execute(insert(COUNTER), {"name": "alone", "value": 1})
        assert "alone" not in names_on_disk(db)
    assert names_on_disk(db) == {"alone"}


async def test_a_failing_transaction_loses_only_its_own_work(db):
    results = await asyncio.gather(add(db, "a"), add(db, "b", fail=True), add(db, "c"), return_exceptions=True)
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ValueError) and str(results[1]) == "b failed"
    assert names_on_disk(db) == {"a", "c"}


async def test_a_failed_commit_fails_every_transaction_it_held(db):
    failures = iter([True])

    def refuse(conn):  # type: ignore[no-untyped-def]
        if next(failures, False):
            raise sqlite3.OperationalError("disk I/O error")

    event.listen(db.engine.sync_engine, "commit", refuse)
    results = await asyncio.gather(*(add(db, f"n{i}") for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) and "disk I/O error" in str(r) for r in results), results
    assert names_on_disk(db) == set()
    assert await add(db, "after") == "after"  # the next group starts afresh
    assert names_on_disk(db) == {"after"}


async def test_a_transaction_sqlite_ended_by_itself_is_reported_not_half_committed(db):
    """After some errors (I/O, a full disk) SQLite rolls the whole transaction back. A
    block that finished earlier in the same group must not return as if its work were
    saved: it raises too."""

    async def end_it() -> None:
        async with db.transaction() as session:
            connection = await session.connection()
            await connection.execute(insert(COUNTER), {"name": "b", "value": 1})
            driver = (await connection.get_raw_connection()).driver_connection._connection  # type: ignore[union-attr]
            driver.execute("ROLLBACK")  # what SQLite itself does on SQLITE_FULL or SQLITE_IOERR

    earlier, ending = await asyncio.gather(add(db, "a"), end_it(), return_exceptions=True)
    assert isinstance(earlier, SharedTransactionLost)
    # The block that met the rollback fails on its own savepoint, which went with it.
    assert isinstance(ending, OperationalError) and "no such savepoint" in str(ending)
    assert names_on_disk(db) == set()
    assert await add(db, "after") == "after"  # the next group starts afresh
    assert names_on_disk(db) == {"after"}
    async with db.engine.connect() as connection:
        assert (await connection.execute(select(COUNTER.c.name))).scalars().all() == ["after"]


async def test_write_ahead_records_join_the_shared_commit(db):
    """The delivery journal (storage/group_insert.py) given Database.begin, as the app's
    inbox does: its batch and the transactions running meanwhile make one COMMIT."""
    journal = GroupInsert(db.engine, INBOUND, "dedupe_key", begin=db.begin)
    seen = commits(db)
    results = await asyncio.gather(*(add(db, f"n{i}") for i in range(5)),
                                   *(journal.insert(inbound_record(f"m:{i}")) for i in range(5)))
    assert results == [f"n{i}" for i in range(5)] + [True] * 5
    assert len(seen) == 1
    path = db.url.split("///", 1)[1]
    with sqlite3.connect(path) as other:
        keys = {row[0] for row in other.execute("SELECT dedupe_key FROM inbound_message")}
    assert keys == {f"m:{i}" for i in range(5)} and names_on_disk(db) == {f"n{i}" for i in range(5)}
