"""Benchmark: the callback fuzz (tests/test_fuzz_callback.py) at volume — by default
10,000 generated, validly signed bodies per mode (plaintext, safe) on each backend
(SQLite and the PostgreSQL server the test session starts) — then the statuses seen.

    .venv/bin/python tests/bench/fuzz_callback.py [--examples 10000] [--backends sqlite,postgresql]

It runs pytest on the fuzz test with MINYI_FUZZ_EXAMPLES and MINYI_FUZZ_REPORT set, so
what it measures is exactly what CI samples. Any status outside {200, 400, 403, 413}
fails the run (pytest's exit code is returned).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="bodies per mode and backend")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "statuses.jsonl"
        env = {**os.environ, "MINYI_FUZZ_EXAMPLES": str(args.examples), "MINYI_FUZZ_REPORT": str(report),
               "MINYI_TEST_BACKENDS": args.backends}
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz_callback.py",
             "-k", "test_no_signed_body_gets_a_5xx"], cwd=ROOT, env=env)
        elapsed = time.perf_counter() - started
        lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []

    total: Counter[str] = Counter()
    print(f"\n{'backend':<11} {'mode':<10} {'bodies':>7} {'200':>7} {'(reply)':>8} {'400':>7} {'403':>5} "
          f"{'413':>6} {'other':>6}")
    for line in lines:
        run = json.loads(line)
        statuses = Counter(run["statuses"])
        other = sum(n for status, n in statuses.items() if status not in ("200", "400", "403", "413"))
        print(f"{run['backend']:<11} {run['mode']:<10} {sum(statuses.values()):>7} {statuses['200']:>7} "
              f"{run['replies']:>8} {statuses['400']:>7} {statuses['403']:>5} {statuses['413']:>6} {other:>6}")
        total.update(statuses)
    print(f"{'all':<22} {sum(total.values()):>7} {total['200']:>7} {'':>8} {total['400']:>7} {total['403']:>5} "
          f"{total['413']:>6} {sum(n for s, n in total.items() if s not in ('200', '400', '403', '413')):>6}")
    print(f"{elapsed:.0f} s in all (pytest exit code {result.returncode})")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
