"""Routing decides what (category → department), where (grid) and how urgent.

One object built once at start-up from config/ and shared by the dialogs, the CLI
and the console. Below the confidence threshold, or with no grid, a report goes
to the dispatcher's triage queue instead of a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nlp.appeal import AppealTypes
from nlp.gazetteer import Gazetteer
from nlp.geo import GridLocator
from nlp.tagger import KeywordTagger, new_tokenizer
from nlp.taxonomy import FALLBACK_CATEGORY, Taxonomy
from nlp.urgency import UrgencyDetector

DEFAULT_THRESHOLD = 0.35


@dataclass(frozen=True)
class Routing:
    category: str
    category_name: str
    department: str
    co_departments: tuple[str, ...]
    urgency: str
    urgency_reasons: tuple[str, ...]
    appeal_type: str
    area_code: str | None
    confidence: float
    keywords: tuple[str, ...]
    sla_class: str
    place: str | None = None  # the place name that located it, when text did

    @property
    def known_problem(self) -> bool:
        return self.category != FALLBACK_CATEGORY

    def needs_triage(self, threshold: float) -> bool:
        return self.area_code is None or not self.known_problem or self.confidence < threshold


class Router:
    def __init__(self, taxonomy: Taxonomy, tagger: KeywordTagger, urgency: UrgencyDetector,
                 appeal_types: AppealTypes, locator: GridLocator, gazetteer: Gazetteer,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self.taxonomy = taxonomy
        self.tagger = tagger
        self.urgency = urgency
        self.appeal_types = appeal_types
        self.locator = locator
        self.gazetteer = gazetteer
        self.threshold = threshold

    @classmethod
    def from_config(cls, config_dir: Path, locator: GridLocator, gazetteer: Gazetteer,
                    threshold: float = DEFAULT_THRESHOLD) -> "Router":
        taxonomy = Taxonomy.load(config_dir / "taxonomy.toml")
        tagger = KeywordTagger(taxonomy, new_tokenizer(config_dir / "jieba_userdict.txt"))
        return cls(taxonomy, tagger, UrgencyDetector.load(config_dir / "urgency.toml"),
                   AppealTypes.load(config_dir / "appeal_types.toml"), locator, gazetteer, threshold)

    def route(self, text: str, location: tuple[float, float] | None = None,
              home_area: str | None = None) -> Routing:
        tagging = self.tagger.tag(text)
        category = self.taxonomy.categories[tagging.category]
        urgency = self.urgency.detect(text)
        level = category.urgency if tagging.confidence >= self.threshold else self.urgency.lowest
        if self.urgency.rank(urgency.level) > self.urgency.rank(level):
            level = urgency.level
        # Where: a location beats a place named in the text, which beats the home grid.
        area = self.locator.locate(*location) if location else None
        place = None
        if area is None:
            found = self.gazetteer.find(text)
            if found:
                place, area = found
        return Routing(
            category=category.code,
            category_name=category.name,
            department=category.department,
            co_departments=category.co_departments,
            urgency=level,
            urgency_reasons=urgency.reasons,
            appeal_type=self.appeal_types.detect(text),
            area_code=area or home_area,
            confidence=tagging.confidence,
            keywords=tagging.keywords,
            sla_class=category.sla_class,
            place=place,
        )
