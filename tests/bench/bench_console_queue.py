"""Benchmark: the console's queue page (GET /console/q/…) over 10,000 open tickets in the
staff member's scope, on SQLite and on PostgreSQL, through the real app over HTTP.

    .venv/bin/python tests/bench/bench_console_queue.py [--tickets 10000] [--requests 60]
        [--backend sqlite|postgresql|both] [--pg-url postgresql+asyncpg://…/postgres]

`--tickets` open tickets in 枫林第一网格 (the grid worker G01's scope), as many again in the
seven other grids, and 20 % closed ones; deadlines spread so some are on time, some past
their warning point and some breached. Each page is fetched `--requests` times one after
another, logged in as a browser would be (session cookie); a page is the full server
work: the session, the rights filter, the count, one page of 30 tickets sorted by
deadline, the tab counts of every queue, and the template. Reported: p50 / p95 / max.
Goal (issue 10): p95 < 300 ms.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from bot.clock import utcnow  # noqa: E402
from storage.models import Ticket  # noqa: E402
from tests.bench.backends import add_backend_options, run_on_backends  # noqa: E402

GRIDS = ["420199001001001", "420199001001002", "420199001002001", "420199001002002",
         "420199002001001", "420199002001002", "420199002002001", "420199002002002"]
CHUNK = 5000
PAGES = [("G01", "/console/q/grid", "grid worker: my grid, page 1"),
         ("G01", "/console/q/grid?page=200", "grid worker: my grid, page 200"),
         ("G01", "/console/q/grid?q=5号楼", "grid worker: text search"),
         ("G01", "/console/q/all?urgency=紧急", "grid worker: all, one urgency"),
         ("D01", "/console/q/all", "district dispatcher: all open (2× tickets)"),
         ("D01", "/console/q/overdue", "district dispatcher: overdue")]


def ticket_rows(mine: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    now = utcnow()
    rows = []
    total = mine * 2 + mine // 5
    for i in range(total):
        grid = GRIDS[0] if i < mine else GRIDS[1 + i % 7]
        closed = i >= mine * 2
        created = now - timedelta(minutes=rng.randint(10, 6 * 24 * 60))
        accepted = created + timedelta(minutes=20) if i % 3 else None
        respond = created + timedelta(hours=24)
        close = created + timedelta(days=rng.choice([1, 3, 7]))
        status = ("resolved" if closed else "handling") if accepted else ("resolved" if closed else "dispatched")
        rows.append({
            "number": f"Q{i:08d}", "openid": f"o-bench-{i % 3000}", "appeal_type": "投诉", "category": "garbage",
            "department": "urban_mgmt", "co_departments": [], "urgency": rng.choice(["一般", "一般", "紧急", "特急"]),
            "area_code": grid, "status": status,
            "description": f"枫林小区{i % 40}号楼垃圾桶满了好几天没人清运，臭气熏天，电话1380000{i % 10000:04d}",
            "keywords": ["垃圾", "清运"], "confidence": 0.8, "created_at": created, "updated_at": created,
            "accepted_at": accepted, "response_due_at": respond, "response_warn_at": created + timedelta(hours=19),
            "closure_due_at": close, "closure_warn_at": created + (close - created) * 0.8,
            "closed_at": created + timedelta(hours=5) if closed else None,
            "paused_seconds": 0, "overdue": (not closed) and close < now, "escalation_level": 0, "reopen_count": 0})
    return rows


async def prepare(url: str, mine: int) -> None:
    from storage import migrate, seed
    from storage.db import Database

    db = Database(url, pool_size=4)
    try:
        await migrate.upgrade(db.engine)
        async with db.transaction() as s:
            await seed.load_demo(s, ROOT / "config")
        rows = ticket_rows(mine)
        started = time.perf_counter()
        for start in range(0, len(rows), CHUNK):
            async with db.transaction() as s:
                await (await s.connection()).execute(insert(Ticket), rows[start:start + CHUNK])
        async with db.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        print(f"  wrote {len(rows):,} tickets in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        await db.close()


async def login(http: Any, base: str, who: str) -> None:
    page = await (await http.get(f"{base}/console/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = await http.post(f"{base}/console/login", allow_redirects=False,
                               data={"csrf": csrf, "login": who, "password": "minyi-demo-1", "next": ""})
    assert response.status == 303, await response.text()


async def run(name: str, url: str, args: argparse.Namespace) -> None:
    import aiohttp
    from aiohttp import web

    from bot.app import create_app
    from bot.settings import load_settings

    print(f"{name}: {args.tickets:,} open tickets in G01's grid, {args.tickets:,} in others, "
          f"{args.tickets // 5:,} closed", flush=True)
    await prepare(url, args.tickets)
    with tempfile.TemporaryDirectory(prefix="minyi-bench-console-") as data:
        settings = load_settings({}).replace(data={"dir": data}, database={"url": url, "auto_migrate": "false"},
                                             demo={"load": "false"}, wechat={"secret": ""},
                                             scheduler={"sla_tick_seconds": "3600"}, log={"level": "WARNING"})
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        sessions: dict[str, Any] = {}
        try:
            for who in {w for w, _, _ in PAGES}:
                sessions[who] = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
                await login(sessions[who], base, who)
            for who, path, label in PAGES:
                http = sessions[who]
                await http.get(base + path)  # warm
                times = []
                for _ in range(args.requests):
                    started = time.perf_counter()
                    response = await http.get(base + path)
                    body = await response.read()
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status == 200 and b"data-number" in body, (path, response.status)
                times.sort()
                p95 = times[max(0, int(len(times) * 0.95) - 1)]
                print(f"  {label:<44} p50 {statistics.median(times):6.1f} ms   p95 {p95:6.1f} ms   "
                      f"max {times[-1]:6.1f} ms", flush=True)
        finally:
            for http in sessions.values():
                await http.close()
            await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=60)
    add_backend_options(parser, "minyi_bench_console")
    args = parser.parse_args()
    run_on_backends(args, "minyi_bench_console", run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
