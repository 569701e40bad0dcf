"""A resident and their dialog state, loaded and saved with Core statements.

Every WeChat message needs both rows and changes a column or two of them. Through the
ORM that cost an identity map, two model instances and a unit-of-work flush each
time — more than the rest of a message's database work. Here the rows are plain
records that remember what they were loaded with; `save` writes only the columns a
handler changed (as the ORM's flush did), one prebuilt UPDATE per table and set of
columns.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Insert, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import DialogState, Resident
from storage.prepared import Prepared

RESIDENT: Table = Resident.__table__  # type: ignore[attr-defined]
DIALOG: Table = DialogState.__table__  # type: ignore[attr-defined]
KEY = "openid"


class Record:
    """Column values of one row as attributes, with what was loaded kept aside."""

    TABLE: ClassVar[Table]
    COLUMNS: ClassVar[tuple[str, ...]]

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
        self._loaded = dict(values)

    def changes(self) -> dict[str, Any]:
        """The columns whose values differ from those loaded."""
        return {name: self.__dict__[name] for name in self.COLUMNS
                if name != KEY and self.__dict__[name] != self._loaded[name]}

    def mark_saved(self) -> None:
        self._loaded = {name: self.__dict__[name] for name in self.COLUMNS}


class ResidentRecord(Record):
    TABLE = RESIDENT
    COLUMNS = tuple(RESIDENT.c.keys())
    openid: str
    subscribed: bool
    subscribed_at: datetime | None
    unsubscribed_at: datetime | None
    consent_at: datetime | None
    home_area_code: str | None
    scene: str | None
    created_at: datetime
    last_seen_at: datetime | None
    awaiting_answer_since: datetime | None


class DialogRecord(Record):
    TABLE = DIALOG
    COLUMNS = tuple(DIALOG.c.keys())
    openid: str
    state: str
    data: dict | None
    updated_at: datetime


# Both rows in one query: every message needs both, and a query costs more than the join.
_LOAD = Prepared(select(*RESIDENT.c, *(column.label(f"d_{column.key}") for column in DIALOG.c))
                 .select_from(RESIDENT.outerjoin(DIALOG, DIALOG.c.openid == RESIDENT.c.openid))
                 .where(RESIDENT.c.openid == bindparam(KEY)))
_DIALOG_PREFIX = "d_"


@functools.cache
def _insert_if_absent(dialect: str, table: Table) -> Insert:
    """INSERT … ON CONFLICT (openid) DO NOTHING, built once per dialect and table."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_(table).on_conflict_do_nothing(index_elements=[KEY])


@functools.cache
def _update(table: Table, columns: tuple[str, ...]) -> Prepared:
    """UPDATE table SET <columns> WHERE openid = …, built once per set of columns."""
    return Prepared(table.update().where(table.c.openid == bindparam("_key"))
                    .values({name: bindparam(name) for name in columns}))


def _split(row: Any) -> tuple[ResidentRecord, DialogRecord | None]:
    values = row._asdict()
    resident = ResidentRecord({name: values[name] for name in ResidentRecord.COLUMNS})
    if values[_DIALOG_PREFIX + KEY] is None:
        return resident, None
    return resident, DialogRecord({name: values[_DIALOG_PREFIX + name] for name in DialogRecord.COLUMNS})


async def load(connection: AsyncConnection, openid: str, now: datetime,
               idle: str) -> tuple[ResidentRecord, DialogRecord]:
    """The resident and their dialog state; both rows are created on a first message."""
    row = (await _LOAD.run(connection, {KEY: openid})).first()
    if row is not None:
        resident, dialog = _split(row)
        if dialog is not None:
            return resident, dialog
    # Two first messages of one resident may run at once: each inserts only if the row is
    # absent (PostgreSQL makes the second wait for the first's commit, then do nothing),
    # then both read the row.
    dialect = connection.dialect.name
    if row is None:
        await connection.execute(_insert_if_absent(dialect, RESIDENT),
                                 {KEY: openid, "subscribed": True, "created_at": now})
    await connection.execute(_insert_if_absent(dialect, DIALOG),
                             {KEY: openid, "state": idle, "data": {}, "updated_at": now})
    resident, dialog = _split((await _LOAD.run(connection, {KEY: openid})).rows[0])
    assert dialog is not None
    return resident, dialog


async def save(connection: AsyncConnection, *records: Record) -> None:
    """Write what the handlers changed; a record without changes costs nothing."""
    for record in records:
        changed = record.changes()
        if changed:
            statement = _update(record.TABLE, tuple(sorted(changed)))
            await statement.run(connection, {**changed, "_key": record.__dict__[KEY]})
            record.mark_saved()
