"""The learned router: TF-IDF over jieba words and character 1–2-grams + a linear model.

Trained from labelled examples (CSV `text,label`, any label set: staff re-routings and
closed tickets give category codes). Versions live in `<data dir>/models/`:
`router-<UTC timestamp>.joblib` files and a `current` file naming the one in use; the
last KEEP_VERSIONS are kept. scikit-learn is imported only when a model is trained or
loaded, so a service without a model starts as fast as before.
"""

from __future__ import annotations

import csv
import logging
import os
import pickle
import tempfile
import warnings
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from nlp.scorer import FastScorer, Prediction, softmax_prediction
from nlp.tokens import JiebaWords

log = logging.getLogger(__name__)

KEEP_VERSIONS = 5
CURRENT = "current"
PREFIX = "router-"
SUFFIX = ".joblib"
# 2: the pipeline pickled as bytes (unpickled, importing scikit-learn, only when needed)
# next to the compiled scorer's state; 1: the pipeline itself (still read).
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)

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
    """What the taxonomy already knows, as training examples: every category's example
    sentences, and each of its keywords and synonyms as a one-word document. Mixed into
    every training run whose labels are category codes, so a model starts from the
    rules' knowledge and staff labels refine it (with ~7 labelled reports a category the
    model alone scored macro-F1 0.37; seeded, 0.83), and a model retrained from a few
    dozen tickets still knows every category. None for any other label set."""
    codes = set(labels)
    if not codes or not codes <= set(taxonomy.categories):
        return None
    texts: list[str] = []
    seeded: list[str] = []
    for code, category in sorted(taxonomy.categories.items()):
        for text in (*category.examples, *category.keywords):
            texts.append(text)
            seeded.append(code)
    return texts, seeded


# ---------------------------------------------------------------- features

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


# ---------------------------------------------------------------- the model

class LearnedModel:
    """A trained router model: its metadata, the compiled scorer that routes, and the
    scikit-learn pipeline it came from (kept for batches and evaluation; after loading a
    saved model it stays pickled until something needs it)."""

    def __init__(self, pipeline: Any, meta: dict[str, Any], path: Path | None = None,
                 scorer: FastScorer | None = None, pipeline_bytes: bytes | None = None) -> None:
        self._pipeline = pipeline
        self._pipeline_bytes = pipeline_bytes
        self.meta = meta
        self.path = path
        self._tokenizer: Any = None
        # The compiled single-text scorer: None until first used, False when unavailable.
        self._fast: FastScorer | None | bool = scorer

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None and self._pipeline_bytes is not None:
            self._pipeline = pickle.loads(self._pipeline_bytes)
            self._pipeline_bytes = None
            if self._tokenizer is not None:
                self._bind_pipeline(self._tokenizer)
        return self._pipeline

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
        seed_texts, seed_labels = seed or ([], [])
        if len(counts.keys() | set(seed_labels)) < 2:
            raise ValueError("至少需要两个不同的标签")
        say = progress or (lambda _msg: None)
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "labels": sorted(counts.keys() | set(seed_labels)),
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
        self._tokenizer = tokenizer
        if isinstance(self._fast, FastScorer) and self._fast.words is not None:
            self._fast.words.bind(tokenizer)
        if self._pipeline is not None:
            self._bind_pipeline(tokenizer)

    def _bind_pipeline(self, tokenizer: Any) -> None:
        for name, transformer in self._pipeline.named_steps["features"].transformer_list:
            if name == "words" and isinstance(transformer.analyzer, JiebaWords):
                transformer.analyzer.bind(tokenizer)

    def scorer(self) -> FastScorer | None:
        """The compiled scorer (compiled from the pipeline on first use)."""
        if self._fast is None:
            self._fast = FastScorer.compile(self.pipeline) or False
            if self._fast and self._tokenizer is not None and self._fast.words is not None:
                self._fast.words.bind(self._tokenizer)
        return self._fast or None

    def predict(self, text: str, tokens: Sequence[str] | None = None) -> Prediction:
        """One text, as `predict_many([text])[0]` but without scikit-learn's per-call
        overhead (see `nlp.scorer`); falls back to the pipeline if it cannot be compiled.
        `tokens`: the text's `word_tokens` from the model's tokenizer, when already cut."""
        fast = self._fast if isinstance(self._fast, FastScorer) else self.scorer()
        if fast is None:
            return self.predict_many([text])[0]
        return fast.prediction(text, tokens)

    def predict_many(self, texts: Sequence[str]) -> list[Prediction]:
        """The scikit-learn path (batches: evaluation, tests of the fast path)."""
        classes = [str(c) for c in self.pipeline.classes_]
        scores = self.pipeline.decision_function(list(texts))
        return [softmax_prediction(classes, row) for row in scores]

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
        scorer = self.scorer()
        blob = {"format": FORMAT_VERSION, "meta": self.meta,
                "pipeline": pickle.dumps(self.pipeline, protocol=pickle.HIGHEST_PROTOCOL),
                "scorer": scorer.state() if scorer is not None else None}
        joblib.dump(blob, tmp, compress=3)
        os.replace(tmp, path)
        _write_atomic(models_dir / CURRENT, path.name + "\n")
        self.path = path
        prune(models_dir, keep)
        return path

    @classmethod
    def load(cls, path: Path, tokenizer: Any = None) -> "LearnedModel":
        import joblib

        blob = joblib.load(path)
        if not isinstance(blob, dict) or blob.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{path}: 不是可识别的路由模型")
        if blob["format"] == 1:
            model = cls(blob["pipeline"], dict(blob["meta"]), path)
        else:
            scorer = FastScorer.from_state(blob["scorer"]) if blob.get("scorer") is not None else None
            model = cls(None, dict(blob["meta"]), path, scorer=scorer, pipeline_bytes=blob["pipeline"])
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
    return _report(texts, labels, learned, combined if combine else None, baseline,
                   folds=folds, n_seed=len(seed_texts))


def evaluate_on(train: Examples, test: Examples, tokenizer: Any = None,
                baseline: Callable[[str], str] | None = None, seed: Examples | None = None,
                combine: Callable[[str, Prediction], str] | None = None) -> dict[str, Any]:
    """Train once on `train` (+ `seed`), score on a separate `test` set: the figure for
    a test set nobody tuned the rules or the model on. Same result shape as
    `cross_validate`, with folds 0."""
    seed_texts, seed_labels = seed or ([], [])
    pipeline = _pipeline(tokenizer)
    pipeline.fit([*train[0], *seed_texts], [*train[1], *seed_labels])
    texts, labels = list(test[0]), list(test[1])
    predictions = LearnedModel(pipeline, {}).predict_many(texts)
    learned = [p.label for p in predictions]
    combined = [combine(t, p) for t, p in zip(texts, predictions)] if combine else None
    return _report(texts, labels, learned, combined, baseline, folds=0, n_seed=len(seed_texts))


def _report(texts: list[str], labels: list[str], learned: list[str], combined: list[str] | None,
            baseline: Callable[[str], str] | None, folds: int, n_seed: int) -> dict[str, Any]:
    result: dict[str, Any] = {"folds": folds, "n": len(texts), "n_seed": n_seed, **_scores(labels, learned)}
    result["per_class_f1"] = per_class_f1(labels, learned)
    if combined is not None:
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
