"""Demo data for the embedded default: the grid tree and staff from config/demo/.

Idempotent: rows that exist (by grid code / staff openid) are left alone, so it is
safe at every start and from several workers.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Area, Staff


def _load(path: Path) -> dict:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


async def load_areas(session: AsyncSession, path: Path) -> int:
    existing = set((await session.exec(select(Area.code))).all())
    added = 0
    for item in _load(path).get("area", []):  # parents come before children in the file
        if item["code"] in existing:
            continue
        session.add(Area(code=item["code"], name=item["name"], level=item["level"], parent_code=item.get("parent"),
                         polygon=item.get("polygon"), center_lat=item.get("center_lat"),
                         center_lng=item.get("center_lng"), places=item.get("places", []),
                         households=item.get("households")))
        await session.flush()
        added += 1
    return added


async def load_staff(session: AsyncSession, path: Path) -> int:
    existing = set((await session.exec(select(Staff.openid))).all())
    added = 0
    for item in _load(path).get("staff", []):
        if item.get("openid") in existing:
            continue
        session.add(Staff(login=item.get("login"), name=item["name"], role=item["role"], area_code=item.get("area"),
                          department=item.get("department"), openid=item.get("openid")))
        added += 1
    return added


async def load_demo(session: AsyncSession, config_dir: Path) -> dict[str, int]:
    demo = config_dir / "demo"
    return {"areas": await load_areas(session, demo / "areas.toml"),
            "staff": await load_staff(session, demo / "staff.toml")}
