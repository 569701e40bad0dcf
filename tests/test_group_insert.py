"""Group commit of write-ahead records (storage/group_insert.py), on both backends."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, func, select

from storage import migrate
from storage.db import Database
from storage.group_insert import GroupInsert
from storage.models import InboundMessage
from tests.steps import inbound_record

TABLE = InboundMessage.__table__  # type: ignore[attr-defined]


def row(key: str) -> dict:
    return inbound_record(key)


@pytest.fixture
async def db(database_url):  # type: ignore[no-untyped-def]
    database = Database(database_url)
    await migrate.upgrade(database.engine)
    yield database
    await database.close()


async def test_concurrent_rows_share_transactions_and_each_learns_if_it_was_new(db):
    begins: list[int] = []
    event.listen(db.engine.sync_engine, "begin", lambda conn: begins.append(1))
    journal = GroupInsert(db.engine, TABLE, "dedupe_key")
    assert await journal.insert(row("m:1")) is True
    begins.clear()

    results = await asyncio.gather(*(journal.insert(row(f"m:{i}")) for i in range(1, 51)))
    assert results == [False] + [True] * 49  # m:1 existed
    assert len(begins) <= 2  # one transaction for the first row, one for all that queued behind it
    async with db.engine.connect() as connection:
        assert (await connection.execute(select(func.count()).select_from(TABLE))).scalar() == 50


async def test_the_same_key_twice_in_one_batch_is_new_only_once(db):
    journal = GroupInsert(db.engine, TABLE, "dedupe_key")
    assert await asyncio.gather(journal.insert(row("m:7")), journal.insert(row("m:7"))) == [True, False]


async def test_a_failed_batch_fails_every_caller_and_commits_nothing(db):
    journal = GroupInsert(db.engine, TABLE, "dedupe_key")
    bad = {**row("m:bad"), "openid": None}  # NOT NULL
    results = await asyncio.gather(journal.insert(row("m:ok")), journal.insert(bad), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    async with db.engine.connect() as connection:
        assert (await connection.execute(select(func.count()).select_from(TABLE))).scalar() == 0
    assert await journal.insert(row("m:ok")) is True  # the next batch works
