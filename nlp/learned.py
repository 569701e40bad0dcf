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
        return self.predict_many([text])[0]

    def predict_many(self, texts: Sequence[str]) -> list[Prediction]:
        classes = [str(c) for c in self.pipeline.classes_]
        scores = self.pipeline.decision_function(list(texts))
        results = []
        for row in scores:
            row = [float(row)] if not hasattr(row, "__len__") else [float(s) for s in row]
            if len(classes) == 2 and len(row) == 1:  # binary: one score for classes_[1]
                row = [-row[0], row[0]]
            probs = _softmax(row)
            ranked = sorted(zip(classes, probs), key=lambda item: item[1], reverse=True)
            results.append(Prediction(ranked[0][0], round(ranked[0][1], 3),
                                      [(c, round(p, 3)) for c, p in ranked[:3]]))
        return results

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
