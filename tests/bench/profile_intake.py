"""Server-side cost of one complaint, without HTTP or a load client: the app is built as
`minyi serve` builds it (SQLite, safe mode, offline), residents are subscribed, then
complaints go one after another through the callback's `deliver` (signature, AES, XML,
write-ahead record, handling, reply). Prints µs per complaint; `--profile` adds a
cProfile table of where the time goes.

    .venv/bin/python tests/bench/profile_intake.py [--complaints 2000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from bot.app import create_app  # noqa: E402
from bot.routes import CALLBACK  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from tests import wechat  # noqa: E402
from tests.bench.bench_callback import COMPLAINTS  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--complaints", type=int, default=2000)
    parser.add_argument("--residents", type=int, default=100)
    parser.add_argument("--profile", action="store_true", help="print a cProfile table (sorted by own time)")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key")
    parser.add_argument("--concurrency", type=int, default=1, help="deliveries in flight at once")
    parser.add_argument("--chunks", type=int, default=0, help="print the mean time of every N complaints")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="minyi-profile-"))
    env = {"MINYI_DATA_DIR": str(data_dir), "MINYI_WECHAT_TOKEN": wechat.TOKEN, "MINYI_WECHAT_APPID": wechat.APPID,
           "MINYI_WECHAT_AES_KEY": wechat.AES_KEY, "MINYI_WECHAT_SECRET": ""}
    if args.database_url:
        env["MINYI_DATABASE_URL"] = args.database_url
        env["MINYI_DATABASE_AUTO_MIGRATE"] = env["MINYI_DEMO_LOAD"] = "true"
    app = create_app(load_settings(env))
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts: database, services, scheduler
    try:
        callback = app[CALLBACK]
        sender = wechat.Sender(client=None, mode="safe")

        async def send(fields: dict) -> str:
            body, query = sender.encode(fields, sender.signed_query())
            resp = await callback.deliver(query, body)
            assert resp.status == 200, resp.text
            return resp.text or ""

        openids = [f"o-profile-{i:05d}" for i in range(args.residents)]
        for openid in openids:
            await send(wechat.event(openid, "subscribe"))
            await send(wechat.text(openid, "同意"))
        requests = [sender.encode(wechat.text(random.choice(openids), random.choice(COMPLAINTS) + f"（第{i}次反映）"),
                                  sender.signed_query()) for i in range(args.complaints)]
        profiler = cProfile.Profile() if args.profile else None
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        chunk = time.perf_counter()
        pending = iter(enumerate(requests, 1))

        async def worker() -> None:
            nonlocal chunk
            for i, (body, query) in pending:
                resp = await callback.deliver(query, body)
                assert resp.status == 200 and resp.text != "success", resp.text
                if args.chunks and i % args.chunks == 0:
                    now = time.perf_counter()
                    print(f"  complaints {i - args.chunks + 1}–{i}: {(now - chunk) / args.chunks * 1e6:.0f} µs each")
                    chunk = now

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        if profiler:
            profiler.disable()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        print(f"{args.complaints} complaints in {elapsed:.2f} s: {elapsed / args.complaints * 1e6:.0f} µs each "
              f"({cpu / args.complaints * 1e6:.0f} µs CPU), {args.complaints / elapsed:.0f}/s, {args.concurrency} at once")
        if profiler:
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
