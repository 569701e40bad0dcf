"""Where, from words: estates, roads and landmarks named in a report → their grid.

Built from the grid config (each grid lists the places residents name). The longest
name found in the text wins, so 幸福里小区 beats 幸福路 inside 幸福里小区幸福路口.
"""

from __future__ import annotations

from typing import Iterable


class Gazetteer:
    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        names: dict[str, str] = {}
        for name, code in entries:
            if len(name) >= 2:
                names.setdefault(name, code)
        self._names = sorted(names.items(), key=lambda item: len(item[0]), reverse=True)

    def find(self, text: str) -> tuple[str, str] | None:
        """(place name, grid code) of the longest place named in the text."""
        for name, code in self._names:
            if name in text:
                return name, code
        return None
