"""Fault runs, long: a real `minyi serve` under WeChat-like load while it is killed
with -9, its PostgreSQL is stopped, or its pool is starved; then the database is
checked: acknowledged complaints without a ticket, tickets without their reply, and
MsgIds with two tickets must all be 0. The harness is tests/faults.py; the short
versions run in tests/test_faults.py.

    .venv/bin/python tests/bench/fault_harness.py --backend sqlite --workers 2 --residents 200 \\
        --seconds 60 --kills 5                         # kill -9: group, one worker, group, …
    .venv/bin/python tests/bench/fault_harness.py --backend postgresql --seconds 60 --kills 5 --budget 0.003
                                                       # the late path: most answers 'success'
    .venv/bin/python tests/bench/fault_harness.py --backend postgresql --seconds 30 --outage 10
                                                       # PostgreSQL stopped for 10 s under load
    .venv/bin/python tests/bench/fault_harness.py --backend postgresql --seconds 5 --rate 300 \\
        --concurrency 64 --pool-size 1 --pool-timeout 0.2  # pool exhaustion
    .venv/bin/python tests/bench/fault_harness.py --stall  # a database slow to record, then to finish
    .venv/bin/python tests/bench/fault_harness.py --stall --workers 1 --handling-stall 6

The late path: the callback may answer 'success' only once the delivery is recorded,
and it looks once, when the budget runs out; a budget below the time to record
(0.001 s on PostgreSQL) therefore gives replies in the answer, not 'success' — 0.003 s
forces the late path there. The embedded SQLite runs on the event loop without
yielding, so no budget forces it: its late replies come from the sweeper after a kill.

--commit REV runs the service from that commit, exported, so a long run measures one
version while others edit the working tree (the harness itself comes from here).
PostgreSQL runs start their own throwaway server (tests/pgserver.py) unless
--postgres-url names an admin URL of one (no --outage then: that needs control of it).
Exits 1 when anything was lost, duplicated or left without its reply; a failed run
keeps its data dir (serve.log, the database) and prints the first server error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.faults import ROOT as TREE, Postgres, Scenario, run_scenario, run_stall, source_tree  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--residents", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60.0, help="how long new complaints are sent")
    p.add_argument("--rate", type=float, default=40.0, help="new complaints a second")
    p.add_argument("--count", type=int, default=0, help="at most this many complaints (0: rate × seconds)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    p.add_argument("--kills", type=int, default=0, help="kill -9 this many times, evenly spread over the load")
    p.add_argument("--kill-mode", default="alternate",
                   help="group | worker | alternate (group, worker, …) | a comma list, e.g. worker,group")
    p.add_argument("--budget", type=float, default=None, help="MINYI_WECHAT_REPLY_BUDGET_SECONDS (default: 4)")
    p.add_argument("--outage", type=float, default=0.0, help="stop PostgreSQL this many seconds")
    p.add_argument("--outage-at", type=float, default=2.0, help="…this long after the load began")
    p.add_argument("--pool-size", type=int, default=None, help="MINYI_DATABASE_POOL_SIZE")
    p.add_argument("--pool-timeout", type=float, default=None, help="MINYI_DATABASE_POOL_TIMEOUT_SECONDS")
    p.add_argument("--mode", choices=["plaintext", "compatible", "safe"], default="safe")
    p.add_argument("--timeout", type=float, default=None, help="WeChat's wait for an answer (5 s; --stall: 1 s)")
    p.add_argument("--retries", type=int, default=3, help="WeChat's retries of an unanswered delivery")
    p.add_argument("--retry-interval", type=float, default=None,
                   help="seconds between a try and the next (default: the timeout)")
    p.add_argument("--postgres-url", default="", help="admin URL of a running PostgreSQL server to use")
    p.add_argument("--keep", action="store_true", help="keep the data dir (its serve.log) after the run")
    p.add_argument("--commit", default="",
                   help="run the service from this commit, exported (default: this working tree as it is)")
    p.add_argument("--source", type=Path, default=None,
                   help="run the service from this source tree instead (e.g. a patched copy)")
    stall = p.add_argument_group("--stall: recording slower than the budget, then handling slower than a retry's budget")
    stall.add_argument("--stall", action="store_true", help="run the stalled-database reproduction (PostgreSQL)")
    stall.add_argument("--record-stall", type=float, default=0.5)
    stall.add_argument("--handling-stall", type=float, default=3.0)
    args = p.parse_args(argv)
    if args.outage and args.backend != "postgresql":
        p.error("--outage needs --backend postgresql")
    if args.outage and args.postgres_url:
        p.error("--outage needs a server this run starts (drop --postgres-url)")
    return args


async def main(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        revision = subprocess.run(["git", "-C", str(TREE), "rev-parse", "--short", args.commit or "HEAD"],
                                  capture_output=True, text=True).stdout.strip()
        if args.source:
            source, what = args.source.resolve(), f"the tree {args.source}"
        elif args.commit:
            source, what = stack.enter_context(source_tree(args.commit)), f"commit {revision}"
        else:
            source, what = TREE, f"the working tree (HEAD {revision}, with whatever is uncommitted)"
        print(f"service from {what}", flush=True)
        return await _run(args, source)


async def _run(args: argparse.Namespace, source: Path) -> int:
    pg = None
    admin = args.postgres_url or None
    if (args.backend == "postgresql" or args.stall) and admin is None:
        pg = Postgres()
        pg.start()
        admin = pg.admin_url
    try:
        if args.stall:
            # Times scaled down from WeChat's (budget 4 s, timeout 5 s) unless given.
            timeout = args.timeout if args.timeout is not None else 1.0
            interval = args.retry_interval if args.retry_interval is not None else timeout
            budget = args.budget if args.budget is not None else 0.1
            print(f"stall: budget {budget} s, WeChat timeout {timeout} s, retries {args.retries} every {interval} s, "
                  f"recording stalled {args.record_stall} s, handling {args.handling_stall} s", flush=True)
            stalled = await run_stall(admin, budget=budget, record_stall=args.record_stall,
                                      handling_stall=args.handling_stall, timeout=timeout,
                                      retry_interval=interval, retries=args.retries, keep=args.keep,
                                      source=source, workers=args.workers)
            print("\n".join(stalled.lines()))
            failures = stalled.report.failures
        else:
            timeout = args.timeout if args.timeout is not None else 5.0
            interval = args.retry_interval if args.retry_interval is not None else timeout
            scenario = Scenario(
                backend=args.backend, workers=args.workers, residents=args.residents,
                count=args.count or int(args.rate * args.seconds) + 1, seconds=args.seconds, rate=args.rate,
                concurrency=args.concurrency, mode=args.mode, budget=args.budget, kills=args.kills,
                kill_mode=args.kill_mode, outage_at=args.outage_at if args.outage else None,
                outage_seconds=args.outage, pool_size=args.pool_size, pool_timeout=args.pool_timeout,
                retries=args.retries, timeout=timeout, retry_interval=interval, source=source)
            started = time.monotonic()
            outcome = await run_scenario(scenario, admin_url=admin, pg=pg, keep=args.keep,
                                         progress=lambda m: print(f"[{time.monotonic() - started:6.1f} s] {m}",
                                                                  flush=True))
            print("\n".join(outcome.lines()))
            failures = outcome.report.failures
        print("RESULT:", "nothing lost" if not failures else f"FAILED {failures}")
        return 1 if failures else 0
    finally:
        if pg is not None:
            pg.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
