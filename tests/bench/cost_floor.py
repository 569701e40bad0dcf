"""The floor under a complaint's cost: what the steps that need no SQL cost by themselves,
next to what WeRoBot's whole request costs, so a speed goal can be checked against the
budget it leaves before anything is optimised.

    .venv/bin/python tests/bench/cost_floor.py [--seconds 5] [--no-werobot]

In process (µs per complaint, the texts of bench_callback.py): the danger check, the
intent classifier, routing (its urgency step reuses the danger check's result, as in
the callback), the duplicate signature, AES decrypt + encrypt of the callback, and an
empty `db.transaction()` on SQLite, 32 at once (a complaint makes two: its write-ahead
record and its handling). Servers (CPU of the server process per request, closed loop
with 32 connections on loopback): bare aiohttp, minyi answering a forged signature
(middlewares, body, query check; no crypto, no database), minyi answering a repeated
delivery from its outcome cache (plus decrypt and encrypt), and WeRoBot answering a text
from its SQLite session store (bench_callback.py's peer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from bot.app import create_app  # noqa: E402
from bot.services import SERVICES  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.wechat.signing import MessageCrypto  # noqa: E402
from nlp import similarity  # noqa: E402
from tests import wechat  # noqa: E402
from tests.bench.bench_callback import (BARE_SERVER, COMPLAINTS, WEROBOT_SERVER, free_port, wait_ready,  # noqa: E402
                                        werobot_python)

Request = tuple[bytes, dict[str, str]]


def _env(data_dir: str) -> dict[str, str]:
    return {"MINYI_DATA_DIR": data_dir, "MINYI_WECHAT_TOKEN": wechat.TOKEN, "MINYI_WECHAT_APPID": wechat.APPID,
            "MINYI_WECHAT_AES_KEY": wechat.AES_KEY, "MINYI_WECHAT_SECRET": ""}


def _per_item(texts: list[str], step: Callable[[str], object]) -> float:
    started = time.perf_counter()
    for text in texts:
        step(text)
    return (time.perf_counter() - started) / len(texts) * 1e6


async def in_process(count: int) -> dict[str, float]:
    texts = [random.choice(COMPLAINTS) + f"（第{i}次反映）" for i in range(count)]
    app = create_app(load_settings(_env(tempfile.mkdtemp(prefix="minyi-floor-"))))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        services = app[SERVICES]
        router, intents = services.router, services.intents

        def nlp(text: str) -> None:
            router.urgency.detect(text)  # the danger check
            intents.classify(text)
            router.route(text)
            similarity.signature(text)

        costs = {
            "danger check (urgency rules)": _per_item(texts, router.urgency.detect),
            "intent classifier": _per_item(texts, intents.classify),
            "routing (its urgency step cached)": _per_item(texts, lambda t: (router.urgency.detect(t), router.route(t)))
            - _per_item(texts, router.urgency.detect),
            "duplicate signature (MinHash)": _per_item(texts, similarity.signature),
        }
        costs["NLP steps in order (the sum, measured)"] = _per_item(texts, nlp)
        crypto = MessageCrypto(wechat.TOKEN, wechat.AES_KEY, wechat.APPID)
        encrypted = [crypto.encrypt(wechat.xml_of(wechat.text("o-floor", t)), "nonce") for t in texts]
        started = time.perf_counter()
        for blob in encrypted:
            crypto.decrypt(_encrypt_field(blob))
            crypto.encrypt("<xml><Content><![CDATA[您的诉求已受理！编号：20261202-0001]]></Content></xml>", "nonce")
        costs["AES decrypt + encrypt"] = (time.perf_counter() - started) / len(encrypted) * 1e6
        db = services.db

        async def empty() -> None:
            async with db.transaction() as session:
                await session.connection()

        for _ in range(10):
            await asyncio.gather(*(empty() for _ in range(32)))
        started = time.perf_counter()
        rounds = max(1, count // 32)
        for _ in range(rounds):
            await asyncio.gather(*(empty() for _ in range(32)))
        costs["empty db.transaction(), 32 at once"] = (time.perf_counter() - started) / (rounds * 32) * 1e6
        return costs
    finally:
        await runner.cleanup()


def _encrypt_field(xml: str) -> str:
    """The ciphertext inside an <Encrypt> element."""
    start = xml.index("<Encrypt><![CDATA[") + len("<Encrypt><![CDATA[")
    return xml[start:xml.index("]]></Encrypt>")]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def server_cost(pid: int, url: str, requests: Callable[[], Request], seconds: float) -> tuple[float, float]:
    """(requests/s, µs of the server's CPU a request) over a closed loop of 32 connections."""
    done = 0
    deadline = time.perf_counter() + seconds
    before = _cpu_seconds(pid)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:
        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                body, query = requests()
                async with http.post(url, params=query, data=body) as resp:
                    await resp.read()
                    done += 1

        await asyncio.gather(*(worker() for _ in range(32)))
    elapsed = time.perf_counter() - started
    return done / elapsed, (_cpu_seconds(pid) - before) / done * 1e6


async def servers(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    sender = wechat.Sender(client=None, mode="safe")
    out: dict[str, tuple[float, float]] = {}
    body, query = sender.encode(wechat.text("o-floor", "你好"), sender.signed_query())
    forged = dict(query, msg_signature="0" * 40)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port)])
        processes.append(bare)
        await wait_ready(f"http://127.0.0.1:{port}/wechat")
        out["bare aiohttp, fixed reply"] = await server_cost(bare.pid, f"http://127.0.0.1:{port}/wechat",
                                                             lambda: (body, query), args.seconds)
        port = free_port()
        minyi = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port)],
                                 env={**os.environ, **_env(tempfile.mkdtemp(prefix="minyi-floor-"))}, cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(minyi)
        await wait_ready(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/wechat"
        out["minyi, forged signature (4xx)"] = await server_cost(minyi.pid, url, lambda: (body, forged), args.seconds)
        out["minyi, repeated delivery (cached reply)"] = await server_cost(minyi.pid, url, lambda: (body, query),
                                                                           args.seconds)
        if not args.no_werobot:
            port = free_port()
            data = tempfile.mkdtemp(prefix="werobot-floor-")
            peer = subprocess.Popen([str(werobot_python(args.peer_venv)), "-c", WEROBOT_SERVER, str(port),
                                     f"{data}/session.sqlite3", wechat.TOKEN, wechat.AES_KEY, wechat.APPID],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append(peer)
            await wait_ready(f"http://127.0.0.1:{port}/")
            texts = [sender.encode(wechat.text(f"o-floor-{i % 100}", "你好"), sender.signed_query())
                     for i in range(int(args.seconds * 3000))]
            pending = iter(texts)
            out["WeRoBot, text → session → reply"] = await server_cost(peer.pid, f"http://127.0.0.1:{port}/",
                                                                      lambda: next(pending), args.seconds)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--complaints", type=int, default=3000, help="texts for the in-process steps")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each server measurement")
    parser.add_argument("--no-werobot", action="store_true", help="skip the WeRoBot peer")
    parser.add_argument("--peer-venv", type=Path, default=Path.home() / ".cache" / "minyi-bench" / "werobot",
                        help="where WeRoBot is installed")
    parser.add_argument("--goal", type=float, default=2.5, help="the speed goal, as a multiple of WeRoBot")
    args = parser.parse_args()
    costs = await in_process(args.complaints)
    print("in process, µs per complaint")
    for name, value in costs.items():
        print(f"  {name:<44} {value:8.1f}")
    measured = await servers(args)
    print("servers: requests/s and µs of server CPU per request (closed loop, 32 connections)")
    for name, (rate, cpu) in measured.items():
        print(f"  {name:<44} {rate:8.0f}/s {cpu:8.0f} µs")
    floor = (costs["NLP steps in order (the sum, measured)"] + 2 * costs["empty db.transaction(), 32 at once"]
             + measured["minyi, repeated delivery (cached reply)"][1])
    print(f"floor of a complaint before any SQL statement or dialog logic: {floor:.0f} µs "
          "(NLP steps + two empty transactions + the HTTP, AES and cache path)")
    peer = measured.get("WeRoBot, text → session → reply")
    if peer is not None:
        budget = 1e6 / (args.goal * peer[0])
        print(f"{args.goal}× WeRoBot's {peer[0]:.0f}/s = {args.goal * peer[0]:.0f}/s: {budget:.0f} µs a complaint "
              f"on one core, {budget - floor:.0f} µs left above the floor")


if __name__ == "__main__":
    asyncio.run(main())
