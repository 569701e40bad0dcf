"""Demo data for the embedded default: the grid tree and staff from config/demo/, loaded
through the organisation import (bot.casework.org_import), as an admin's files would be.

Idempotent: rows that exist (by grid code / staff login) are left alone, so it is safe at
every start, and staff an admin has changed or disabled stay as they are.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sqlmodel.ext.asyncio.session import AsyncSession

DEMO_FILES = ("areas.toml", "staff.toml")
# Console password of every demo staff member (README): set only when the demo loads
# (the embedded default), only for demo staff who have none.
DEMO_PASSWORD = "minyi-demo-1"


async def load_demo(session: AsyncSession, config_dir: Path) -> dict[str, int]:
    from bot.casework.actors import SYSTEM_CODE
    from bot.casework.org import default_rights
    from bot.casework.org_files import read_file
    from bot.casework.org_import import import_org
    from nlp.taxonomy import Taxonomy

    demo = config_dir / "demo"
    records = [record for name in DEMO_FILES for record in read_file(demo / name)]
    departments = Taxonomy.load(config_dir / "taxonomy.toml").departments
    summary = await import_org(session, records, default_rights(config_dir), departments,
                               actor=SYSTEM_CODE, target="config/demo", only_new=True)
    logins = [r.values["login"] for r in records if r.values.get("login")]
    passwords = await _demo_passwords(session, logins)
    return {"areas": summary.areas.added, "staff": summary.staff.added, "passwords": passwords}


@functools.cache
def _demo_hash() -> str:
    from bot.access.passwords import hash_password

    return hash_password(DEMO_PASSWORD)  # once a process: argon2 is slow on purpose


async def _demo_passwords(session: AsyncSession, logins: list[str]) -> int:
    from sqlmodel import col, select

    from bot.clock import utcnow
    from storage.models import Staff, StaffCredential

    staff = (await session.exec(select(Staff.id).where(col(Staff.login).in_(logins)))).all()
    have = set((await session.exec(select(StaffCredential.staff_id)
                                   .where(col(StaffCredential.staff_id).in_(staff)))).all())
    missing = [i for i in staff if i not in have]
    for staff_id in missing:
        session.add(StaffCredential(staff_id=staff_id, password_hash=_demo_hash(), changed_at=utcnow()))
    return len(missing)
