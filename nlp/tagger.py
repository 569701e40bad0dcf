"""Keyword tagging: jieba tokens and weighted taxonomy keywords → category scores.

Multi-character keywords match as substrings of the text (so jieba's segmentation
choices cannot hide them); single characters must stand as a whole token.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import jieba

from nlp.taxonomy import FALLBACK_CATEGORY, Taxonomy
from nlp.tokens import word_tokens

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
        """The one jieba pass a report gets (shared with the learned model)."""
        return word_tokens(self.tokenizer, text)

    def tfidf_keywords(self, tokens: list[str], top: int = 5) -> tuple[str, ...]:
        """The report's TF-IDF keywords: term frequency × jieba's inverse word frequency
        (log of the dictionary total over the word's count; unknown words count as rare).
        Stop-ish words (one character, digits, punctuation) are left out. For staff they
        summarise a report at a glance; hot-topic detection groups reports by them."""
        freq, total = self.tokenizer.FREQ, self.tokenizer.total
        rare = math.log(total)
        weights: dict[str, float] = {}
        for token, count in Counter(tokens).items():  # first occurrence order breaks ties
            if len(token) >= 2 and not token.isdigit() and any(ch.isalnum() for ch in token):
                weights[token] = count * (math.log(total / f) if (f := freq.get(token)) else rare)
        ranked = sorted(weights, key=weights.__getitem__, reverse=True)  # stable
        return tuple(ranked[:top])

    def _phrases_in(self, text: str) -> list[tuple[str, str, float]]:
        """The phrases that occur in the text, in taxonomy order (so scores add up in
        the same order, to the same floats, as a scan of every phrase would)."""
        found: set[int] = set()
        for start in range(len(text) - 1):
            for index in self._by_opening.get(text[start:start + 2], ()):
                if text.startswith(self._phrases[index][0], start):
                    found.add(index)
        return [self._phrases[index] for index in sorted(found)]

    def tag(self, text: str, tokens: list[str] | None = None) -> Tagging:
        """`tokens`: the text's `tokens()` when the caller has cut it already."""
        scores: dict[str, float] = {}
        matched: dict[str, list[str]] = {}
        for word, code, weight in self._phrases_in(text):
            scores[code] = scores.get(code, 0.0) + weight
            matched.setdefault(code, []).append(word)
        # Segmenting is the slow part; only needed when a single-character keyword is there.
        if any(char in text for char in self._single):
            for token in set(tokens if tokens is not None else self.tokens(text)):
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
