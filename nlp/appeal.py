"""Which of the five appeal types (投诉/求助/咨询/建议/举报) a text is."""

from __future__ import annotations

import tomllib
from pathlib import Path


class AppealTypes:
    def __init__(self, ordered: list[tuple[str, tuple[str, ...]]], default: str) -> None:
        self.ordered = ordered
        self.default = default

    @classmethod
    def load(cls, path: Path) -> "AppealTypes":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        return cls([(t["name"], tuple(t["cues"])) for t in raw["type"]], raw["default"])

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self.ordered))

    def detect(self, text: str) -> str:
        for name, cues in self.ordered:
            if any(cue in text for cue in cues):
                return name
        return self.default
