"""The learned router's single-text scorer: plain dicts and numpy, no scikit-learn.

scikit-learn's transform/decision_function cost ~1 ms a call (validation, sparse matrix
set-up) and importing it ~0.65 s. A fitted pipeline (TF-IDF blocks in a FeatureUnion + a
linear model) is compiled once, when it is trained, into this scorer; its `state()` is
saved with the model, so a service loads and routes with numpy alone and scikit-learn
is imported only to train, evaluate or read an older model file.

Per text and block: term counts, tf (log(tf)+1 when sublinear_tf) × idf, normalised per
block (FeatureUnion hstacks separately normalised blocks, times any transformer weight);
then scores = Σ values · coefᵀ[columns] + intercept, coefᵀ stored feature-major so each
term's class weights are one contiguous row. Same numbers as the pipeline (tested).
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from nlp.tokens import JiebaWords

log = logging.getLogger(__name__)

# Softmax temperature over the SVM's decision scores: turns margins (≈ -1.5 … 1.5) into
# a confidence that is high for a clear winner and spread out for a toss-up. 0.1 minimised
# the log-loss of out-of-fold predictions on tests/data/routing_eval.csv (seeded model);
# 0.25 (the earlier value) put a quarter of correct predictions under the triage threshold.
TEMPERATURE = 0.1
STATE_VERSION = 1


@dataclass
class Prediction:
    label: str
    confidence: float
    ranked: list[tuple[str, float]] = field(default_factory=list)  # best first, top 3


def softmax_prediction(classes: Sequence[str], row: Any) -> Prediction:
    """A Prediction from one row of decision scores (softmax confidence, top 3; ties keep
    class order)."""
    scores = [float(row)] if not hasattr(row, "__len__") else [float(s) for s in row]
    if len(classes) == 2 and len(scores) == 1:  # binary: one score for classes[1]
        scores = [-scores[0], scores[0]]
    top = max(scores)
    exps = [math.exp((v - top) / TEMPERATURE) for v in scores]
    total = sum(exps)
    best = heapq.nlargest(3, range(len(exps)), key=exps.__getitem__)  # stable, like sorted()
    return Prediction(classes[best[0]], round(exps[best[0]] / total, 3),
                      [(classes[i], round(exps[i] / total, 3)) for i in best])


def char_wb_analyzer(min_n: int, max_n: int, lowercase: bool) -> Callable[[str], list[str]]:
    """scikit-learn's `char_wb` analyzer (its `_char_wb_ngrams`, after lower-casing), for
    a `str` with no preprocessor or accent stripping."""

    def char_wb(text: str) -> list[str]:
        if lowercase:
            text = text.lower()
        grams: list[str] = []
        extend = grams.extend
        for w in text.split():  # what `_white_spaces.sub(" ", …).split()` gives
            w = " " + w + " "
            w_len = len(w)
            for n in range(min_n, max_n + 1):
                if w_len <= n:  # a short word is counted once, and longer n skipped
                    grams.append(w)
                    break
                extend([w[i:i + n] for i in range(w_len - n + 1)])
        return grams

    return char_wb


@dataclass(frozen=True)
class Block:
    """One TfidfVectorizer of the FeatureUnion, compiled. `kind` is "words" (the jieba
    tokens), "char_wb" (with `ngram` and `lowercase`) or "other" (a scikit-learn analyzer
    kept in memory only: such a scorer is not saved)."""
    kind: str
    columns: dict[str, tuple[int, float]]  # term → (column in the union, idf)
    binary: bool
    sublinear: bool
    norm: str | None
    weight: float
    ngram: tuple[int, int] = (1, 1)
    lowercase: bool = True


class FastScorer:
    def __init__(self, classes: list[str], blocks: list[Block], coef_t: Any, intercept: Any,
                 words: JiebaWords | None, analyzers: dict[int, Callable[[str], list[str]]] | None = None) -> None:
        import numpy

        self.np = numpy
        self.classes = classes
        self.blocks = blocks
        self.coef_t = coef_t
        self.intercept = intercept
        self.words = words
        self._analyzers: list[Callable[[str], list[str]] | None] = []
        for index, block in enumerate(blocks):
            if block.kind == "char_wb":
                self._analyzers.append(char_wb_analyzer(block.ngram[0], block.ngram[1], block.lowercase))
            elif block.kind == "other":
                self._analyzers.append((analyzers or {})[index])
            else:
                self._analyzers.append(None)

    # ------------------------------------------------------------ building

    @classmethod
    def compile(cls, pipeline: Any) -> "FastScorer | None":
        """None when the pipeline is not the shape this knows (then the pipeline is used)."""
        try:
            import numpy as np
            from sklearn.feature_extraction.text import TfidfVectorizer
            from sklearn.pipeline import FeatureUnion

            steps = getattr(pipeline, "steps", None)
            if not steps or len(steps) != 2:
                return None
            features, svm = steps[0][1], steps[1][1]
            if not isinstance(features, FeatureUnion) or not hasattr(svm, "coef_"):
                return None
            weights = features.transformer_weights or {}
            blocks: list[Block] = []
            analyzers: dict[int, Callable[[str], list[str]]] = {}
            words = None
            offset = 0
            for name, vectorizer in features.transformer_list:
                if type(vectorizer) is not TfidfVectorizer or vectorizer.norm not in ("l1", "l2", None):
                    return None
                size = len(vectorizer.vocabulary_)
                idf = vectorizer.idf_ if vectorizer.use_idf else np.ones(size)
                columns = {term: (offset + int(col), float(idf[col])) for term, col in vectorizer.vocabulary_.items()}
                common = dict(columns=columns, binary=bool(vectorizer.binary), sublinear=bool(vectorizer.sublinear_tf),
                              norm=vectorizer.norm, weight=float(weights.get(name, 1.0)))
                if vectorizer.input == "content" and isinstance(vectorizer.analyzer, JiebaWords):
                    if words is not None:
                        return None  # two word blocks: not a shape this knows
                    words = vectorizer.analyzer
                    blocks.append(Block("words", **common))
                elif (vectorizer.input == "content" and vectorizer.analyzer == "char_wb"
                      and vectorizer.preprocessor is None and vectorizer.strip_accents is None):
                    vectorizer._validate_ngram_range()
                    blocks.append(Block("char_wb", **common, ngram=tuple(vectorizer.ngram_range),
                                        lowercase=bool(vectorizer.lowercase)))
                else:
                    analyzers[len(blocks)] = vectorizer.build_analyzer()
                    blocks.append(Block("other", **common))
                offset += size
            coef = np.asarray(svm.coef_, dtype=np.float64)
            if coef.ndim != 2 or coef.shape[1] != offset:
                return None
            intercept = np.asarray(svm.intercept_, dtype=np.float64).reshape(-1)
            if intercept.size == 1 and coef.shape[0] > 1:
                intercept = np.full(coef.shape[0], float(intercept[0]))
            return cls([str(c) for c in pipeline.classes_], blocks, np.ascontiguousarray(coef.T), intercept,
                       words, analyzers)
        except Exception:  # anything unexpected: the pipeline path still works
            log.exception("cannot compile the routing model for fast prediction")
            return None

    def state(self) -> dict[str, Any] | None:
        """What `from_state` needs, in plain types and numpy arrays; None when a block
        has an analyzer that only scikit-learn can rebuild."""
        if any(block.kind == "other" for block in self.blocks):
            return None
        return {"version": STATE_VERSION, "classes": self.classes, "blocks": self.blocks,
                "coef_t": self.coef_t, "intercept": self.intercept,
                "words_hmm": None if self.words is None else self.words.hmm}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "FastScorer | None":
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            return None
        hmm = state["words_hmm"]
        words = None if hmm is None else JiebaWords(hmm=hmm)
        return cls(list(state["classes"]), list(state["blocks"]), state["coef_t"], state["intercept"], words)

    # ------------------------------------------------------------ scoring

    @property
    def shares_tokens(self) -> bool:
        """Whether the router's `word_tokens()` are this model's word tokens."""
        return self.words is not None and not self.words.hmm

    def prediction(self, text: str, tokens: Sequence[str] | None = None) -> Prediction:
        return softmax_prediction(self.classes, self.scores(text, tokens).tolist())

    def scores(self, text: str, tokens: Sequence[str] | None = None) -> Any:
        """Decision scores; `tokens` are the text's jieba tokens (`word_tokens`) when the
        caller has them already, else they are cut here. The tf-idf values are computed
        in Python (a few dozen terms: cheaper than numpy's per-call set-up), then one
        gather of coefficient rows and one product for all blocks."""
        columns: list[int] = []
        values: list[float] = []
        log_, sqrt_ = math.log, math.sqrt
        for block, analyzer in zip(self.blocks, self._analyzers):
            if analyzer is not None:
                terms = analyzer(text)
            elif tokens is not None and self.shares_tokens:
                terms = tokens
            else:
                terms = self.words.cut(text) if self.words is not None else []
            get = block.columns.get
            hits = [(hit, count) for term, count in Counter(terms).items() if (hit := get(term)) is not None]
            if not hits:
                continue
            if block.binary:
                block_values = [idf for (_, idf), _ in hits]
            elif block.sublinear:  # log(tf) + 1, which is exactly 1 for tf 1
                block_values = [idf if count == 1 else (log_(count) + 1.0) * idf for (_, idf), count in hits]
            else:
                block_values = [count * idf for (_, idf), count in hits]
            if block.norm == "l2":
                size = sqrt_(sum(v * v for v in block_values))
            elif block.norm == "l1":
                size = sum(abs(v) for v in block_values)
            else:
                size = 1.0
            scale = block.weight / (size or 1.0)
            columns.extend(column for (column, _), _ in hits)
            values.extend(v * scale for v in block_values)
        if not columns:
            return self.intercept.copy()
        return self.np.asarray(values) @ self.coef_t[columns] + self.intercept
