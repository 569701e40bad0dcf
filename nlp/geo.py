"""Where: which grid contains a point (ray casting over the grids' boundary polygons)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


def point_in_polygon(lng: float, lat: float, ring: Sequence[Sequence[float]]) -> bool:
    inside = False
    n = len(ring)
    for i in range(n):
        x1, y1 = ring[i][0], ring[i][1]
        x2, y2 = ring[(i + 1) % n][0], ring[(i + 1) % n][1]
        if (y1 > lat) != (y2 > lat):
            x_cross = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lng < x_cross:
                inside = not inside
    return inside


@dataclass(frozen=True)
class GridShape:
    code: str
    name: str
    ring: tuple[tuple[float, float], ...]
    bbox: tuple[float, float, float, float]  # min_lng, min_lat, max_lng, max_lat


class GridLocator:
    def __init__(self, grids: Iterable[tuple[str, str, Sequence[Sequence[float]]]]) -> None:
        self._shapes: list[GridShape] = []
        for code, name, ring in grids:
            if not ring or len(ring) < 3:
                continue
            points = tuple((float(p[0]), float(p[1])) for p in ring)
            lngs, lats = [p[0] for p in points], [p[1] for p in points]
            self._shapes.append(GridShape(code, name, points, (min(lngs), min(lats), max(lngs), max(lats))))

    def locate(self, lat: float, lng: float) -> str | None:
        for shape in self._shapes:
            min_lng, min_lat, max_lng, max_lat = shape.bbox
            if min_lng <= lng <= max_lng and min_lat <= lat <= max_lat and point_in_polygon(lng, lat, shape.ring):
                return shape.code
        return None
