"""Benchmark: routing throughput on one core next to plain jieba.lcut on the same
texts, in the same run, and the router's start-up time (jieba cache warm).

    .venv/bin/python tests/bench/bench_routing.py [--repeat 20]

Texts: tests/data/routing_eval.csv when present, else the example sentences of
config/taxonomy.toml. Start-up is measured in a fresh interpreter (python -c), so
it includes importing jieba and building the governance dictionary, as `minyi serve` does.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

STARTUP = """
import time
started = time.perf_counter()
from bot.settings import CONFIG_DIR
from nlp.gazetteer import Gazetteer
from nlp.geo import GridLocator
from nlp.router import Router
router = Router.from_config(CONFIG_DIR, GridLocator([]), Gazetteer([]))
router.route("小区电梯坏了")
print(time.perf_counter() - started)
"""


def texts() -> list[str]:
    eval_set = ROOT / "tests" / "data" / "routing_eval.csv"
    if eval_set.exists():
        with open(eval_set, encoding="utf-8") as fh:
            return [row["text"] for row in csv.DictReader(fh)]
    import tomllib

    with open(ROOT / "config" / "taxonomy.toml", "rb") as fh:
        return [e for c in tomllib.load(fh)["category"] for e in c.get("examples", [])]


def rate(fn, items: list[str], repeat: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(repeat):
        for text in items:
            fn(text)
    return repeat * len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from bot.settings import CONFIG_DIR
    from nlp.gazetteer import Gazetteer
    from nlp.geo import GridLocator
    from nlp.router import Router

    router = Router.from_config(CONFIG_DIR, GridLocator([]), Gazetteer([]))
    tokenizer = router.tagger.tokenizer
    items = texts()
    tokenizer.lcut(items[0])  # warm both
    router.route(items[0])
    lcut = rate(tokenizer.lcut, items, args.repeat)
    routed = rate(router.route, items, args.repeat)
    chars = sum(len(t) for t in items) / len(items)
    print(f"{len(items)} texts, mean {chars:.0f} characters, {args.repeat} passes, one core")
    print(f"plain jieba.lcut (same tokenizer + user dict)  {lcut:>9.0f} texts/s")
    print(f"minyi routing (category, urgency, place, type) {routed:>9.0f} texts/s  = {lcut / routed:.2f}x the cost of lcut")
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", STARTUP], cwd=ROOT, capture_output=True, text=True, check=True)
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    print(f"router start-up, fresh process, jieba cache warm: best {min(runs):.2f} s, worst {max(runs):.2f} s")


if __name__ == "__main__":
    main()
