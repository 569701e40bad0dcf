"""The learned router: TF-IDF over jieba words and character 1–3-grams + a linear model.

Trained from labelled examples (CSV `text,label`, any label set: staff re-routings and
closed tickets give category codes). Versions live in `<data dir>/models/`:
`router-<UTC timestamp>.joblib` files and a `current` file naming the one in use; the
last KEEP_VERSIONS are kept. scikit-learn is imported only when a model is trained or
loaded, so a service without a model starts as fast as before.
"""

from __future__ import annotations

import csv
import heapq
import logging
import math
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from nlp.tokens import word_tokens

log = logging.getLogger(__name__)

KEEP_VERSIONS = 5
CURRENT = "current"
PREFIX = "router-"
SUFFIX = ".joblib"
FORMAT_VERSION = 1
# Softmax temperature over the SVM's decision scores: turns margins (≈ -1.5 … 1.5) into
# a confidence that is high for a clear winner and spread out for a toss-up.
TEMPERATURE = 0.25

DEFAULT_USERDICT = Path(__file__).resolve().parent.parent / "config" / "jieba_userdict.txt"

Progress = Callable[[str], None]


# ---------------------------------------------------------------- data

def read_examples(path: Path) -> tuple[list[str], list[str]]:
    """`text,label` rows (a `category` column stands in for a missing `label`); blank rows skipped."""
    texts: list[str] = []
    labels: list[str] = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "text" not in columns:
            raise ValueError(f"{path}: 需要 text 列（现有列：{', '.join(columns) or '无'}）")
        label_column = "label" if "label" in columns else "category" if "category" in columns else None
        if label_column is None:
            raise ValueError(f"{path}: 需要 label 列（或 category 列）")
        for row in reader:
            row = {(k or "").strip(): (v or "") for k, v in row.items()}
            text, label = row.get("text", "").strip(), row.get(label_column, "").strip()
            if text and label:
                texts.append(text)
                labels.append(label)
    return texts, labels


Examples = tuple[list[str], list[str]]


def taxonomy_seed(taxonomy: Any, labels: Sequence[str]) -> Examples | None:
    """What the taxonomy already knows, as training examples: each category's example
    sentences, and each of its keywords and synonyms as a one-word document. Mixed into
    every training run whose labels are category codes, so a model starts from the
    rules' knowledge and staff labels refine it (with ~7 labelled reports a category the
    model alone scored macro-F1 0.37; seeded, 0.83). Only the categories the labels use
    are seeded; None for any other label set."""
    codes = set(labels)
    if not codes or not codes <= set(taxonomy.categories):
        return None
    texts: list[str] = []
    seeded: list[str] = []
    for code in sorted(codes):
        category = taxonomy.categories[code]
        for text in (*category.examples, *category.keywords):
            texts.append(text)
            seeded.append(code)
    return texts, seeded


# ---------------------------------------------------------------- features

