"""Keyword tagging: jieba tokens and weighted taxonomy keywords → category scores.

Multi-character keywords match as substrings of the text (so jieba's segmentation
choices cannot hide them); single characters must stand as a whole token.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import jieba

from nlp.taxonomy import FALLBACK_CATEGORY, Taxonomy

NEGATIVE_WEIGHT = 2.0


@dataclass(frozen=True)
class Tagging:
    category: str
    confidence: float
    keywords: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)


def new_tokenizer(userdict: Path | None) -> jieba.Tokenizer:
    """A jieba tokenizer with the governance dictionary, built once per dictionary file
    and version (building one costs ~0.5 s even with jieba's cache)."""
    mtime = userdict.stat().st_mtime if userdict and userdict.exists() else 0.0
    return _tokenizer(userdict, mtime)


@functools.lru_cache(maxsize=4)
def _tokenizer(userdict: Path | None, _mtime: float) -> jieba.Tokenizer:
    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    if userdict and userdict.exists():
        tokenizer.load_userdict(str(userdict))
    return tokenizer


class KeywordTagger:
    def __init__(self, taxonomy: Taxonomy, tokenizer: jieba.Tokenizer) -> None:
        self.taxonomy = taxonomy
        self.tokenizer = tokenizer
        self._phrases: list[tuple[str, str, float]] = []  # (word, category, weight)
        self._single: dict[str, list[tuple[str, float]]] = {}
        for category in taxonomy.categories.values():
            for word, weight in category.keywords.items():
                if len(word) >= 2:
                    self._phrases.append((word, category.code, weight))
                else:
                    self._single.setdefault(word, []).append((category.code, weight))
        # Phrases by their first two characters: a text can only contain the phrases
        # whose opening pair it contains, so tag() tests those few instead of all ~1,900.
        self._by_opening: dict[str, list[int]] = {}
        for index, (word, _, _) in enumerate(self._phrases):
            self._by_opening.setdefault(word[:2], []).append(index)

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.lcut(text)

    def _phrases_in(self, text: str) -> list[tuple[str, str, float]]:
        """The phrases that occur in the text, in taxonomy order (so scores add up in
        the same order, to the same floats, as a scan of every phrase would)."""
        found: set[int] = set()
        for start in range(len(text) - 1):
            for index in self._by_opening.get(text[start:start + 2], ()):
                if text.startswith(self._phrases[index][0], start):
                    found.add(index)
        return [self._phrases[index] for index in sorted(found)]

    def tag(self, text: str) -> Tagging:
        scores: dict[str, float] = {}
        matched: dict[str, list[str]] = {}
        for word, code, weight in self._phrases_in(text):
            scores[code] = scores.get(code, 0.0) + weight
            matched.setdefault(code, []).append(word)
        # Segmenting is the slow part; only needed when a single-character keyword is there.
        if any(char in text for char in self._single):
            for token in set(self.tokens(text)):
                for code, weight in self._single.get(token, ()):
                    scores[code] = scores.get(code, 0.0) + weight
                    matched.setdefault(code, []).append(token)
        for code in list(scores):
            penalty = sum(NEGATIVE_WEIGHT for word in self.taxonomy.categories[code].negative if word in text)
            scores[code] -= penalty
        ranked = sorted(((s, c) for c, s in scores.items() if s > 0), reverse=True)
        if not ranked:
            return Tagging(FALLBACK_CATEGORY, 0.0, (), {})
        best_score, best = ranked[0]
        runner_up = ranked[1][0] if len(ranked) > 1 else 0.0
        # Strength of evidence times how clearly it beats the runner-up.
        strength = 1.0 - math.exp(-best_score / 4.0)
        margin = best_score / (best_score + runner_up)
        confidence = round(strength * margin, 3)
        return Tagging(best, confidence, tuple(dict.fromkeys(matched[best])), dict(scores))
