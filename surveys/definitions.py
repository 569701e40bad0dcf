"""Questionnaire definitions (config/surveys/*.toml), validated when loaded.

A survey is data: its questions, scale and which index each question feeds (the
群众安全感指数 takes the three security questions, equally weighted by default).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

QUESTION_KINDS = frozenset({"scale", "text", "choice"})


class SurveyError(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    code: str
    text: str
    kind: str
    index: str | None = None
    weight: float = 1.0
    optional: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Survey:
    code: str
    title: str
    intro: str
    anonymous: bool
    scale: int
    scale_labels: tuple[str, ...]
    questions: tuple[Question, ...]

    def index_weights(self, index: str) -> dict[str, float]:
        """Question code → normalised weight for one index (e.g. 'security')."""
        members = [q for q in self.questions if q.index == index]
        total = sum(q.weight for q in members)
        return {q.code: q.weight / total for q in members} if total else {}


def load_survey(path: Path) -> Survey:
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    scale = int(raw.get("scale", 5))
    labels = tuple(raw.get("scale_labels", []))
    if labels and len(labels) != scale:
        raise SurveyError(f"{path.name}: scale is {scale} but {len(labels)} scale labels are given")
    questions = []
    seen: set[str] = set()
    for item in raw.get("question", []):
        kind = item.get("kind", "scale")
        if kind not in QUESTION_KINDS:
            raise SurveyError(f"{path.name}: question {item.get('code')} has unknown kind {kind}")
        if item["code"] in seen:
            raise SurveyError(f"{path.name}: duplicate question code {item['code']}")
        seen.add(item["code"])
        if kind == "choice" and not item.get("choices"):
            raise SurveyError(f"{path.name}: choice question {item['code']} has no choices")
        questions.append(Question(item["code"], item["text"], kind, item.get("index"), float(item.get("weight", 1.0)),
                                  bool(item.get("optional", False)), tuple(item.get("choices", []))))
    if not questions:
        raise SurveyError(f"{path.name}: a survey needs at least one question")
    return Survey(raw["code"], raw["title"], raw.get("intro", ""), bool(raw.get("anonymous", False)), scale, labels,
                  tuple(questions))


def load_surveys(folder: Path) -> dict[str, Survey]:
    surveys = {}
    for path in sorted(folder.glob("*.toml")):
        survey = load_survey(path)
        if survey.code in surveys:
            raise SurveyError(f"two surveys share the code {survey.code}")
        surveys[survey.code] = survey
    return surveys
