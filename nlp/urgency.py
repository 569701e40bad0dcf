"""How urgent: danger words and patterns from config/urgency.toml, with negation.

"不是火灾" and "没有人受伤" must not raise a red warning: a danger word is cancelled
when a negation cue stands shortly before it in the same clause. Phrases on the
exclude list (消防演练, 火锅 ...) are blanked out before matching.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable


@dataclass(frozen=True)
class UrgencyRule:
    level: str
    name: str
    words: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class UrgencyResult:
    level: str
    reasons: tuple[str, ...]  # rule names that fired


def _exclusions(raw: Any) -> list[str]:
    phrases: list[str] = []
    for item in raw or []:
        if isinstance(item, str):
            phrases.append(item)
        elif isinstance(item, dict):
            for key in ("phrases", "words"):
                phrases.extend(item.get(key, []))
    return sorted(set(phrases), key=len, reverse=True)


class UrgencyDetector:
    def __init__(self, order: list[str], rules: list[UrgencyRule], cues: list[str], window: int,
                 separators: str, exclude: list[str]) -> None:
        self.order = order
        self.rules = rules
        self.cues = sorted(cues, key=len, reverse=True)
        self.window = window
        self.separators = set(separators)
        self.exclude = exclude
        # Danger words by their first two characters: detect() then tests only the
        # words whose opening pair occurs in the text. Shorter words are always tested.
        self._by_opening: dict[str, list[tuple[str, int]]] = {}
        self._short: list[tuple[str, int]] = []
        for number, rule in enumerate(rules):
            for word in rule.words:
                if len(word) >= 2:
                    self._by_opening.setdefault(word[:2], []).append((word, number))
                else:
                    self._short.append((word, number))

    @classmethod
    def load(cls, path: Path) -> "UrgencyDetector":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        rules = [
            UrgencyRule(r["level"], r.get("name", r["level"]), tuple(r.get("words", [])),
                        tuple(re.compile(p) for p in r.get("patterns", [])))
            for r in raw.get("rule", [])
        ]
        negation = raw.get("negation", {})
        return cls(raw["levels"]["order"], rules, negation.get("cues", []), int(negation.get("window", 6)),
                   negation.get("separators", "，。！？；,.!?;\n"), _exclusions(raw.get("exclude")))

    @property
    def lowest(self) -> str:
        return self.order[0]

    def rank(self, level: str) -> int:
        return self.order.index(level) if level in self.order else 0

    def _negated(self, text: str, start: int) -> bool:
        begin = start
        while begin > 0 and start - begin < self.window and text[begin - 1] not in self.separators:
            begin -= 1
        before = text[begin:start]
        return any(cue in before for cue in self.cues)

    def _words_by_rule(self, text: str) -> dict[int, set[str]]:
        """Rule number → the rule's words that occur in the text."""
        found: dict[int, set[str]] = {}
        for word, number in self._short:
            if word in text:
                found.setdefault(number, set()).add(word)
        for start in range(len(text) - 1):
            for word, number in self._by_opening.get(text[start:start + 2], ()):
                if text.startswith(word, start):
                    found.setdefault(number, set()).add(word)
        return found

    def _fires(self, text: str, rule: UrgencyRule, words: Iterable[str]) -> bool:
        """Whether one of `words` (the rule's words found in the text) or a pattern
        of the rule occurs in the text without a negation before it."""
        for word in words:
            start = text.find(word)
            while start != -1:
                if not self._negated(text, start):
                    return True
                start = text.find(word, start + 1)
        for pattern in rule.patterns:
            for match in pattern.finditer(text):
                if not self._negated(text, match.start()):
                    return True
        return False

    def detect(self, text: str) -> UrgencyResult:
        for phrase in self.exclude:
            text = text.replace(phrase, " " * len(phrase))
        level, reasons = self.lowest, []
        words = self._words_by_rule(text)
        for number, rule in enumerate(self.rules):
            if self._fires(text, rule, words.get(number, ())):
                reasons.append(rule.name)
                if self.rank(rule.level) > self.rank(level):
                    level = rule.level
        return UrgencyResult(level, tuple(reasons))
