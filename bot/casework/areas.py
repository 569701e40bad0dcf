"""The grid tree in memory: names, parents, communities and the point locator.

Loaded from the `area` table at start-up (grids change rarely and only with approval).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from nlp.gazetteer import Gazetteer
from nlp.geo import GridLocator
from storage.models import Area


@dataclass(frozen=True)
class AreaNode:
    code: str
    name: str
    level: str
    parent_code: str | None
    center: tuple[float, float] | None  # (lat, lng)
    places: tuple[str, ...]


class AreaDirectory:
    def __init__(self, areas: list[Area]) -> None:
        self.nodes = {
            a.code: AreaNode(a.code, a.name, a.level, a.parent_code,
                             (a.center_lat, a.center_lng) if a.center_lat is not None and a.center_lng is not None else None,
                             tuple(a.places or ()))
            for a in areas
        }
        self.locator = GridLocator((a.code, a.name, a.polygon or []) for a in areas if a.level == "grid")
        grids = [a for a in areas if a.level == "grid"]
        self.gazetteer = Gazetteer([(p, a.code) for a in grids for p in (a.places or [])] +
                                   [(a.name, a.code) for a in grids])

    @classmethod
    async def load(cls, session: AsyncSession) -> "AreaDirectory":
        return cls(list((await session.exec(select(Area).order_by(Area.code))).all()))

    def name(self, code: str | None) -> str:
        node = self.nodes.get(code or "")
        return node.name if node else ""

    def full_name(self, code: str | None) -> str:
        """'西山街道 枫林社区 枫林第一网格' (street downwards)."""
        parts = []
        node = self.nodes.get(code or "")
        while node and node.level != "district":
            parts.append(node.name)
            node = self.nodes.get(node.parent_code or "")
        return " ".join(reversed(parts))

    def children(self, code: str | None, level: str) -> list[AreaNode]:
        return [n for n in self.nodes.values() if n.level == level and (code is None or n.parent_code == code)]

    def ancestors(self, code: str | None) -> list[AreaNode]:
        """The node itself and every node above it, nearest first (the escalation path)."""
        chain = []
        node = self.nodes.get(code or "")
        while node:
            chain.append(node)
            node = self.nodes.get(node.parent_code or "")
        return chain

    def locate(self, lat: float, lng: float) -> str | None:
        return self.locator.locate(lat, lng)
