"""What templates are given: the console's settings and queues, and the filters that
turn times, deadlines and polygons into what people read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.casework.queues import Queue, load_queues, photo_actions, secondary_actions
from bot.clock import to_local
from bot.settings import ConsoleSettings, Settings


@dataclass(frozen=True)
class Console:
    settings: ConsoleSettings
    queues: tuple[Queue, ...]
    secure_cookies: bool  # the public URL is https
    photo_actions: frozenset[str]  # actions whose form takes a photo
    secondary_actions: frozenset[str]  # shown last, as plain buttons

    def check(self, actions: set[str]) -> None:
        """Every action config/console.toml names is a workflow action (checked at start)."""
        unknown = (self.photo_actions | self.secondary_actions) - actions
        if unknown:
            raise ValueError(f"config/console.toml names unknown workflow actions: {sorted(unknown)}")

    @classmethod
    def load(cls, settings: Settings) -> "Console":
        return cls(settings.console, load_queues(settings.config_dir),
                   settings.server.base_url.lower().startswith("https://"), photo_actions(settings.config_dir),
                   secondary_actions(settings.config_dir))


def local_time(moment: datetime | None, pattern: str = "%m-%d %H:%M") -> str:
    return to_local(moment).strftime(pattern) if moment else ""


def polygon_svg(polygon: list[list[float]] | None, point: tuple[float, float] | None,
                size: int = 240) -> dict[str, Any] | None:
    """The grid drawn in a size × size box: the polygon's points and the ticket's point
    (lat, lng), north up. None when there is no polygon."""
    if not polygon or len(polygon) < 3:
        return None
    xs = [p[0] for p in polygon] + ([point[1]] if point else [])
    ys = [p[1] for p in polygon] + ([point[0]] if point else [])
    left, right, bottom, top = min(xs), max(xs), min(ys), max(ys)
    span = max(right - left, top - bottom) or 1e-6
    pad = size * 0.08
    scale = (size - 2 * pad) / span

    def at(lng: float, lat: float) -> tuple[float, float]:
        return round(pad + (lng - left) * scale, 1), round(size - pad - (lat - bottom) * scale, 1)

    shape = " ".join(f"{x},{y}" for x, y in (at(p[0], p[1]) for p in polygon))
    dot = at(point[1], point[0]) if point else None
    return {"size": size, "points": shape, "dot": dot}


FILTERS = {"local_time": local_time}
GLOBALS = {"polygon_svg": polygon_svg}
