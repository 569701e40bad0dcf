"""Routing decides what (category → department), where (grid) and how urgent.

One object built once at start-up from config/ and shared by the dialogs, the CLI
and the console. Below the confidence threshold, or with no grid, a report goes
to the dispatcher's triage queue instead of a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nlp.appeal import AppealTypes
from nlp.gazetteer import Gazetteer
from nlp.geo import GridLocator
from nlp.tagger import KeywordTagger, Tagging, new_tokenizer
from nlp.taxonomy import FALLBACK_CATEGORY, Taxonomy
from nlp.urgency import UrgencyDetector

if TYPE_CHECKING:
    from nlp.learned import LearnedModel

DEFAULT_THRESHOLD = 0.35
# Keyword rules beat the learned model on explicit danger: when the urgency rules find a
# danger word or pattern of the highest level (特急), a confident keyword match keeps its category.
DANGER_CONFIDENCE = 0.8
# Joint dispatch: the runner-up keyword category must score at least this share of the best.
JOINT_RATIO = 0.6


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
    # The learned model's label (any label set; None without a model) and its confidence.
    label: str | None = None
    model_confidence: float | None = None
    # What decided the category: "keywords", "model", or "keywords+model" (they agreed).
    decided_by: str = "keywords"
    # Joint dispatch (联合派单): the lead department; `joint` when a second department's
    # category scored close to the best one and was added to co_departments.
    lead_department: str = ""
    joint: bool = False
    # The report's jieba tokens (the one pass): `Router.tags()` turns them into TF-IDF
    # keywords on demand (staff summaries, hot topics), so routing itself does not pay for them.
    tokens: tuple[str, ...] = ()

    @property
    def known_problem(self) -> bool:
        return self.category != FALLBACK_CATEGORY

    def needs_triage(self, threshold: float) -> bool:
        return self.area_code is None or not self.known_problem or self.confidence < threshold


class Router:
    def __init__(self, taxonomy: Taxonomy, tagger: KeywordTagger, urgency: UrgencyDetector,
                 appeal_types: AppealTypes, locator: GridLocator, gazetteer: Gazetteer,
                 threshold: float = DEFAULT_THRESHOLD, model: "LearnedModel | None" = None) -> None:
        self.taxonomy = taxonomy
        self.tagger = tagger
        self.urgency = urgency
        self.appeal_types = appeal_types
        self.locator = locator
        self.gazetteer = gazetteer
        self.threshold = threshold
        self.model: LearnedModel | None = None
        self.set_model(model)

    def set_model(self, model: "LearnedModel | None") -> None:
        """Use a learned model from now on (None: keywords only). Safe while routing:
        route() reads the attribute once."""
        if model is not None:
            model.bind(self.tagger.tokenizer)
        self.model = model

    @classmethod
    def from_config(cls, config_dir: Path, locator: GridLocator, gazetteer: Gazetteer,
                    threshold: float = DEFAULT_THRESHOLD, model_dir: Path | None = None) -> "Router":
        """Built from config/; with `model_dir` (<data dir>/models) the current learned
        model there, if any, joins the keyword rules."""
        taxonomy = Taxonomy.load(config_dir / "taxonomy.toml")
        tagger = KeywordTagger(taxonomy, new_tokenizer(config_dir / "jieba_userdict.txt"))
        model = None
        if model_dir is not None:
            from nlp.learned import current_path, load_current

            if current_path(model_dir) is not None:  # scikit-learn is imported only then
                model = load_current(model_dir, tagger.tokenizer)
        return cls(taxonomy, tagger, UrgencyDetector.load(config_dir / "urgency.toml"),
                   AppealTypes.load(config_dir / "appeal_types.toml"), locator, gazetteer, threshold, model)

    def route(self, text: str, location: tuple[float, float] | None = None,
              home_area: str | None = None) -> Routing:
        tokens = self.tagger.tokens(text)  # the one jieba pass, shared below
        tagging = self.tagger.tag(text, tokens)
        urgency = self.urgency.detect(text)
        code, confidence, keywords, decided_by = tagging.category, tagging.confidence, tagging.keywords, "keywords"
        label = model_confidence = None
        model = self.model
        if model is not None:
            prediction = model.predict(text, tokens)
            label, model_confidence = prediction.label, prediction.confidence
            danger = urgency.level == self.urgency.order[-1]
            code, confidence, decided_by = self.combine(tagging, prediction.label, prediction.confidence, danger)
            if code != tagging.category:
                keywords = self._keywords_for(code, text)
        category = self.taxonomy.categories[code]
        level = category.urgency if confidence >= self.threshold else self.urgency.lowest
        if self.urgency.rank(urgency.level) > self.urgency.rank(level):
            level = urgency.level
        co_departments, joint = self._co_departments(code, tagging.scores)
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
            co_departments=co_departments,
            urgency=level,
            urgency_reasons=urgency.reasons,
            appeal_type=self.appeal_types.detect(text),
            area_code=area or home_area,
            confidence=confidence,
            keywords=keywords,
            sla_class=category.sla_class,
            place=place,
            label=label,
            model_confidence=model_confidence,
            decided_by=decided_by,
            lead_department=category.department,
            joint=joint,
            tokens=tuple(tokens),
        )

    def combine(self, tagging: Tagging, label: str, probability: float,
                danger: bool = False) -> tuple[str, float, str]:
        """The category, its confidence and what decided it, from keywords and the model.

        The model's label is the category when it is a category code, except that
        - with `danger` (the urgency rules found a 特急 danger word or pattern in the text),
          a confident keyword match (≥ DANGER_CONFIDENCE) stays: rules win on explicit danger;
        - an unsure model (below the threshold) does not overturn a sure keyword match.
        A label outside the taxonomy (another label set) leaves the keyword category."""
        if label not in self.taxonomy.categories:
            return tagging.category, tagging.confidence, "keywords"
        if label == tagging.category:
            return label, max(tagging.confidence, probability), "keywords+model"
        if danger and tagging.confidence >= DANGER_CONFIDENCE:
            return tagging.category, tagging.confidence, "keywords"
        if probability < self.threshold <= tagging.confidence:
            return tagging.category, tagging.confidence, "keywords"
        return label, probability, "model"

    def tags(self, routing: Routing, top: int = 5) -> tuple[str, ...]:
        """The routed report's TF-IDF keywords (see KeywordTagger.tfidf_keywords)."""
        return self.tagger.tfidf_keywords(list(routing.tokens), top)

    def _keywords_for(self, code: str, text: str) -> tuple[str, ...]:
        """The category's keywords found in the text (the explanation when the model chose it)."""
        words = self.taxonomy.categories[code].keywords
        return tuple(word for word in words if len(word) >= 2 and word in text)

    def _co_departments(self, code: str, scores: dict[str, float]) -> tuple[tuple[str, ...], bool]:
        """Configured co-departments, plus the runner-up's department when two keyword
        categories of different departments both score high (joint dispatch)."""
        category = self.taxonomy.categories[code]
        co = list(category.co_departments)
        ranked = sorted(((s, c) for c, s in scores.items() if s > 0), reverse=True)
        joint = False
        if len(ranked) >= 2 and scores.get(code, 0.0) > 0:
            best = ranked[0][0]
            own = scores[code]
            others = [(s, c) for s, c in ranked if c != code]
            runner_score, runner = others[0]
            partner = self.taxonomy.categories[runner].department
            if (own >= JOINT_RATIO * best and runner_score >= JOINT_RATIO * own
                    and partner != category.department):
                joint = True
                if partner not in co:
                    co.append(partner)
        co = [d for d in co if d != category.department]
        return tuple(dict.fromkeys(co)), joint
