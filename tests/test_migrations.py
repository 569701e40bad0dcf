"""The Alembic migrations build exactly the schema storage/models.py declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables)
from storage import migrate
from storage.db import Database


def _differences(connection):  # type: ignore[no-untyped-def]
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, SQLModel.metadata)


def _schema(connection):  # type: ignore[no-untyped-def]
    inspector = inspect(connection)
    return {table: (sorted(c["name"] for c in inspector.get_columns(table)),
                    sorted(str(i["name"]) for i in inspector.get_indexes(table)))
            for table in inspector.get_table_names()}


async def _fresh(db: Database) -> None:
    """The PostgreSQL fixture clones a migrated template: start from nothing instead."""
    async with db.engine.begin() as conn:
        if db.is_sqlite:
            assert (await conn.run_sync(lambda c: inspect(c).get_table_names())) == []
            return
        await conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        await conn.exec_driver_sql("CREATE SCHEMA public")


async def test_migrations_match_the_models_and_a_second_upgrade_is_a_no_op(database_url):
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    db = Database(database_url)
    try:
        await _fresh(db)
        assert await migrate.current_revision(db.engine) is None
        await migrate.upgrade(db.engine)
        assert await migrate.current_revision(db.engine) == head
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            before = await conn.run_sync(_schema)
        assert set(before) == set(SQLModel.metadata.tables) | {"alembic_version"}

        await migrate.upgrade(db.engine)
        assert await migrate.current_revision(db.engine) == head
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_schema) == before
            assert await conn.run_sync(_differences) == []
    finally:
        await db.close()


async def test_the_check_sees_a_schema_that_drifted(database_url):
    """Guards the test above: compare_metadata does report a missing column and index."""
    db = Database(database_url)
    try:
        await migrate.upgrade(db.engine)
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("DROP INDEX ix_ticket_status")
            await conn.exec_driver_sql("ALTER TABLE outbox DROP COLUMN channel")
        async with db.engine.connect() as conn:
            diffs = await conn.run_sync(_differences)
        found = {(d[0], getattr(d[-1], "name", None)) for d in diffs if isinstance(d, tuple)}
        assert ("add_index", "ix_ticket_status") in found
        assert ("add_column", "channel") in found
    finally:
        await db.close()
