"""Benchmark: the intent step per message next to plain jieba.lcut and Router.route() on
the same texts, in the same run, on one core.

    .venv/bin/python tests/bench/bench_intent.py [--repeat 20]

Texts: the short messages of tests/data/intent_eval.csv (every intent), and the reports of
tests/data/routing_eval.csv (long texts that go on to routing). Each figure is the best of
`--repeat` passes; passes alternate between the functions so a slow spell hits them alike.
The router runs with the demo grids and keywords only (no learned model), as a fresh
install does; `jieba.lcut` is jieba's default cut (HMM on), as in bench_routing.py.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def read_texts(name: str) -> list[str]:
    with open(ROOT / "tests" / "data" / name, encoding="utf-8") as fh:
        return [row["text"] for row in csv.DictReader(fh) if row["text"].strip()]


def per_text_us(fns: list[Callable[[str], object]], items: list[str], repeat: int) -> list[float]:
    """µs per text of each function, best pass of `repeat`."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            for text in items:
                fn(text)
            best[i] = min(best[i], (time.perf_counter() - started) / len(items) * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    from bot.settings import CONFIG_DIR
    from nlp.intent import IntentClassifier
    from nlp.router import Router
    from tests.bench.bench_routing import demo_places

    locator, gazetteer = demo_places()
    router = Router.from_config(CONFIG_DIR, locator, gazetteer)
    classifier = IntentClassifier.from_config(CONFIG_DIR, tagger=router.tagger)
    tokenizer = router.tagger.tokenizer
    print(f"best of {args.repeat} passes, one core")
    for title, items in (("intent set (short messages)", read_texts("intent_eval.csv")),
                         ("routing set (reports)", read_texts("routing_eval.csv"))):
        for text in items[:20]:  # warm caches
            classifier.classify(text), router.route(text), tokenizer.lcut(text)
        chars = sum(len(t) for t in items) / len(items)
        intent, lcut, route = per_text_us([classifier.classify, tokenizer.lcut, router.route], items, args.repeat)
        print(f"{title}: {len(items)} texts, mean {chars:.0f} characters")
        print(f"  classify() {intent:7.1f} µs/text; jieba.lcut {lcut:7.1f} µs = classify {intent / lcut:.2f}x lcut; "
              f"Router.route() {route:7.1f} µs = classify {100 * intent / route:.1f} % of route")


if __name__ == "__main__":
    main()