class JiebaWords:
    """Analyzer for TfidfVectorizer: the router's jieba tokens, punctuation and spaces dropped.

    Pickles without the tokenizer (a jieba dictionary is tens of MB); after loading, the
    router hands its own in with `bind`, or the default dictionary is built on first use.
    `hmm` is False for models trained since the router shares one jieba pass; models saved
    before that (pickled without it) keep jieba's default cut."""

    def __init__(self, tokenizer: Any = None, hmm: bool = False) -> None:
        self.tokenizer = tokenizer
        self.hmm = hmm

    def bind(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def tokenizer_or_default(self) -> Any:
        if self.tokenizer is None:
            from nlp.tagger import new_tokenizer

            self.tokenizer = new_tokenizer(DEFAULT_USERDICT)
        return self.tokenizer

    def cut(self, text: str) -> list[str]:
        tokenizer = self.tokenizer_or_default()
        return tokenizer.lcut(text) if self.hmm else word_tokens(tokenizer, text)

    def __call__(self, text: str) -> list[str]:
        return [t for t in self.cut(text) if t.strip() and any(ch.isalnum() for ch in t)]

    def __getstate__(self) -> dict[str, Any]:
        return {"hmm": self.hmm}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.tokenizer = None
        self.hmm = bool(state.get("hmm", True))


def _pipeline(tokenizer: Any) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.svm import LinearSVC

    features = FeatureUnion([
        ("words", TfidfVectorizer(analyzer=JiebaWords(tokenizer, hmm=False), sublinear_tf=True, min_df=1)),
        # Character 1–2-grams survive typos, homophones of voice input and jieba's mistakes
        # (trigrams added nothing in cross-validation and cost a third more per report).
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
    ])
    return Pipeline([("features", features), ("svm", LinearSVC(C=1.0, class_weight="balanced"))])


def _softmax(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp((s - top) / TEMPERATURE) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def _prediction(classes: Sequence[str], row: Any) -> Prediction:
    """A Prediction from one row of decision scores (softmax confidence, top 3)."""
    row = [float(row)] if not hasattr(row, "__len__") else [float(s) for s in row]
    if len(classes) == 2 and len(row) == 1:  # binary: one score for classes_[1]
        row = [-row[0], row[0]]
    probs = _softmax(row)
    ranked = sorted(zip(classes, probs), key=lambda item: item[1], reverse=True)
    return Prediction(ranked[0][0], round(ranked[0][1], 3), [(c, round(p, 3)) for c, p in ranked[:3]])


def _fast_analyzer(vectorizer: Any) -> Callable[[str], list[str]] | None:
    """The fitted vectorizer's analyzer for one `str`, minus scikit-learn's generic wrapping
    where that is provably the same: the default `char_wb` analyzer (lower-casing only)
    becomes a faster copy of `_char_wb_ngrams`; a callable analyzer with `input="content"`
    is called directly (decoding a `str` is the identity). None for JiebaWords: its tokens
    come from the router's one jieba pass (`tokens` below). Anything else: `build_analyzer()`."""
    if vectorizer.input == "content" and isinstance(vectorizer.analyzer, JiebaWords):
        return None
    if vectorizer.input == "content" and callable(vectorizer.analyzer):
        return vectorizer.analyzer
    if (vectorizer.input == "content" and vectorizer.analyzer == "char_wb" and vectorizer.preprocessor is None
            and vectorizer.strip_accents is None):
        vectorizer._validate_ngram_range()
        min_n, max_n = vectorizer.ngram_range
        lowercase = bool(vectorizer.lowercase)

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
    return vectorizer.build_analyzer()


@dataclass(frozen=True)
class _Block:
    """One TfidfVectorizer of the FeatureUnion, compiled: analyzer (None: jieba tokens),
    term → (column, idf), and how tf and the norm are computed."""
    analyzer: Callable[[str], list[str]] | None
    columns: dict[str, tuple[int, float]]  # term → (column in the union, idf)
    binary: bool
    sublinear: bool
    norm: str | None
    weight: float


class _FastScorer:
    """The fitted pipeline's decision scores for one text, without scikit-learn per call.

    scikit-learn's transform/decision_function cost ~1 ms a call in validation and sparse
    matrix set-up; here each TfidfVectorizer of the FeatureUnion becomes a `_Block` (the
    fitted object's own analyzer, so tokenisation is identical). Per text and block: term
    counts (Python), then in numpy tf (log(tf)+1 when sublinear_tf) × idf, the block's norm
    (FeatureUnion hstacks separately normalised blocks, times any transformer weight), and
    scores = Σ values · coefᵀ[columns] + intercept, with coefᵀ stored feature-major so each
    term's class weights are one contiguous row."""

    def __init__(self, classes: list[str], blocks: list[_Block], coef_t: Any, intercept: Any,
                 words: JiebaWords | None) -> None:
        import numpy

        self.words = words
        self.classes = classes
        self.blocks = blocks
        self.coef_t = coef_t
        self.intercept = intercept
        self.np = numpy

    @classmethod
    def compile(cls, pipeline: Any) -> "_FastScorer | None":
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
            blocks = []
            offset = 0
            words = None
            for name, vectorizer in features.transformer_list:
                if type(vectorizer) is not TfidfVectorizer or vectorizer.norm not in ("l1", "l2", None):
                    return None
                size = len(vectorizer.vocabulary_)
                if isinstance(vectorizer.analyzer, JiebaWords):
                    if words is not None:
                        return None  # two word blocks: not a shape this knows
                    words = vectorizer.analyzer
                idf = vectorizer.idf_ if vectorizer.use_idf else np.ones(size)
                columns = {term: (offset + int(col), float(idf[col])) for term, col in vectorizer.vocabulary_.items()}
                blocks.append(_Block(_fast_analyzer(vectorizer), columns, bool(vectorizer.binary),
                                     bool(vectorizer.sublinear_tf), vectorizer.norm, float(weights.get(name, 1.0))))
                offset += size
            coef = np.asarray(svm.coef_, dtype=np.float64)
            if coef.ndim != 2 or coef.shape[1] != offset:
                return None
            intercept = np.asarray(svm.intercept_, dtype=np.float64).reshape(-1)
            if intercept.size == 1 and coef.shape[0] > 1:
                intercept = np.full(coef.shape[0], float(intercept[0]))
            return cls([str(c) for c in pipeline.classes_], blocks, np.ascontiguousarray(coef.T), intercept,
                       words)
        except Exception:  # anything unexpected: the pipeline path still works
            log.exception("cannot compile the routing model for fast prediction")
            return None

    def prediction(self, text: str, tokens: Sequence[str] | None = None) -> Prediction:
        """`_prediction` of the scores: the same softmax, top 3 by `heapq.nlargest`
        (stable like sorted(): ties keep class order), in plain Python — for 54 floats
        cheaper than numpy's per-call overhead."""
        scores = self.scores(text, tokens).tolist()
        classes = self.classes
        if len(scores) != len(classes):  # binary: one score
            return _prediction(classes, scores)
        top = max(scores)
        exps = [math.exp((v - top) / TEMPERATURE) for v in scores]
        total = sum(exps)
        best = heapq.nlargest(3, range(len(exps)), key=exps.__getitem__)
        return Prediction(classes[best[0]], round(exps[best[0]] / total, 3),
                          [(classes[i], round(exps[i] / total, 3)) for i in best])

    def scores(self, text: str, tokens: Sequence[str] | None = None) -> Any:
        """Decision scores; `tokens` are the text's jieba tokens (`word_tokens`) when the
        caller has them already, else they are cut here. The tf-idf values are computed
        in Python (a few dozen terms: cheaper than numpy's per-call set-up), then one
        gather of coefficient rows and one product for all blocks."""
        columns: list[int] = []
        values: list[float] = []
        log_, sqrt_ = math.log, math.sqrt
        for block in self.blocks:
            if block.analyzer is not None:
                terms = block.analyzer(text)
            else:
                terms = tokens if tokens is not None and self.shares_tokens else self.word_tokens(text)
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

    @property
    def shares_tokens(self) -> bool:
        """Whether `word_tokens()` of the router are this model's word tokens."""
        return self.words is not None and not self.words.hmm

    def word_tokens(self, text: str) -> list[str]:
        return self.words.cut(text) if self.words is not None else []


# ---------------------------------------------------------------- the model

@dataclass
class Prediction:
    label: str
    confidence: float
    ranked: list[tuple[str, float]] = field(default_factory=list)  # best first, top 3


@dataclass
class LearnedModel:
    pipeline: Any
    meta: dict[str, Any]
    path: Path | None = None
    # The compiled single-text scorer: None until first used, False when unavailable.
    _fast: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def labels(self) -> list[str]:
        return list(self.meta.get("labels", []))

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[str], tokenizer: Any = None,
              cv_folds: int = 0, progress: Progress | None = None, source: str = "",
              seed: Examples | None = None) -> "LearnedModel":
        """Fit on (texts, labels) plus `seed` (see `taxonomy_seed`), which also joins
        every cross-validation fold's training part (never its test part)."""
        if len(texts) != len(labels) or not texts:
            raise ValueError("没有训练样本")
        counts = Counter(labels)
        if len(counts) < 2:
            raise ValueError("至少需要两个不同的标签")
        say = progress or (lambda _msg: None)
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "labels": sorted(counts),
            "counts": dict(sorted(counts.items())),
            "n_examples": len(texts),
            "source": source,
        }
        if cv_folds >= 2:
            say(f"交叉验证（{cv_folds} 折）…")
            scores = cross_validate(texts, labels, cv_folds, tokenizer, seed=seed)
            if scores is not None:
                meta["cv_folds"] = scores["folds"]
                meta["cv_accuracy"] = scores["accuracy"]
                meta["cv_macro_f1"] = scores["macro_f1"]
        seed_texts, seed_labels = seed or ([], [])
        meta["n_seed"] = len(seed_texts)
        extra = f"，另加分类表种子 {len(seed_texts)} 条" if seed_texts else ""
        say(f"训练：{len(texts)} 条样本，{len(counts)} 个标签{extra}…")
        pipeline = _pipeline(tokenizer)
        pipeline.fit([*texts, *seed_texts], [*labels, *seed_labels])
        meta["n_features"] = int(sum(len(t.vocabulary_) for _, t in pipeline.named_steps["features"].transformer_list))
        meta["trained_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(pipeline, meta)

    def bind(self, tokenizer: Any) -> None:
        """Use the router's tokenizer (its user dictionary) for the word features."""
        for name, transformer in self.pipeline.named_steps["features"].transformer_list:
            if name == "words" and isinstance(transformer.analyzer, JiebaWords):
                transformer.analyzer.bind(tokenizer)

    def predict(self, text: str, tokens: Sequence[str] | None = None) -> Prediction:
        """One text, as `predict_many([text])[0]` but without scikit-learn's per-call
        overhead (see `_FastScorer`); falls back to the pipeline if it cannot be compiled.
        `tokens`: the text's `word_tokens` from the model's tokenizer, when already cut."""
        fast = self._fast
        if fast is None:
            fast = self._fast = _FastScorer.compile(self.pipeline) or False
        if fast is False:
            return self.predict_many([text])[0]
        return fast.prediction(text, tokens)

    def predict_many(self, texts: Sequence[str]) -> list[Prediction]:
        """The scikit-learn path (batches: evaluation, tests of the fast path)."""
        classes = [str(c) for c in self.pipeline.classes_]
        scores = self.pipeline.decision_function(list(texts))
        return [_prediction(classes, row) for row in scores]

    # ------------------------------------------------------------ storage

    def save(self, models_dir: Path, keep: int = KEEP_VERSIONS) -> Path:
        """Write a new version, point `current` at it, drop versions beyond `keep`."""
        import joblib

        models_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        path = models_dir / f"{PREFIX}{stamp}{SUFFIX}"
        n = 1
        while path.exists():  # same microsecond: keep names unique and still ordered
            path = models_dir / f"{PREFIX}{stamp}-{n}{SUFFIX}"
            n += 1
        self.meta["version"] = path.name
        tmp = path.with_suffix(".tmp")
        joblib.dump({"format": FORMAT_VERSION, "meta": self.meta, "pipeline": self.pipeline}, tmp, compress=3)
        os.replace(tmp, path)
        _write_atomic(models_dir / CURRENT, path.name + "\n")
        self.path = path
        prune(models_dir, keep)
        return path

    @classmethod
    def load(cls, path: Path, tokenizer: Any = None) -> "LearnedModel":
        import joblib

        blob = joblib.load(path)
        if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: 不是可识别的路由模型")
        model = cls(blob["pipeline"], dict(blob["meta"]), path)
        if tokenizer is not None:
            model.bind(tokenizer)
        return model


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".current-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def versions(models_dir: Path) -> list[Path]:
    """Model files, oldest first (names sort by their UTC timestamp)."""
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())


