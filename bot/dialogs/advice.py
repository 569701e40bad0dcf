"""Emergency advice and prompts from config/emergency.toml, loaded once at start."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmergencyGuide:
    legal_basis: str
    ask_location: str
    location_added: str
    location_unknown: str
    ask_consent_after: str
    default: str
    advice: tuple[tuple[frozenset[str], str], ...]
    notify_roles: frozenset[str]

    @classmethod
    def load(cls, path: Path) -> "EmergencyGuide":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        advice = tuple((frozenset(a["rules"]), a["text"].strip()) for a in raw.get("advice", []))
        return cls(raw["legal_basis"], raw["ask_location"], raw["location_added"], raw["location_unknown"],
                   raw["ask_consent_after"], raw["default"].strip(), advice, frozenset(raw["notify_roles"]))

    def advice_for(self, reasons: tuple[str, ...]) -> str:
        """The advice of the first entry naming a rule that fired; the default otherwise."""
        fired = set(reasons)
        return next((text for rules, text in self.advice if rules & fired), self.default)
