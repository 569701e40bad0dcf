"""The organisation: staff, their roles, grids and departments, and the rights table, in
memory.

Every change to the organisation (`minyi org import`, `minyi staff add|disable|enable`,
a staff member binding their WeChat) bumps the `org_version` counter in the same
transaction (`bump_org_version`); each worker calls `refresh_if_changed` every
REFRESH_SECONDS and reloads the staff when the version moved, so a change reaches every
worker without a restart. The grid tree (bot.casework.areas) is loaded at start only:
area changes take effect after a restart.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.casework.rights import RightsTable
from bot.settings import CONFIG_DIR
from storage.db import Database
from storage.models import Counter, Staff

ORG_VERSION = "org_version"
REFRESH_SECONDS = 30  # how often each worker looks at the version (one indexed read)


class Organisation:
    def __init__(self, staff: list[Staff], rights: RightsTable | None = None, version: int = 0) -> None:
        self.rights = rights or default_rights()
        self.version = version
        self._set(staff)

    def _set(self, everyone: list[Staff]) -> None:
        self.staff = [p for p in everyone if p.active]  # active staff; others iterate it
        self._by_id = {p.id: p for p in everyone}
        # Looked up for every message a person sends; an active member wins an openid
        # a disabled one still holds.
        self._by_openid = {p.openid: p for p in sorted(everyone, key=lambda p: p.active) if p.openid}

    @classmethod
    async def load(cls, session: AsyncSession, rights: RightsTable | None = None) -> "Organisation":
        version = await org_version(session)  # read first: a change in between reloads once more
        rows = await session.exec(select(Staff).order_by(col(Staff.id)))
        return cls(list(rows.all()), rights, version)

    async def refresh_if_changed(self, db: Database) -> bool:
        """Reload the staff when the organisation changed since the last load (cheap
        when it did not: one read of the version); True when it reloaded."""
        async with db.session() as s:
            if await org_version(s) == self.version:
                return False
            await self.reload_in(s)
        return True

    async def reload_in(self, session: AsyncSession) -> None:
        """Reload the staff through `session`: for code inside a transaction that found the
        database ahead of this worker (there, no second session may be opened)."""
        fresh = await Organisation.load(session, self.rights)
        self._set(list(fresh._by_id.values()))
        self.version = fresh.version

    def find(self, who: str) -> Staff | None:
        """An active staff member by 工号 (login), id, or name when the name is unique."""
        return _find(self.staff, who)

    def find_any(self, who: str) -> Staff | None:
        """Like `find`, active or not (to refuse, and audit, a disabled account by name)."""
        return self.find(who) or _find(list(self._by_id.values()), who)

    def record(self, staff_id: int | None) -> Staff | None:
        """The staff member with this id as last loaded, active or not."""
        return self._by_id.get(staff_id)

    def by_openid(self, openid: str) -> Staff | None:
        """The active staff member whose WeChat is bound to `openid`."""
        person = self._by_openid.get(openid)
        return person if person is not None and person.active and person.openid == openid else None

    def note_binding(self, staff_id: int, openid: str) -> None:
        """A binding this worker just committed, known here before the next reload."""
        person = self._by_id.get(staff_id)
        if person is not None:
            person.openid = openid
            self._by_openid[openid] = person

    def disabled_by_openid(self, openid: str) -> Staff | None:
        """The disabled staff member whose WeChat is (still) bound to `openid`."""
        person = self._by_openid.get(openid)
        return person if person is not None and not person.active and person.openid == openid else None


def _find(staff: list[Staff], who: str) -> Staff | None:
    who = who.strip()
    for person in staff:
        if person.login == who or str(person.id) == who:
            return person
    named = [p for p in staff if p.name == who]
    return named[0] if len(named) == 1 else None


@functools.cache
def _rights_at(path: Path) -> RightsTable:
    return RightsTable.load(path)


def default_rights(config_dir: Path = CONFIG_DIR) -> RightsTable:
    return _rights_at(config_dir / "rights.toml")


# ---------------------------------------------------------------- the version

@functools.cache
def _version_upsert(dialect: str):  # type: ignore[no-untyped-def]
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_(Counter).on_conflict_do_update(  # type: ignore[call-overload]
        index_elements=["name"], set_={"value": Counter.value + 1}).returning(Counter.value)


async def bump_org_version(session: AsyncSession) -> int:
    """Mark the organisation changed, in the caller's transaction; the new version."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    connection = await session.connection()
    return (await connection.execute(_version_upsert(dialect), {"name": ORG_VERSION, "value": 1})).scalar_one()


async def org_version(session: AsyncSession) -> int:
    return (await session.exec(select(Counter.value).where(Counter.name == ORG_VERSION))).first() or 0
