"""Benchmark: safe-mode (AES) encrypted complaints through the real server on loopback,
each creating a ticket, next to two peers measured by the same client in the same run:
a bare aiohttp handler that returns a fixed reply, and WeRoBot (the established Python
WeChat framework) answering each text from its SQLite session store, in safe mode too.

    .venv/bin/python tests/bench/bench_callback.py [--workers 1] [--seconds 10] [--concurrency 32] [--rate 300]

WeRoBot is installed into its own environment (default ~/.cache/minyi-bench/werobot,
`--peer-venv`), never into minyi's; `--no-werobot` skips it.

Phases: (1) bare aiohttp, closed loop; (2) WeRoBot, closed loop; (3) minyi, closed loop
(max throughput); (4) minyi, open loop at --rate requests/s (latency at a fixed load).
Residents are
subscribed and consented before timing; every timed request is a new complaint
(unique MsgId) long enough to become a ticket at once. At the end the ticket count
is checked against the number of complaints answered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import wechat  # noqa: E402

COMPLAINTS = [
    "幸福里小区3号楼的电梯又坏了，老人上下楼很困难，请尽快派人修",
    "枫林小区楼下烧烤摊每天晚上油烟太大，窗户都不敢开",
    "春晖家园楼上邻居天天半夜装修砸墙，吵得孩子睡不着",
    "翠竹苑小区垃圾站好几天没人清运了，臭气熏天",
    "锦绣路上的下水道井盖丢了，晚上很容易有人掉进去",
    "金桂苑物业把绿化带改成停车位收费，业主都有意见",
]

BARE_SERVER = """
import sys
from aiohttp import web
REPLY = "<xml><ToUserName><![CDATA[o]]></ToUserName><FromUserName><![CDATA[gh]]></FromUserName>" \\
        "<CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ok]]></Content></xml>"
async def handle(request):
    await request.read()
    return web.Response(text=REPLY, content_type="application/xml")
