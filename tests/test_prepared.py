"""Hot-path statements run through storage/prepared.py give what SQLAlchemy's `execute`
gives, on both backends: the same rows written (datetimes, JSON, booleans, NULLs), the
same values read back, RETURNING, rows matched, executemany, and the same exceptions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, InvalidRequestError, StatementError

from storage import migrate
from storage.db import Database
from storage.models import InboundMessage, Ticket
from storage.prepared import Prepared
from tests.steps import inbound_record

INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
WHEN = datetime(2026, 12, 2, 8, 30, 15, 123456, tzinfo=timezone.utc)


def record(key: str, **changes: object) -> dict:
    """A record with every kind of value: JSON, datetimes, a boolean, NULLs."""
    return inbound_record(key, openid="o-prepared", payload={"Content": "电梯坏了", "n": [1, 2]}, received_at=WHEN,
                          claim_token="t1", lease_until=WHEN + timedelta(seconds=30), **changes)


@pytest.fixture
async def db(database_url):  # type: ignore[no-untyped-def]
    database = Database(database_url)
    await migrate.upgrade(database.engine)
    yield database
    await database.close()


async def read_back(db: Database, key: str) -> dict:
    async with db.engine.connect() as connection:
        row = (await connection.execute(select(INBOUND).where(INBOUND.c.dedupe_key == key))).one()
    values = dict(row._mapping)
    values.pop("id")
    return values


async def test_an_insert_writes_what_execute_writes_and_reads_back_the_same(db):
    statement = insert(INBOUND)
    async with db.engine.begin() as connection:
        await connection.execute(statement, record("m:by-execute"))
        result = await Prepared(statement).run(connection, record("m:by-prepared"))
    assert result.rows == [] and result.rowcount == 1
    by_execute, by_prepared = await read_back(db, "m:by-execute"), await read_back(db, "m:by-prepared")
    assert by_prepared == {**by_execute, "dedupe_key": "m:by-prepared"}
    assert by_prepared["received_at"] == WHEN and by_prepared["payload"] == {"Content": "电梯坏了", "n": [1, 2]}
    assert by_prepared["late"] is False and by_prepared["done_at"] is None

    query = Prepared(select(INBOUND.c.dedupe_key, INBOUND.c.received_at, INBOUND.c.payload, INBOUND.c.late)
                     .where(INBOUND.c.openid == bindparam("openid")).order_by(INBOUND.c.dedupe_key))
    async with db.engine.connect() as connection:
        rows = (await query.run(connection, {"openid": "o-prepared"})).rows
        expected = (await connection.execute(query.statement, {"openid": "o-prepared"})).all()
    assert [tuple(r) for r in rows] == [tuple(r) for r in expected]
    assert rows[1].dedupe_key == "m:by-prepared" and rows[1].received_at == WHEN and rows[1].late is False


async def test_update_returning_counts_the_rows_it_matched(db):
    complete = Prepared(update(INBOUND).where(INBOUND.c.dedupe_key == bindparam("key"),
                                              INBOUND.c.claim_token == bindparam("token"))
                        .values(done_at=bindparam("done_at"), reply=bindparam("reply"), claim_token=None)
                        .returning(INBOUND.c.late))
    async with db.engine.begin() as connection:
        await Prepared(insert(INBOUND)).run(connection, [record("m:1"), record("m:2", late=True)])
        stale = await complete.run(connection, {"key": "m:2", "token": "other", "done_at": WHEN, "reply": "x"})
        done = await complete.run(connection, {"key": "m:2", "token": "t1", "done_at": WHEN, "reply": "已受理"})
    assert (stale.rowcount, stale.first()) == (0, None)
    assert done.rowcount == 1 and done.first().late is True and done.scalar() is True
    assert {k: v for k, v in (await read_back(db, "m:2")).items() if k in ("done_at", "reply", "claim_token")} == {
        "done_at": WHEN, "reply": "已受理", "claim_token": None}
    assert (await read_back(db, "m:1"))["done_at"] is None


async def test_a_constraint_violation_raises_sqlalchemys_integrity_error(db):
    statement = Prepared(insert(INBOUND))
    async with db.engine.begin() as connection:
        await statement.run(connection, record("m:twice"))
    with pytest.raises(IntegrityError):
        async with db.engine.begin() as connection:
            await statement.run(connection, record("m:twice"))
    async with db.engine.connect() as connection:
        count = len((await connection.execute(select(INBOUND.c.id))).all())
    assert count == 1


async def test_python_side_defaults_are_applied_as_execute_applies_them(db):
    """Ticket columns with scalar defaults (overdue, escalation level …) left out of the
    parameters get them; a callable default falls back to execute() (never guessed)."""
    values = dict(number="20261202-0001", openid="o-prepared", appeal_type="投诉", category="elevator", urgency="一般",
                  status="dispatched", description="电梯坏了", created_at=WHEN, updated_at=WHEN)
    statement = Prepared(insert(Ticket).returning(Ticket.id))  # type: ignore[call-overload]
    async with db.engine.begin() as connection:
        ticket_id = (await statement.run(connection, values)).scalar()
        again = (await connection.execute(insert(Ticket).returning(Ticket.id),  # type: ignore[call-overload]
                                          {**values, "number": "20261202-0002"})).scalar_one()
    async with db.engine.connect() as connection:
        rows = (await connection.execute(select(Ticket.__table__).where(  # type: ignore[attr-defined]
            Ticket.__table__.c.id.in_([ticket_id, again])).order_by("id"))).all()  # type: ignore[attr-defined]
    first, second = (dict(r._mapping) for r in rows)
    for row in (first, second):
        row.pop("id"), row.pop("number")
    assert first == second


async def test_a_missing_parameter_is_refused_as_execute_refuses_it(db):
    query = Prepared(select(INBOUND.c.id).where(INBOUND.c.openid == bindparam("openid")).limit(3))
    async with db.engine.connect() as connection:
        assert (await query.run(connection, {"openid": "nobody"})).rows == []  # LIMIT 3: a constant of the statement
        with pytest.raises((InvalidRequestError, StatementError), match="A value is required for bind parameter 'openid'"):
            await query.run(connection, {"open_id": "typo"})
