"""The learned router: TF-IDF over jieba words and character 1–3-grams + a linear model.

Trained from labelled examples (CSV `text,label`, any label set: staff re-routings and
closed tickets give category codes). Versions live in `<data dir>/models/`:
`router-<UTC timestamp>.joblib` files and a `current` file naming the one in use; the
last KEEP_VERSIONS are kept. scikit-learn is imported only when a model is trained or
loaded, so a service without a model starts as fast as before.
"""

from __future__ import annotations

import csv
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


# ---------------------------------------------------------------- features

class JiebaWords:
    """Analyzer for TfidfVectorizer: the router's jieba tokens, punctuation and spaces dropped.

    Pickles without the tokenizer (a jieba dictionary is tens of MB); after loading, the
    router hands its own in with `bind`, or the default dictionary is built on first use."""

    def __init__(self, tokenizer: Any = None) -> None:
        self.tokenizer = tokenizer

    def bind(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> list[str]:
        if self.tokenizer is None:
            from nlp.tagger import new_tokenizer

            self.tokenizer = new_tokenizer(DEFAULT_USERDICT)
        return [t for t in self.tokenizer.lcut(text) if t.strip() and any(ch.isalnum() for ch in t)]

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.tokenizer = None


def _pipeline(tokenizer: Any) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.svm import LinearSVC

    features = FeatureUnion([
        ("words", TfidfVectorizer(analyzer=JiebaWords(tokenizer), sublinear_tf=True, min_df=1)),
        # Character n-grams survive typos, homophones of voice input and jieba's mistakes.
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)),
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


def _fast_analyzer(vectorizer: Any) -> Callable[[str], list[str]]:
    """The fitted vectorizer's analyzer for one `str`, minus scikit-learn's generic wrapping
    where that is provably the same: a callable analyzer with `input="content"` is called
    directly (decoding a `str` is the identity), and the default `char_wb` analyzer (lower-
    casing only) is a faster copy of `_char_wb_ngrams`. Anything else: `build_analyzer()`."""
    if vectorizer.input == "content" and isinstance(vectorizer.analyzer, JiebaWords):
        words = vectorizer.analyzer

        def jieba_tokens(text: str) -> Any:
            # JiebaWords without its filter: the tokens it drops (punctuation, spaces) were
            # dropped when fitting too, so they are not in the vocabulary and count nothing.
            if words.tokenizer is None:
                words("")  # builds the default tokenizer
            return words.tokenizer.cut(text)

        return jieba_tokens
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


class _FastScorer:
    """The fitted pipeline's decision scores for one text, without scikit-learn per call.

    scikit-learn's transform/decision_function cost ~1 ms a call in validation and sparse
    matrix set-up; here each TfidfVectorizer of the FeatureUnion becomes its own analyzer
    (the fitted object's `build_analyzer()`, so tokenisation is identical) and a dict
    term → (column, idf). Per text: term counts, tf (log(tf)+1 when sublinear_tf) × idf,
    normalised per vectorizer (FeatureUnion hstacks separately normalised blocks, times any
    transformer weight), then scores = coef[:, columns] @ values + intercept."""

    def __init__(self, classes: list[str], parts: list[tuple[Any, dict[str, tuple[int, float]], bool, bool, str | None, float]],
                 coef: Any, intercept: Any) -> None:
        self.classes = classes
        self.parts = parts
        self.coef = coef
        self.intercept = intercept
        import numpy

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
            parts = []
            offset = 0
            for name, vectorizer in features.transformer_list:
                if type(vectorizer) is not TfidfVectorizer or vectorizer.norm not in ("l1", "l2", None):
                    return None
                idf = vectorizer.idf_ if vectorizer.use_idf else np.ones(len(vectorizer.vocabulary_))
                table = {term: (offset + int(col), float(idf[col])) for term, col in vectorizer.vocabulary_.items()}
                parts.append((_fast_analyzer(vectorizer), table, bool(vectorizer.binary),
                               bool(vectorizer.sublinear_tf), vectorizer.norm, float(weights.get(name, 1.0))))
                offset += len(vectorizer.vocabulary_)
            coef = np.ascontiguousarray(svm.coef_, dtype=np.float64)
            if coef.ndim != 2 or coef.shape[1] != offset:
                return None
            intercept = np.asarray(svm.intercept_, dtype=np.float64).reshape(-1)
            if intercept.size == 1 and coef.shape[0] > 1:
                intercept = np.full(coef.shape[0], float(intercept[0]))
            return cls([str(c) for c in pipeline.classes_], parts, coef, intercept)
        except Exception:  # anything unexpected: the pipeline path still works
            log.exception("cannot compile the routing model for fast prediction")
            return None

    def prediction(self, text: str) -> Prediction:
        """`_prediction` of the scores, with the softmax and top 3 in numpy."""
        scores = self.scores(text)
        classes = self.classes
        if len(scores) != len(classes):  # binary: one score
            return _prediction(classes, scores)
        np = self.np
        exps = np.exp((scores - scores.max()) / TEMPERATURE)
        probs = exps / exps.sum()
        top = np.argsort(-probs, kind="stable")[:3].tolist()  # ties keep class order, as sorted()
        probs = probs.tolist()
        return Prediction(classes[top[0]], round(probs[top[0]], 3), [(classes[i], round(probs[i], 3)) for i in top])

    def scores(self, text: str) -> Any:
        columns: list[int] = []
        values: list[float] = []
        log_ = math.log
        for analyzer, table, binary, sublinear, norm, weight in self.parts:
            get = table.get
            counts = [(hit, count) for term, count in Counter(analyzer(text)).items()
                      if (hit := get(term)) is not None]
            if not counts:
                continue
            block = []
            for (column, idf), count in counts:
                columns.append(column)
                if count == 1 or binary:  # tf 1 (log(1) + 1 == 1 exactly)
                    block.append(idf)
                else:
                    block.append((log_(count) + 1.0 if sublinear else float(count)) * idf)
            if norm == "l2":
                total = math.sqrt(sum(v * v for v in block))
            elif norm == "l1":
                total = sum(abs(v) for v in block)
            else:
                total = 1.0
            if total == 0.0:
                total = 1.0
            values.extend(v / total * weight for v in block)
        if not columns:
            return self.intercept.copy()
        return self.coef[:, columns] @ values + self.intercept


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
              cv_folds: int = 0, progress: Progress | None = None, source: str = "") -> "LearnedModel":
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
            scores = cross_validate(texts, labels, cv_folds, tokenizer)
            if scores is not None:
                meta["cv_folds"] = scores["folds"]
                meta["cv_accuracy"] = scores["accuracy"]
                meta["cv_macro_f1"] = scores["macro_f1"]
        say(f"训练：{len(texts)} 条样本，{len(counts)} 个标签…")
        pipeline = _pipeline(tokenizer)
        pipeline.fit(list(texts), list(labels))
        meta["n_features"] = int(sum(len(t.vocabulary_) for _, t in pipeline.named_steps["features"].transformer_list))
        meta["trained_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(pipeline, meta)

    def bind(self, tokenizer: Any) -> None:
        """Use the router's tokenizer (its user dictionary) for the word features."""
        for name, transformer in self.pipeline.named_steps["features"].transformer_list:
            if name == "words" and isinstance(transformer.analyzer, JiebaWords):
                transformer.analyzer.bind(tokenizer)

    def predict(self, text: str) -> Prediction:
        """One text, as `predict_many([text])[0]` but without scikit-learn's per-call
        overhead (see `_FastScorer`); falls back to the pipeline if it cannot be compiled."""
        fast = self._fast
        if fast is None:
            fast = self._fast = _FastScorer.compile(self.pipeline) or False
        if fast is False:
            return self.predict_many([text])[0]
        return fast.prediction(text)

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
                   progress: Progress | None = None) -> dict[str, Any] | None:
    """Stratified k-fold: out-of-fold predictions of the learned model (and of `baseline`,
    a text → label function needing no training). None when the data cannot be split."""
    from sklearn.model_selection import StratifiedKFold

    counts = Counter(labels)
    folds = min(folds, max(counts.values()))
    if folds < 2 or len(counts) < 2:
        return None
    texts, labels = list(texts), list(labels)
    learned: list[str] = [""] * len(texts)
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
        pipeline.fit([texts[i] for i in train], train_labels)
        for i, label in zip(test, pipeline.predict([texts[i] for i in test])):
            learned[i] = str(label)
    result: dict[str, Any] = {"folds": folds, "n": len(texts), **_scores(labels, learned)}
    result["per_class_f1"] = per_class_f1(labels, learned)
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