app = web.Application()
app.router.add_post("/wechat", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


# WeRoBot's answer to a text: the session store is read and written on every message,
# as minyi's dialog state is. Run by WeRoBot's own run() on waitress (threaded WSGI).
WEROBOT_SERVER = """
import sys
import werobot
from werobot.session.sqlitestorage import SQLiteStorage
port, db, token, aes_key, appid = sys.argv[1:6]
robot = werobot.WeRoBot(token=token, encoding_aes_key=aes_key, app_id=appid,
                        session_storage=SQLiteStorage(db))
@robot.text
def answer(message, session):
    count = session.get("count", 0) + 1
    session["count"] = count
    return "收到，这是您的第%d条消息" % count
robot.config["HOST"] = "127.0.0.1"
robot.config["PORT"] = int(port)
robot.run(server="waitress")
"""


def werobot_python(venv: Path) -> Path:
    """WeRoBot's own environment, created once (the package registry is reachable)."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"==> installing WeRoBot into {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    check = subprocess.run([str(python), "-c", "import werobot, waitress, cryptography"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "werobot==1.13.1", "waitress", "cryptography"], check=True)
    return python


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"server at {url} did not start")


def encrypted_request(fields: dict, sender: wechat.Sender) -> tuple[bytes, dict[str, str]]:
    return sender.encode(fields, sender.signed_query())


class Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0

    def summary(self, seconds: float) -> dict[str, float]:
        lat = sorted(self.latencies)
        if not lat:
            return {"rps": 0, "p50_ms": 0, "p99_ms": 0, "errors": self.errors, "n": 0}
        return {
            "n": len(lat),
            "rps": len(lat) / seconds,
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
            "errors": self.errors,
        }


async def one(http: aiohttp.ClientSession, url: str, body: bytes, query: dict, rec: Recorder) -> None:
    started = time.perf_counter()
    try:
        async with http.post(url, params=query, data=body) as resp:
            text = await resp.text()
            ok = resp.status == 200 and text != "success"
    except aiohttp.ClientError:
        ok = False
    if ok:
        rec.latencies.append(time.perf_counter() - started)
    else:
        rec.errors += 1


async def closed_loop(url: str, requests: list[tuple[bytes, dict]], seconds: float, concurrency: int) -> dict:
    rec = Recorder()
    queue = iter(requests)
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker() -> None:
            while time.perf_counter() < deadline:
                try:
                    body, query = next(queue)
                except StopIteration:
                    return
                await one(http, url, body, query, rec)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return rec.summary(elapsed)


async def open_loop(url: str, requests: list[tuple[bytes, dict]], seconds: float, rate: float) -> dict:
    rec = Recorder()
    total = int(seconds * rate)
    connector = aiohttp.TCPConnector(limit=1000)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        tasks = []
        for i in range(min(total, len(requests))):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body, query = requests[i]
            tasks.append(asyncio.create_task(one(http, url, body, query, rec)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    result = rec.summary(elapsed)
    result["offered_rps"] = rate
    return result


async def prepare_residents(url: str, sender: wechat.Sender, count: int) -> list[str]:
    openids = [f"o-bench-{i:05d}-{secrets.token_hex(4)}" for i in range(count)]
    async with aiohttp.ClientSession() as http:
        for openid in openids:
            for fields in (wechat.event(openid, "subscribe"), wechat.text(openid, "同意")):
                body, query = encrypted_request(fields, sender)
                async with http.post(url, params=query, data=body) as resp:
                    assert resp.status == 200, await resp.text()
    return openids


def complaints(sender: wechat.Sender, openids: list[str], n: int) -> list[tuple[bytes, dict]]:
    out = []
    for i in range(n):
        text = random.choice(COMPLAINTS) + f"（第{i}次反映）"
        out.append(encrypted_request(wechat.text(random.choice(openids), text), sender))
    return out


def fmt(name: str, r: dict) -> str:
    return (f"{name:<34} {r['rps']:>9.0f}/s  p50 {r['p50_ms']:>7.1f} ms  p99 {r['p99_ms']:>7.1f} ms  "
            f"n={r['n']:<6} errors={r['errors']}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="minyi worker processes")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in the closed-loop phases")
    parser.add_argument("--rate", type=float, default=300.0, help="offered load of the open-loop phase")
    parser.add_argument("--residents", type=int, default=200)
    parser.add_argument("--no-werobot", action="store_true", help="skip the WeRoBot peer")
    parser.add_argument("--peer-venv", type=Path, default=Path.home() / ".cache" / "minyi-bench" / "werobot",
                        help="where WeRoBot is installed")
    parser.add_argument("--budget", type=float, default=0, help="reply budget seconds (0: the default)")
    parser.add_argument("--profile", type=Path, help="run minyi (one worker) under cProfile, stats to this file")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite",
                        help="minyi's database; postgresql starts a throwaway server")
    args = parser.parse_args()
    pg = None
    if args.backend == "postgresql":
        from tests.conftest import _admin
        from tests.pgserver import PostgresServer

        pg = PostgresServer()
        admin = pg.start()
        await _admin(admin, "CREATE DATABASE minyi_bench")
        database_url = admin.rsplit("/", 1)[0] + "/minyi_bench"
    try:
        await run(args, database_url if pg else None)
    finally:
        if pg is not None:
            pg.stop()


async def count_tickets(data_dir: Path, database_url: str | None) -> int:
    if database_url is None:
        return sqlite3.connect(data_dir / "minyi.db").execute("SELECT count(*) FROM ticket").fetchone()[0]
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return await conn.fetchval("SELECT count(*) FROM ticket")
    finally:
        await conn.close()


async def run(args: argparse.Namespace, database_url: str | None) -> None:

    data_dir = Path(tempfile.mkdtemp(prefix="minyi-bench-"))
    env = {**os.environ, "MINYI_DATA_DIR": str(data_dir), "MINYI_WECHAT_TOKEN": wechat.TOKEN,
           "MINYI_WECHAT_APPID": wechat.APPID, "MINYI_WECHAT_AES_KEY": wechat.AES_KEY, "MINYI_WECHAT_SECRET": ""}
    if args.budget:
        env["MINYI_WECHAT_REPLY_BUDGET_SECONDS"] = str(args.budget)
    if database_url:
        env["MINYI_DATABASE_URL"] = database_url
        env["MINYI_DATABASE_AUTO_MIGRATE"] = "true"  # a fresh database, as `minyi migrate` would
        env["MINYI_DEMO_LOAD"] = "true"  # the same areas and places as the SQLite default
    minyi_port, bare_port, werobot_port = free_port(), free_port(), free_port()
    peer = None
    if not args.no_werobot:
        peer = subprocess.Popen([str(werobot_python(args.peer_venv)), "-c", WEROBOT_SERVER, str(werobot_port),
                                 str(data_dir / "werobot.sqlite3"), wechat.TOKEN, wechat.AES_KEY, wechat.APPID],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    profiler = ["-m", "cProfile", "-o", str(args.profile)] if args.profile else []
    minyi = subprocess.Popen([sys.executable, *profiler, "-m", "bot", "serve", "--port", str(minyi_port),
                              "--workers", str(args.workers)], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)], cwd=ROOT)
    sender = wechat.Sender(client=None, mode="safe")
    try:
        await wait_ready(f"http://127.0.0.1:{minyi_port}/healthz")
        await wait_ready(f"http://127.0.0.1:{bare_port}/wechat")
        if peer is not None:
            await wait_ready(f"http://127.0.0.1:{werobot_port}/")
        minyi_url, bare_url = f"http://127.0.0.1:{minyi_port}/wechat", f"http://127.0.0.1:{bare_port}/wechat"
        openids = await prepare_residents(minyi_url, sender, args.residents)
        budget = int(args.seconds * 4000)
        print(f"minyi workers={args.workers}, {'PostgreSQL' if database_url else 'SQLite'}, safe mode (AES), {os.cpu_count()} cores, "
              f"{args.seconds:.0f} s per phase, closed loop with {args.concurrency} connections", flush=True)
        bare_result = await closed_loop(bare_url, complaints(sender, openids, budget), args.seconds, args.concurrency)
        print(fmt("bare aiohttp fixed reply", bare_result), flush=True)
        peer_result = None
        if peer is not None:
            peer_result = await closed_loop(f"http://127.0.0.1:{werobot_port}/", complaints(sender, openids, budget),
                                            args.seconds, args.concurrency)
            print(fmt("WeRoBot text→session reply", peer_result), flush=True)
        requests = complaints(sender, openids, budget)
        print("--> minyi, closed loop", flush=True)  # for tools that sample the server in this phase
        max_result = await closed_loop(minyi_url, requests, args.seconds, args.concurrency)
        print(fmt("minyi complaint→ticket (max)", max_result), flush=True)
        ratios = f"minyi / bare aiohttp = {max_result['rps'] / bare_result['rps']:.3f}"
        if peer_result is not None and peer_result["rps"]:
            ratios = f"minyi / WeRoBot = {max_result['rps'] / peer_result['rps']:.2f}×   " + ratios
        print(ratios, flush=True)
        rate_result = await open_loop(minyi_url, complaints(sender, openids, int(args.seconds * args.rate) + 10),
                                      args.seconds, args.rate)
        print(fmt(f"minyi complaint→ticket @{args.rate:.0f}/s", rate_result), flush=True)
        answered = max_result["n"] + rate_result["n"]
        sent = answered + max_result["errors"] + rate_result["errors"]
    finally:
        minyi.send_signal(signal.SIGTERM)
        bare.send_signal(signal.SIGTERM)
        if peer is not None:
            peer.send_signal(signal.SIGTERM)
            peer.wait(timeout=30)
        minyi.wait(timeout=30)
        bare.wait(timeout=30)
    tickets = await count_tickets(data_dir, database_url)
    print(f"tickets in database: {tickets} (complaints answered: {answered}, sent: {sent})", flush=True)
    # A complaint the client gave up on (timeout) may still have become a ticket: it was
    # recorded before anything was answered. Fewer tickets than answers is a loss.
    if not answered <= tickets <= sent:
        raise SystemExit("ticket count outside [answered, sent]: a complaint was lost or duplicated")


if __name__ == "__main__":
    asyncio.run(main())
