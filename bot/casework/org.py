"""The organisation: active staff, their roles, grids and departments, in memory."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Staff


class Organisation:
    def __init__(self, staff: list[Staff]) -> None:
        self.staff = staff

    @classmethod
    async def load(cls, session: AsyncSession) -> "Organisation":
        rows = await session.exec(select(Staff).where(Staff.active == True))  # noqa: E712
        return cls(list(rows.all()))

    def find(self, who: str) -> Staff | None:
        """An active staff member by 工号 (login), id, or name when the name is unique."""
        who = who.strip()
        for person in self.staff:
            if person.login == who or str(person.id) == who:
                return person
        named = [p for p in self.staff if p.name == who]
        return named[0] if len(named) == 1 else None
