"""Benchmark: the SLA tick (bot/casework/sla_clock.tick) over 100,000 open tickets, next to
a bare SQL count of the same rows, on SQLite and on PostgreSQL.

    .venv/bin/python tests/bench/bench_sla_tick.py [--tickets 100000] [--breach 0.01]
        [--backend sqlite|postgresql|both] [--pg-url postgresql+asyncpg://…/postgres]

The tickets are written with bulk Core inserts: `--tickets` open ones in running states,
of which the share `--breach` passed their closure deadline in the last 30 minutes before
the instant T (warned before: their warning marks are written too) and the rest are
before their warning point; 5 % of them not yet accepted
(the response clock runs, its deadline within a day);
`--closed` closed tickets of the last year (the clock stopped; default 20 % of --tickets) and
5 % waiting (paused). The schema is the migrated one, with the SLA clock's indexes of
migration 0006 (status + the clock's columns: the closed history is never read). Then, at T:

  bare scan   SELECT count(*) with each check's WHERE (the tick's eight conditions)
  tick 1      the breaches: marks, 督办 events, changes, notices to the street supervisors
  tick 2      the same instant again: nothing left to mark (the idempotent re-check)
  tick +4h    the next escalation level for the same tickets

Without --pg-url a throwaway PostgreSQL server is started (tests/pgserver.py) and stopped.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, literal_column, select, text  # noqa: E402

from bot.casework.sla_clock import RUNNING, checks, due_condition, tick  # noqa: E402
from bot.clock import from_local  # noqa: E402
from storage.models import SlaMark, Staff, Ticket  # noqa: E402
from tests.bench.backends import add_backend_options, run_on_backends  # noqa: E402

T = from_local(datetime(2026, 11, 24, 10, 0))
GRIDS = ["420199001001001", "420199001001002", "420199001002001", "420199001002002",
         "420199002001001", "420199002001002", "420199002002001", "420199002002002"]
CHUNK = 5000


def ticket_rows(total: int, breach: float, closed: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    breaching = int(total * breach)
    waiting = unaccepted = total // 20
    rows = []
    for i in range(total + closed + waiting):
        created = T - timedelta(minutes=rng.randint(60, 5 * 24 * 60))
        if total <= i < total + closed:  # the history: closed within the last year
            created = T - timedelta(minutes=rng.randint(7 * 24 * 60, 365 * 24 * 60))
            due, warn = created + timedelta(days=7), created + timedelta(days=5.6)
        elif i < breaching:  # passed the deadline in the 30 minutes before T (warned before)
            due = T - timedelta(seconds=rng.randint(1, 1800))
            warn = created + (due - created) * 0.8
        else:  # the warning point ahead, within 3 days; the deadline after it
            warn = T + timedelta(minutes=rng.randint(5, 3 * 24 * 60))
            due = warn + timedelta(minutes=rng.randint(6 * 60, 2 * 24 * 60))
        status = "handling" if i < total else ("resolved" if i < total + closed else "waiting")
        accepted, respond = created + timedelta(minutes=30), created + timedelta(hours=24)
        if breaching <= i < breaching + unaccepted:  # dispatched, nobody has accepted it yet
            status, accepted = "dispatched", None
            respond = T + timedelta(minutes=rng.randint(4 * 60 + 53, 24 * 60))  # warning point after T
        rows.append({
            "number": f"B{i:08d}", "openid": f"o-bench-{i % 5000}", "appeal_type": "投诉", "category": "cooking_fumes",
            "department": "environment", "co_departments": [], "urgency": "一般", "area_code": GRIDS[i % len(GRIDS)],
            "status": status, "description": "烧烤摊油烟太大", "keywords": [], "created_at": created, "updated_at": created,
            "accepted_at": accepted, "response_due_at": respond, "response_warn_at": respond - timedelta(hours=4, minutes=48),
            "closure_due_at": due,
            "closure_warn_at": warn,
            "paused_since": created if status == "waiting" else None, "paused_seconds": 0, "overdue": False,
            "escalation_level": 0, "reopen_count": 0})
    return rows


async def prepare(url: str, total: int, breach: float, closed: int) -> Any:
    from storage import migrate, seed
    from storage.db import Database

    db = Database(url, pool_size=4)
    await migrate.upgrade(db.engine)
    async with db.transaction() as s:
        await seed.load_demo(s, ROOT / "config")
        s.add_all([Staff(login="S11", name="西山督办", role="supervisor", area_code="420199001", openid="o-sup-xishan"),
                   Staff(login="S21", name="东湖督办", role="supervisor", area_code="420199002", openid="o-sup-donghu")])
    rows = ticket_rows(total, breach, closed)
    started = time.perf_counter()
    for start in range(0, len(rows), CHUNK):
        async with db.transaction() as s:
            await (await s.connection()).execute(insert(Ticket), rows[start:start + CHUNK])
    async with db.transaction() as s:  # the breaching tickets were warned before T (steady state)
        warned = select(Ticket.__table__.c.id, literal_column("'warn'"), literal_column("'closure'"),
                        literal_column("0"), Ticket.__table__.c.closure_warn_at).where(
            Ticket.__table__.c.status == "handling", Ticket.__table__.c.closure_due_at < T)
        await (await s.connection()).execute(insert(SlaMark).from_select(["ticket_id", "kind", "clock", "level", "at"],
                                                                          warned))
    async with db.engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    print(f"  wrote {len(rows):,} tickets in {time.perf_counter() - started:.1f} s", flush=True)
    return db


async def services_for(url: str, data_dir: Path, http: Any) -> Any:
    from bot.app import build_services
    from bot.settings import load_settings
    from storage.db import Database

    settings = load_settings({}).replace(data={"dir": str(data_dir)}, database={"url": url, "auto_migrate": "false"},
                                         demo={"load": "false"}, wechat={"secret": ""})
    db = Database(url, pool_size=4)
    return db, await build_services(settings, db, http)


async def bare_scan(db: Any, workflow: Any, levels: int, interval: timedelta) -> tuple[float, int]:
    running = workflow.states_with_clock(RUNNING)
    started = time.perf_counter()
    found = 0
    async with db.engine.connect() as conn:
        for check in checks(levels):
            params = {"now": T, "before": T - interval * max(check.level - 1, 0)}
            statement = select(func.count()).select_from(Ticket.__table__).where(*due_condition(check, running))
            found += (await conn.execute(statement, params)).scalar_one()
    return time.perf_counter() - started, found


async def timed_tick(case: Any, at: datetime) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await tick(case, at)
    return time.perf_counter() - started, result


async def run(name: str, url: str, args: argparse.Namespace) -> None:
    import aiohttp

    print(f"{name}: {args.tickets:,} open tickets, {args.breach:.1%} breaching at T, {args.closed:,} closed",
          flush=True)
    prepared = await prepare(url, args.tickets, args.breach, args.closed)
    await prepared.close()
    with tempfile.TemporaryDirectory(prefix="minyi-bench-sla-") as data:
        async with aiohttp.ClientSession() as http:
            db, services = await services_for(url, Path(data), http)
            try:
                escalation = services.sla.escalation
                for label, at in (("bare scan", None), ("tick 1", T), ("tick 2 (same instant)", T),
                                  ("bare scan again", None), ("tick +interval", T + escalation.interval)):
                    if at is None:
                        seconds, found = await bare_scan(db, services.workflow, len(escalation.levels),
                                                         escalation.interval)
                        print(f"  {label:<24}{seconds * 1000:>9.1f} ms   rows matched {found:,}", flush=True)
                        continue
                    seconds, result = await timed_tick(services.case, at)
                    print(f"  {label:<24}{seconds * 1000:>9.1f} ms   warnings {result.warnings:,}, breaches "
                          f"{result.breaches:,}, escalations {result.escalations:,}, notices {result.notices:,}",
                          flush=True)
            finally:
                await services.tasks.close()
                await services.outbox.close()
                await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--breach", type=float, default=0.01)
    parser.add_argument("--closed", type=int, help="closed tickets beside the open ones (default 20 %% of --tickets)")
    add_backend_options(parser, "minyi_bench_sla")
    args = parser.parse_args()
    if args.closed is None:
        args.closed = args.tickets // 5
    run_on_backends(args, "minyi_bench_sla", run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