def current_path(models_dir: Path) -> Path | None:
    pointer = models_dir / CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    path = models_dir / name
    if not name or "/" in name or not path.is_file():
        return None
    return path


def prune(models_dir: Path, keep: int = KEEP_VERSIONS) -> list[Path]:
    current = current_path(models_dir)
    removed = []
    for old in versions(models_dir)[:-keep] if keep > 0 else []:
        if old != current:
            old.unlink(missing_ok=True)
            removed.append(old)
    return removed


def load_current(models_dir: Path, tokenizer: Any = None) -> LearnedModel | None:
    """The model `current` names, or None (no model yet, or it cannot be read: logged)."""
    path = current_path(models_dir)
    if path is None:
        return None
    try:
        return LearnedModel.load(path, tokenizer)
    except Exception:  # a broken model file must not stop the service: keywords still route
        log.exception("cannot load routing model %s; routing by keywords only", path)
        return None


# ---------------------------------------------------------------- evaluation

def cross_validate(texts: Sequence[str], labels: Sequence[str], folds: int, tokenizer: Any = None,
                   baseline: Callable[[str], str] | None = None,
                   progress: Progress | None = None, seed: Examples | None = None,
                   combine: Callable[[str, Prediction], str] | None = None) -> dict[str, Any] | None:
    """Stratified k-fold: out-of-fold predictions of the learned model (trained on the
    fold's training part plus `seed`), of `baseline` (a text → label function needing no
    training) and of `combine` (text, the fold model's prediction → label: the router's
    rules + model decision). None when the data cannot be split."""
    from sklearn.model_selection import StratifiedKFold

    counts = Counter(labels)
    folds = min(folds, max(counts.values()))
    if folds < 2 or len(counts) < 2:
        return None
    texts, labels = list(texts), list(labels)
    learned: list[str] = [""] * len(texts)
    combined: list[str] = [""] * len(texts)
    seed_texts, seed_labels = seed or ([], [])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=0).split(texts, labels))
    for number, (train, test) in enumerate(splits, 1):
        if progress:
            progress(f"  第 {number}/{folds} 折：训练 {len(train)} 条，测试 {len(test)} 条")
        train_labels = [labels[i] for i in train]
        if len(set(train_labels)) < 2:
            continue
        pipeline = _pipeline(tokenizer)
        pipeline.fit([texts[i] for i in train] + seed_texts, train_labels + seed_labels)
        predictions = LearnedModel(pipeline, {}).predict_many([texts[i] for i in test])
        for i, prediction in zip(test, predictions):
            learned[i] = prediction.label
            if combine is not None:
                combined[i] = combine(texts[i], prediction)
    result: dict[str, Any] = {"folds": folds, "n": len(texts), "n_seed": len(seed_texts), **_scores(labels, learned)}
    result["per_class_f1"] = per_class_f1(labels, learned)
    if combine is not None:
        result["combined"] = {**_scores(labels, combined), "per_class_f1": per_class_f1(labels, combined)}
    if baseline is not None:
        predicted = [baseline(t) for t in texts]
        result["baseline"] = {**_scores(labels, predicted), "per_class_f1": per_class_f1(labels, predicted)}
    return result


def _scores(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    labels = sorted(set(truth))
    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        # Macro over the true label set: a class never predicted counts as 0, and
        # predictions outside it (e.g. the fallback) are errors, not a class of their own.
        "macro_f1": round(float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)), 4),
    }


def per_class_f1(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import f1_score

    labels = sorted(set(truth))
    values = f1_score(truth, predicted, labels=labels, average=None, zero_division=0)
    return {label: round(float(v), 4) for label, v in zip(labels, values)}
