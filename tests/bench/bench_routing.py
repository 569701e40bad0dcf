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
import sys
from pathlib import Path
models = Path(sys.argv[1]) if len(sys.argv) > 1 else None
router = Router.from_config(CONFIG_DIR, GridLocator([]), Gazetteer([]), model_dir=models)
assert (router.model is not None) == (models is not None)
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


def rates(fns, items: list[str], repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Texts/s of each function, best pass of `repeat`; passes alternate between the
    functions so a slow spell of the machine hits them alike."""
    best = [0.0] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            for text in items:
                fn(text)
            best[i] = max(best[i], len(items) / (time.perf_counter() - started))
    return best


def demo_places():  # type: ignore[no-untyped-def]
    """The demo grids' polygons and gazetteer (config/demo/areas.toml), as served."""
    import tomllib

    from nlp.gazetteer import Gazetteer
    from nlp.geo import GridLocator

    with open(ROOT / "config" / "demo" / "areas.toml", "rb") as fh:
        areas = [a for a in tomllib.load(fh)["area"] if a["level"] == "grid"]
    locator = GridLocator([(a["code"], a["name"], a["polygon"]) for a in areas])
    gazetteer = Gazetteer([(place, a["code"]) for a in areas for place in a.get("places", [])])
    return locator, gazetteer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    from bot.settings import CONFIG_DIR
    from nlp.router import Router

    from nlp.learned import LearnedModel, read_examples, taxonomy_seed

    locator, gazetteer = demo_places()
    router = Router.from_config(CONFIG_DIR, locator, gazetteer)
    tokenizer = router.tagger.tokenizer
    items = texts()
    chars = sum(len(t) for t in items) / len(items)
    print(f"{len(items)} texts, mean {chars:.0f} characters, best of {args.repeat} passes, one core")
    train_texts, labels = read_examples(ROOT / "tests" / "data" / "routing_eval.csv")
    model = LearnedModel.train(train_texts, labels, tokenizer, seed=taxonomy_seed(router.taxonomy, labels))
    print(f"model: {len(train_texts)} labelled reports + {model.meta['n_seed']} taxonomy seeds, "
          f"{model.meta['n_features']} features")
    for name, with_model in (("keywords only", None), ("with the learned model", model)):
        router.set_model(with_model)
        tokenizer.lcut(items[0])  # warm both
        router.route(items[0])
        lcut, routed = rates([tokenizer.lcut, router.route], items, args.repeat)
        print(f"  {name}: plain jieba.lcut {lcut:>7.0f} texts/s; minyi routing (category, department, "
              f"urgency, grid, type) {routed:>7.0f} texts/s = {lcut / routed:.2f}x the cost of lcut")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp))
        for name, argv in (("keywords only", []), ("with the learned model", [tmp])):
            runs = []
            for _ in range(3):
                out = subprocess.run([sys.executable, "-c", STARTUP, *argv], cwd=ROOT, capture_output=True,
                                     text=True, check=True)
                runs.append(float(out.stdout.strip().splitlines()[-1]))
            print(f"router start-up, fresh process, jieba cache warm, {name}: "
                  f"best {min(runs):.2f} s, worst {max(runs):.2f} s")


if __name__ == "__main__":
    main()
