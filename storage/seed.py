"""Demo data for the embedded default: the grid tree and staff from config/demo/, loaded
through the organisation import (bot.casework.org_import), as an admin's files would be.

Idempotent: rows that exist (by grid code / staff login) are left alone, so it is safe at
every start, and staff an admin has changed or disabled stay as they are.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel.ext.asyncio.session import AsyncSession

DEMO_FILES = ("areas.toml", "staff.toml")


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
    return {"areas": summary.areas.added, "staff": summary.staff.added}
