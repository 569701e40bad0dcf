"""Fault harness: a real `minyi serve`, WeChat-like load, and faults (kill -9 of the
service or of one worker, PostgreSQL stopped, a starved connection pool), then a
check against the database that no acknowledged complaint was lost, no ticket lacks
its reply and no delivery produced two tickets.

Used by tests/test_faults.py (short runs in CI) and tests/bench/fault_harness.py
(long runs). Only loopback addresses; every loop is bounded by a count and a time;
every process started here (the service, PostgreSQL) is stopped in a finally block.

The model of WeChat (its documentation on receiving messages): a delivery not
answered within 5 s — a timeout, a connection refused or reset, an HTTP 5xx — is
retried with the same MsgId, at most `retries` (3) times; a delivery answered 200
(a reply or 'success') is acknowledged and never sent again. A retry comes
`retry_interval` (5 s) after the previous try began — the documentation gives the
5 s and the three retries, not the spacing after a quick 5xx: this is our assumption.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter as Tally
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import aiohttp

from tests import wechat
from tests.pgserver import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"

# Texts that become a ticket at once (a known problem, said with enough words; checked
# against the router), varied by place, problem and numbers so that they are not all
# near-duplicates of each other (nlp/similarity.py compares characters).
PLACES = ["幸福里小区", "枫林小区", "翠竹苑", "桃源新村", "锦绣花园", "东湖名苑", "春晖家园", "金桂苑"]
PROBLEMS = [
    "{p}{n}号楼的电梯坏了{d}天了，老人下不了楼",
    "{p}{n}栋楼下的垃圾站{d}天没人清运，臭气熏天",
    "{p}{n}号楼楼上邻居半夜装修砸墙，已经吵了{d}个晚上",
    "{p}{n}单元门口的下水道堵了{d}天，污水漫到路上",
    "{p}{n}号楼旁边的路灯坏了{d}盏，晚上走路看不见",
    "{p}东门外的烧烤摊油烟太大，{n}楼住户{d}天不敢开窗",
    "{p}{n}号楼水管爆裂，家里停水{d}天了",
    "{p}{n}栋楼道里有人堆放杂物，堵住消防通道{d}天了",
]


def complaint_text(i: int) -> str:
    """The i-th complaint: place × problem × building × days, distinct for i < 64 × 40 × 9."""
    problem = PROBLEMS[i % len(PROBLEMS)]
    place = PLACES[(i // len(PROBLEMS)) % len(PLACES)]
    rest = i // (len(PROBLEMS) * len(PLACES))
    return problem.format(p=place, n=rest % 40 + 1, d=(rest // 40) % 9 + 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- PostgreSQL

class Postgres:
    """A throwaway PostgreSQL server (tests.pgserver) that can also be stopped and
    started again on the same port and data directory, as an outage."""

    def __init__(self) -> None:
        self.server = PostgresServer()
        self.admin_url = ""
        self._options: list[str] = []

    def start(self) -> str:
        self.admin_url = self.server.start()
        # The options the server was started with (port, socket dir, settings), so a
        # restart is the same server: postmaster.opts is `postgres "-D" "dir" "-p" …`.
        words = shlex.split((self.server.data / "postmaster.opts").read_text())[1:]
        while "-D" in words:
            at = words.index("-D")
            del words[at:at + 2]
        self._options = words
        return self.admin_url

    def _pg_ctl(self, *args: str) -> None:
        self.server._run(str(self.server.bin / "pg_ctl"), "-D", str(self.server.data), *args)

    def stop_server(self) -> None:
        """An outage: stop now (fast: connections are closed), keep the data."""
        self._pg_ctl("-m", "fast", "-w", "-t", "30", "stop")

    def start_server(self) -> None:
        self._pg_ctl("-o", shlex.join(self._options), "-l", str(self.server.base / "server.log"),
                     "-w", "-t", "60", "start")

    def close(self) -> None:
        self.server.stop()


async def pg_admin(admin_url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def new_database(admin_url: str) -> str:
    """A new, empty database on the server; its SQLAlchemy URL."""
    name = "faults_" + uuid.uuid4().hex[:10]
    await pg_admin(admin_url, f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + "/" + name


# ---------------------------------------------------------------- the service

def _children(pid: int) -> list[tuple[int, str, bytes]]:
    """(pid, state, cmdline) of the processes whose parent is pid, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces and parentheses.
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if int(ppid) == pid:
            found.append((int(entry), state, cmdline))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@dataclass
class ServiceConfig:
    workers: int = 2
    database_url: str | None = None  # None: SQLite in the data dir
    budget: float | None = None  # [wechat] reply_budget_seconds
    lease_seconds: float = 2.0
    sweep_seconds: float = 1.0
    pool_size: int | None = None
    pool_timeout: float | None = None
    lock_tickets_at: float | None = None  # PostgreSQL: the ticket table locked this long after the load began…
    lock_tickets_seconds: float = 1.0  # …for this long
    extra_env: dict[str, str] = field(default_factory=dict)
    # The source tree the service runs from (`python -m bot` with it as the working
    # directory): this checkout, or an exported commit (source_tree()).
    source: Path = ROOT

    @property
    def backend(self) -> str:
        return "sqlite" if self.database_url is None else "postgresql"


class Service:
    """`minyi serve --workers N` in its own process group, with a fresh data dir,
    offline (outbound calls are recorded in the outbox table)."""

    def __init__(self, config: ServiceConfig, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "serve.log"
        self.starts = 0
        self.kills: list[tuple[float, str, int]] = []  # (monotonic time, what, in-flight requests)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def database_url(self) -> str:
        return self.config.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'minyi.db'}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINYI_")}
        c = self.config
        env.update({
            "MINYI_DATA_DIR": str(self.data_dir),
            "MINYI_WECHAT_TOKEN": wechat.TOKEN, "MINYI_WECHAT_APPID": wechat.APPID,
            "MINYI_WECHAT_AES_KEY": wechat.AES_KEY, "MINYI_WECHAT_SECRET": "",
            "MINYI_WECHAT_API_BASE": f"http://{LOOPBACK}:9",
            "MINYI_SERVER_HOST": LOOPBACK,
            "MINYI_INTAKE_LEASE_SECONDS": str(c.lease_seconds),
            "MINYI_INTAKE_SWEEP_SECONDS": str(c.sweep_seconds),
            "PYTHONUNBUFFERED": "1",
        })
        if c.database_url:
            env["MINYI_DATABASE_URL"] = c.database_url
        if c.budget is not None:
            env["MINYI_WECHAT_REPLY_BUDGET_SECONDS"] = str(c.budget)
        if c.pool_size is not None:
            env["MINYI_DATABASE_POOL_SIZE"] = str(c.pool_size)
        if c.pool_timeout is not None:
            env["MINYI_DATABASE_POOL_TIMEOUT_SECONDS"] = str(c.pool_timeout)
        env.update(c.extra_env)
        return env

    def _cli(self, *argv: str) -> str:
        done = subprocess.run([PYTHON, "-m", "bot", *argv], env=self.env(), cwd=self.config.source,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"minyi {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def prepare(self) -> None:
        """`minyi migrate` (PostgreSQL is not migrated by the service) and `minyi demo load`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._cli("migrate")
        self._cli("demo", "load")

    async def start(self, timeout: float = 60.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start #{self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "bot", "serve", "--workers", str(self.config.workers), "--host", LOOPBACK,
                 "--port", str(self.port)],
                env=self.env(), cwd=self.config.source, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        await self.wait_healthy(timeout)

    async def wait_healthy(self, timeout: float = 60.0) -> None:
        """/healthz answers 200 and every worker process exists."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"minyi serve exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200 and len(self.workers()) == max(1, self.config.workers):
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"minyi serve not healthy in {timeout:.0f} s:\n{self.log_tail()}")

    def workers(self) -> list[int]:
        """Live worker pids (the spawned children of the serve process)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        if self.config.workers <= 1:
            return [self.proc.pid]
        return [pid for pid, state, cmd in _children(self.proc.pid)
                if b"spawn_main" in cmd and state not in "ZX"]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and bool(self.workers())

    def kill_group(self) -> None:
        """kill -9 of the serve process and all its workers."""
        assert self.proc is not None
        pids = [self.proc.pid, *self.workers()]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        _wait_dead(pids)

    def kill_worker(self) -> int:
        """kill -9 of one worker; the others keep serving. Returns its pid."""
        workers = self.workers()
        assert workers, "no worker to kill"
        pid = workers[-1]
        os.kill(pid, signal.SIGKILL)
        _wait_dead([pid])
        return pid

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (graceful), then kill -9 of the group; safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def first_error(self, lines: int = 40) -> str:
        """The first ERROR of the log and what follows it (its traceback)."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        at = next((i for i, line in enumerate(text) if " ERROR " in line), None)
        return "(no ERROR in the log)" if at is None else "\n".join(text[at:at + lines])

    def log_count(self, pattern: str) -> int:
        try:
            return len(re.findall(pattern, self.log_path.read_text(errors="replace")))
        except OSError:
            return 0


def _wait_dead(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} did not die")
        time.sleep(0.02)


# ---------------------------------------------------------------- the load

@dataclass
class Attempt:
    at: float  # seconds since the load started
    elapsed: float
    outcome: str  # reply / success / http503 / http5xx / http4xx / timeout / connection / malformed
    status: int | None = None


@dataclass
class Sent:
    """One delivery (one MsgId) and what happened to each of its attempts."""

    msg_id: int
    openid: str
    text: str
    fields: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    reply: str | None = None  # the reply text of the acknowledging answer ('' = 'success')

    @property
    def key(self) -> str:
        return f"m:{self.msg_id}"

    @property
    def acknowledged(self) -> bool:
        return self.reply is not None

    @property
    def late(self) -> bool:
        return self.reply == ""


class WeChatPlatform:
    """Sends deliveries as WeChat does: signed (plaintext or safe mode), 5 s timeout,
    retries with the same MsgId on timeouts, connection errors and 5xx."""

    def __init__(self, base_url: str, *, mode: str = "safe", timeout: float = 5.0, retries: int = 3,
                 retry_interval: float = 5.0, concurrency: int = 16) -> None:
        assert base_url.startswith(f"http://{LOOPBACK}:"), "loopback only"
        self.url = base_url + "/wechat"
        self.sender = wechat.Sender(client=None, mode=mode)
        self.timeout = timeout
        self.retries = retries
        self.retry_interval = retry_interval
        self.limit = asyncio.Semaphore(concurrency)
        self.started = time.monotonic()
        self.wall_started = time.time()
        self.inflight = 0
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "WeChatPlatform":
        # A new connection per delivery (as from WeChat's many servers): SO_REUSEPORT then
        # spreads them over the workers, and a killed worker takes only its own.
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.http is not None
        await self.http.close()

    def now(self) -> float:
        return time.monotonic() - self.started

    async def _attempt(self, fields: dict[str, Any]) -> tuple[Attempt, str | None]:
        assert self.http is not None
        body, query = self.sender.encode(fields, self.sender.signed_query())
        async with self.limit:
            at = self.now()
            self.inflight += 1
            try:
                async with self.http.post(self.url, params=query, data=body,
                                          timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                    raw = await resp.text()
                    status = resp.status
            except asyncio.TimeoutError:
                return Attempt(at, self.now() - at, "timeout"), None
            except aiohttp.ClientError:
                return Attempt(at, self.now() - at, "connection"), None
            finally:
                self.inflight -= 1
        elapsed = self.now() - at
        if status == 200:
            try:
                return Attempt(at, elapsed, "success" if raw == "success" else "reply", 200), self.sender.decode(raw)
            except Exception:  # noqa: BLE001 — a 200 WeChat cannot read: counted, not retried
                return Attempt(at, elapsed, "malformed", 200), None
        kind = "http503" if status == 503 else "http5xx" if status >= 500 else "http4xx"
        return Attempt(at, elapsed, kind, status), None

    async def deliver(self, sent: Sent) -> Sent:
        """The delivery and its retries; sent.reply is set once it is acknowledged."""
        for n in range(1 + self.retries):
            if n:  # the next try comes at the platform's cadence after the previous one began
                wait = sent.attempts[-1].at + self.retry_interval - self.now()
                if wait > 0:
                    await asyncio.sleep(wait)
            attempt, reply = await self._attempt(sent.fields)
            sent.attempts.append(attempt)
            if attempt.status == 200:
                if attempt.outcome != "malformed":
                    sent.reply = reply
                return sent
            if attempt.outcome == "http4xx":
                return sent  # refused: a harness error, counted
        return sent

    async def must(self, fields: dict[str, Any]) -> str:
        """Setup traffic: delivered (with retries) or an error."""
        sent = await self.deliver(Sent(int(fields.get("MsgId", 0)), fields["FromUserName"], "", fields))
        if not sent.acknowledged:
            raise RuntimeError(f"setup delivery not acknowledged: {sent.attempts}")
        return sent.reply or ""


async def prepare_residents(platform: WeChatPlatform, count: int, parallel: int = 8) -> list[str]:
    """`count` residents who subscribed and consented, so each complaint becomes a ticket."""
    openids = [f"o-fault-{i:04d}-{secrets.token_hex(6)}" for i in range(count)]
    gate = asyncio.Semaphore(parallel)

    async def one(openid: str) -> None:
        async with gate:
            await platform.must(wechat.event(openid, "subscribe"))
            reply = await platform.must(wechat.text(openid, "同意"))
            if reply and "同意" not in reply and "谢谢" not in reply:  # '' : answered late, reply by outbox
                raise RuntimeError(f"consent not taken: {reply!r}")

    await asyncio.gather(*(one(o) for o in openids))
    return openids


Fault = tuple[float, str, Callable[[], Awaitable[None]]]  # (seconds after the load started, name, action)


@dataclass
class LoadResult:
    sent: list[Sent]
    seconds: float
    faults: list[tuple[str, float, float]]  # (name, began, ended) in load seconds
    wall_started: float = 0.0  # time.time() when the load began

    def attempts(self) -> list[Attempt]:
        return [a for s in self.sent for a in s.attempts]


async def run_load(platform: WeChatPlatform, residents: list[str], *, count: int, seconds: float, rate: float,
                   faults: list[Fault] = (), first_text: int = 0,  # type: ignore[assignment]
                   drain_seconds: float = 40.0) -> LoadResult:
    """Complaints at `rate`/s round-robin over the residents, at most `count` and for at
    most `seconds`, while the faults run at their times; then the deliveries finish their
    retries (bounded by the platform: 1 + retries attempts, each at most its timeout)."""
    platform.started = time.monotonic()
    platform.wall_started = time.time()
    done_faults: list[tuple[str, float, float]] = []

    async def run_faults() -> None:
        for at, name, action in sorted(faults, key=lambda f: f[0]):
            wait = at - platform.now()
            if wait > 0:
                await asyncio.sleep(wait)
            began = platform.now()
            await action()
            done_faults.append((name, began, platform.now()))

    fault_task = asyncio.create_task(run_faults())
    tasks: list[asyncio.Task[Sent]] = []
    sent: list[Sent] = []
    try:
        for i in range(count):
            due = i / rate
            if due > seconds:
                break
            wait = due - platform.now()
            if wait > 0:
                await asyncio.sleep(wait)
            openid = residents[i % len(residents)]
            text = complaint_text(first_text + i)
            fields = wechat.text(openid, text)
            item = Sent(int(fields["MsgId"]), openid, text, fields)
            sent.append(item)
            tasks.append(asyncio.create_task(platform.deliver(item)))
        bound = platform.retries * platform.retry_interval + (1 + platform.retries) * platform.timeout + drain_seconds
        await asyncio.wait_for(fault_task, timeout=bound + seconds)
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=bound)
    finally:
        fault_task.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(fault_task, *tasks, return_exceptions=True)
    return LoadResult(sent, platform.now(), done_faults, platform.wall_started)


# ---------------------------------------------------------------- faults

def kill_fault(service: Service, platform: WeChatPlatform, what: str) -> Callable[[], Awaitable[None]]:
    """kill -9 mid-load: 'group' (everything; restarted at once) or 'worker' (one of them;
    the others serve on, their sweeper finishes what it left). Waits (bounded) until
    requests are in flight, so the kill lands on work in progress."""

    async def action() -> None:
        deadline = time.monotonic() + 3
        while platform.inflight == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        inflight = platform.inflight
        if what == "worker" and len(service.workers()) > 1:
            service.kill_worker()
            service.kills.append((time.monotonic(), "worker", inflight))
        else:
            service.kill_group()
            service.kills.append((time.monotonic(), "group", inflight))
            await service.start()

    return action


def outage_faults(pg: Postgres, at: float, seconds: float) -> list[Fault]:
    """PostgreSQL stopped at `at` for `seconds`, then started on the same port."""

    async def stop() -> None:
        await asyncio.to_thread(pg.stop_server)

    async def start() -> None:
        await asyncio.to_thread(pg.start_server)

    return [(at, "pg-stop", stop), (at + seconds, "pg-start", start)]


def ticket_lock_faults(database_url: str, at: float, seconds: float) -> list[Fault]:
    """The ticket table locked against writes (SHARE) from `at` for `seconds`: every
    handling then holds its pooled connection while it waits, so a small pool is
    exhausted however fast the machine is."""
    import asyncpg

    held: list[Any] = []

    async def lock() -> None:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
        hold = conn.transaction()
        await hold.start()
        await conn.execute("LOCK TABLE ticket IN SHARE MODE")
        held[:] = [conn, hold]

    async def unlock() -> None:
        conn, hold = held
        await hold.commit()
        await conn.close()

    return [(at, "lock-tickets", lock), (at + seconds, "unlock-tickets", unlock)]


# ---------------------------------------------------------------- the database

@dataclass
class Snapshot:
    inbound: dict[str, dict[str, Any]]  # dedupe_key → done, late, reply, attempts, last_error
    tickets: list[dict[str, Any]]  # number, openid, source_key
    outbox: list[dict[str, Any]]  # openid, content, title, status


_QUERIES = {
    "inbound": "SELECT dedupe_key, done_at IS NOT NULL AS done, done_at, received_at, late, reply, attempts, last_error "
               "FROM inbound_message WHERE dedupe_key LIKE 'm:%'",
    "tickets": "SELECT number, openid, source_key FROM ticket",
    "outbox": "SELECT openid, payload, status FROM outbox WHERE kind = 'text'",
}


def _epoch(value: Any) -> float | None:
    """A stored UTC time (a datetime, or SQLite's text) as a Unix time."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _snapshot_of(rows: dict[str, list[dict[str, Any]]]) -> Snapshot:
    outbox = []
    for row in rows["outbox"]:
        payload = row["payload"]
        if isinstance(payload, str):
            payload = json.loads(payload)
        payload = payload or {}
        outbox.append({"openid": row["openid"], "content": str(payload.get("content", "")),
                       "title": payload.get("title"), "status": row["status"]})
    inbound = {r["dedupe_key"]: {**r, "done": bool(r["done"]), "late": bool(r["late"]),
                                 "done_epoch": _epoch(r.get("done_at")),
                                 "received_epoch": _epoch(r.get("received_at"))} for r in rows["inbound"]}
    return Snapshot(inbound, [dict(r) for r in rows["tickets"]], outbox)


async def snapshot(database_url: str) -> Snapshot:
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]

        def read() -> dict[str, list[dict[str, Any]]]:
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                conn.row_factory = sqlite3.Row
                return {name: [dict(r) for r in conn.execute(sql)] for name, sql in _QUERIES.items()}

        return _snapshot_of(await asyncio.to_thread(read))
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return _snapshot_of({name: [dict(r) for r in await conn.fetch(sql)] for name, sql in _QUERIES.items()})
    finally:
        await conn.close()


async def wait_settled(database_url: str, keys: set[str], timeout: float = 30.0) -> int:
    """Until every recorded delivery of `keys` is done (the sweeper finishes what a crash
    left after the lease). Returns how many are still undone at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        snap = await snapshot(database_url)
        undone = sum(1 for k in keys if k in snap.inbound and not snap.inbound[k]["done"])
        if undone == 0 or time.monotonic() > deadline:
            return undone
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------- the verdict

@dataclass
class Report:
    sent: int = 0
    attempts: int = 0
    retries: int = 0
    acknowledged: int = 0
    answered_reply: int = 0  # acknowledged with the reply in the HTTP answer
    answered_success: int = 0  # acknowledged with 'success' (the late path)
    http503: int = 0
    http5xx_other: int = 0
    http4xx: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = 0
    not_acknowledged: int = 0  # WeChat gave up after all its retries
    recorded: int = 0
    tickets: int = 0
    replies_in_http: int = 0
    replies_in_outbox_only: int = 0
    resumed: int = 0  # records finished by a later attempt (retry take-over or the sweeper)
    # The failures; every one of these must be 0.
    lost: int = 0  # acknowledged without a ticket
    acknowledged_unrecorded: int = 0  # acknowledged, but no finished inbound_message row
    recorded_without_ticket: int = 0  # recorded (acknowledged or not), finished, no ticket
    gave_up: int = 0  # records the intake gave up on (max_attempts)
    stuck: int = 0  # records never finished
    duplicated: int = 0  # MsgIds with two or more tickets
    replies_missing: int = 0  # tickets whose reply went neither in an answer nor to the outbox
    wrong_replies: int = 0  # an answer naming another ticket than its delivery's
    stray_tickets: int = 0  # tickets of our residents from no delivery we sent
    examples: dict[str, list[str]] = field(default_factory=dict)

    FAILURES = ("lost", "acknowledged_unrecorded", "recorded_without_ticket", "gave_up", "stuck", "duplicated",
                "replies_missing", "wrong_replies", "stray_tickets", "http4xx", "malformed")

    @property
    def failures(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.FAILURES if getattr(self, name)}

    def _note(self, what: str, key: str) -> None:
        setattr(self, what, getattr(self, what) + 1)
        self.examples.setdefault(what, [])
        if len(self.examples[what]) < 5:
            self.examples[what].append(key)

    def lines(self) -> list[str]:
        return [
            f"sent {self.sent}  attempts {self.attempts}  retries {self.retries}  acknowledged {self.acknowledged} "
            f"(reply {self.answered_reply}, 'success' {self.answered_success})  not acknowledged {self.not_acknowledged}",
            f"503 {self.http503}  other 5xx {self.http5xx_other}  4xx {self.http4xx}  timeouts {self.timeouts}  "
            f"connection errors {self.connection_errors}  malformed {self.malformed}",
            f"recorded {self.recorded}  tickets {self.tickets}  replies in HTTP {self.replies_in_http}  "
            f"replies via outbox only {self.replies_in_outbox_only}  finished by a later attempt {self.resumed}",
            f"LOST {self.lost}  duplicated {self.duplicated}  replies missing {self.replies_missing}  "
            f"wrong replies {self.wrong_replies}  acknowledged-unrecorded {self.acknowledged_unrecorded}  "
            f"recorded-without-ticket {self.recorded_without_ticket}  gave up {self.gave_up}  stuck {self.stuck}  "
            f"stray tickets {self.stray_tickets}",
        ]


def verify(sent: list[Sent], snap: Snapshot) -> Report:
    """Compare what WeChat saw with what the database holds."""
    r = Report(sent=len(sent))
    by_key = {s.key: s for s in sent}
    residents = {s.openid for s in sent}
    tickets_of: dict[str, list[dict[str, Any]]] = {}
    for ticket in snap.tickets:
        if ticket["source_key"] in by_key:
            tickets_of.setdefault(ticket["source_key"], []).append(ticket)
        elif ticket["openid"] in residents:
            r._note("stray_tickets", ticket["number"])
    outbox_text: dict[str, list[str]] = {}
    for row in snap.outbox:
        outbox_text.setdefault(row["openid"] or "", []).append(row["content"])

    for s in sent:
        kinds = Tally(a.outcome for a in s.attempts)
        r.attempts += len(s.attempts)
        r.retries += max(0, len(s.attempts) - 1)
        r.http503 += kinds["http503"]
        r.http5xx_other += kinds["http5xx"]
        r.http4xx += kinds["http4xx"]
        r.timeouts += kinds["timeout"]
        r.connection_errors += kinds["connection"]
        r.malformed += kinds["malformed"]
        row = snap.inbound.get(s.key)
        tickets = tickets_of.get(s.key, [])
        if s.acknowledged:
            r.acknowledged += 1
            if s.late:
                r.answered_success += 1
            else:
                r.answered_reply += 1
            if row is None or not row["done"]:
                r._note("acknowledged_unrecorded", s.key)
            if not tickets:
                r._note("lost", s.key)
        else:
            r.not_acknowledged += 1
        if row is not None:
            r.recorded += 1
            if row["attempts"] and row["attempts"] > 1:
                r.resumed += 1
            if not row["done"]:
                r._note("stuck", s.key)
            elif not tickets:
                r._note("recorded_without_ticket", s.key)
            if row["last_error"] and str(row["last_error"]).startswith("gave up"):
                r._note("gave_up", s.key)
        if len(tickets) > 1:
            r._note("duplicated", s.key)
        for ticket in tickets:
            r.tickets += 1
            number = ticket["number"]
            in_http = bool(s.reply) and number in s.reply
            in_outbox = any(number in text for text in outbox_text.get(ticket["openid"], ()))
            if in_http:
                r.replies_in_http += 1
            elif in_outbox:
                r.replies_in_outbox_only += 1
            else:
                how = "unacknowledged" if not s.acknowledged else "answered 'success'" if s.late else "answered"
                r._note("replies_missing", f"{s.key} {number} ({how})")
        if s.reply and tickets and not any(t["number"] in s.reply for t in tickets):
            r._note("wrong_replies", s.key)
    return r


# ---------------------------------------------------------------- a whole run

@dataclass
class Scenario:
    """One run: the service, the load and the faults."""

    backend: str = "sqlite"  # sqlite / postgresql
    workers: int = 2
    residents: int = 20
    count: int = 150
    seconds: float = 4.0  # new complaints are sent for this long
    rate: float = 40.0  # complaints a second
    concurrency: int = 16
    mode: str = "safe"
    budget: float | None = None
    kills: int = 0
    kill_mode: str = "group"  # group / worker / alternate / a comma list (see kill_plan)
    outage_at: float | None = None  # PostgreSQL stopped this long after the load began…
    outage_seconds: float = 10.0  # …for this long
    pool_size: int | None = None
    pool_timeout: float | None = None
    lock_tickets_at: float | None = None  # PostgreSQL: the ticket table locked this long after the load began…
    lock_tickets_seconds: float = 1.0  # …for this long
    retries: int = 3
    retry_interval: float = 5.0
    timeout: float = 5.0
    settle_seconds: float = 30.0
    source: Path = ROOT  # see ServiceConfig.source


@dataclass
class Outcome:
    scenario: Scenario
    report: Report
    load: LoadResult
    kills: list[tuple[float, str, int]]
    outage: tuple[float, float, float] | None  # (stopped, starting, up again) in load seconds
    during_outage: Tally  # attempt outcomes while PostgreSQL was down
    after_outage: Tally
    undone_at_deadline: int
    log_errors: int
    seconds: float
    starts: int
    snapshot: Snapshot
    phases: dict[str, float] = field(default_factory=dict)
    # Deliveries answered 200 while PostgreSQL was down: (key, sound, their attempts);
    # sound: a reply finished, or a 'success' recorded, before it went down.
    answered_while_down: list[tuple[str, bool, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        s = self.scenario
        head = (f"{s.backend}, {s.workers} workers, {s.residents} residents, {s.rate:.0f}/s for {s.seconds:.0f} s "
                f"(≤{s.count}), concurrency {s.concurrency}, {s.mode} mode, budget "
                f"{'default' if s.budget is None else s.budget} s")
        out = [head]
        if self.kills:
            out.append("kills: " + ", ".join(f"{what} ({inflight} in flight)" for _, what, inflight in self.kills)
                       + f"; service started {self.starts}×")
        if self.outage:
            out.append(f"PostgreSQL down {self.outage[0]:.1f}–{self.outage[1]:.1f} s (up at {self.outage[2]:.1f} s): "
                       f"during {dict(self.during_outage)}"
                       f", after {dict(self.after_outage)}")
            for key, before, line in self.answered_while_down[:10]:
                out.append(f"  answered while PostgreSQL was down ({'sound' if before else 'UNSOUND'}): {key}: {line}")
        if s.pool_size is not None:
            out.append(f"pool_size {s.pool_size} (+{s.pool_size} overflow), pool_timeout {s.pool_timeout} s")
        out += self.report.lines()
        out.append(f"server log ERROR lines {self.log_errors}; wall time {self.seconds:.1f} s ("
                   + ", ".join(f"{k} {v:.1f}" for k, v in self.phases.items()) + ")")
        if self.report.examples:
            out.append(f"examples: {self.report.examples}")
        return out


def kill_plan(s: Scenario) -> list[str]:
    """What each kill hits: kill_mode is 'group', 'worker', 'alternate' (group, worker, …)
    or a comma list cycled through, e.g. 'worker,group'."""
    cycle = ["group", "worker"] if s.kill_mode == "alternate" else s.kill_mode.split(",")
    if not set(cycle) <= {"group", "worker"}:
        raise ValueError(f"kill mode {s.kill_mode!r}")
    return [cycle[i % len(cycle)] for i in range(s.kills)]


@contextlib.contextmanager
def source_tree(revision: str) -> Iterator[Path]:
    """A commit of this repository exported to a temporary directory, to run the service
    from: long runs then measure one fixed version, not a working tree others edit."""
    path = Path(tempfile.mkdtemp(prefix="minyi-tree-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True,
                                 timeout=60).stdout
        subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True, timeout=60)
        yield path
    finally:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


@dataclass
class _Workdir:
    path: Path
    keep: bool


@contextlib.contextmanager
def _temp_dir(keep: bool) -> Iterator[_Workdir]:
    """A fresh data dir, removed afterwards unless asked to keep it — or the run failed
    (an exception, or `keep` set by the caller once it has seen a loss): then its
    serve.log and database stay for a look."""
    work = _Workdir(Path(tempfile.mkdtemp(prefix="minyi-faults-")), keep)
    try:
        yield work
    except BaseException:
        work.keep = True
        raise
    finally:
        if not work.keep:
            import shutil

            shutil.rmtree(work.path, ignore_errors=True)


async def run_scenario(s: Scenario, *, admin_url: str | None = None, pg: Postgres | None = None,
                       keep: bool = False, progress: Callable[[str], None] | None = None) -> Outcome:
    """Start the service (PostgreSQL: a new database on `pg` or `admin_url`), prepare the
    residents, run the load with the faults, let the sweeper finish, stop, verify."""
    say = progress or (lambda _m: None)
    began = time.monotonic()
    phases: dict[str, float] = {}
    mark = [began]

    def phase(name: str) -> None:
        now = time.monotonic()
        phases[name] = now - mark[0]
        mark[0] = now

    with _temp_dir(keep) as work:
        data_dir = work.path
        database_url = None
        if s.backend == "postgresql":
            admin = pg.admin_url if pg is not None else admin_url
            assert admin, "PostgreSQL needs a server"
            database_url = await new_database(admin)
        elif s.backend != "sqlite":
            raise ValueError(s.backend)
        if s.outage_at is not None and pg is None:
            raise ValueError("an outage needs a Postgres this harness controls")
        service = Service(ServiceConfig(workers=s.workers, database_url=database_url, budget=s.budget,
                                        pool_size=s.pool_size, pool_timeout=s.pool_timeout, source=s.source),
                          data_dir)
        try:
            await asyncio.to_thread(service.prepare)
            phase("prepare")
            await service.start()
            phase("start")
            say(f"serving on {service.url} ({service.config.backend}, workers {service.workers()})")
            async with WeChatPlatform(service.url, mode=s.mode, timeout=s.timeout, retries=s.retries,
                                      retry_interval=s.retry_interval, concurrency=s.concurrency) as platform:
                residents = await prepare_residents(platform, s.residents)
                phase("residents")
                faults: list[Fault] = []
                for i, what in enumerate(kill_plan(s)):
                    faults.append((s.seconds * (i + 1) / (s.kills + 1), f"kill-{what}",
                                   kill_fault(service, platform, what)))
                if s.outage_at is not None:
                    assert pg is not None
                    faults += outage_faults(pg, s.outage_at, s.outage_seconds)
                if s.lock_tickets_at is not None:
                    assert database_url, "the ticket lock needs PostgreSQL"
                    faults += ticket_lock_faults(database_url, s.lock_tickets_at, s.lock_tickets_seconds)
                say(f"load: {s.count} complaints at {s.rate}/s for ≤{s.seconds} s, faults {[f[1] for f in faults]}")
                load = await run_load(platform, residents, count=s.count, seconds=s.seconds, rate=s.rate,
                                      faults=faults)
            phase("load")
            if not service.running:  # e.g. every worker killed one by one
                service.stop()
                await service.start()
            keys = {x.key for x in load.sent}
            undone = await wait_settled(service.database_url, keys, s.settle_seconds)
            phase("settle")
            service.stop()
            phase("stop")
            snap = await snapshot(service.database_url)
            errors = service.log_count(r" ERROR ")
        except BaseException:
            say(service.log_tail())
            raise
        finally:
            service.stop()
        report = verify(load.sent, snap)
        if report.failures:
            work.keep = True
            say(f"kept {data_dir} (serve.log, the database); first error in the log:\n{service.first_error()}")
    outage = None
    during, after = Tally(), Tally()
    answered_while_down: list[tuple[str, bool, str]] = []
    stops = [f for f in load.faults if f[0] == "pg-stop"]
    starts = [f for f in load.faults if f[0] == "pg-start"]
    if stops and starts:
        # Down from when `pg_ctl stop` returned until `pg_ctl start` began; up once
        # `start` returned (in between it is coming up: neither).
        outage = (stops[0][2], starts[0][1], starts[0][2])
        for item in load.sent:
            for a in item.attempts:
                if outage[0] <= a.at and a.at + a.elapsed <= outage[1]:
                    during[a.outcome] += 1
                    if a.status == 200:
                        # With no database a worker can only answer from what it did
                        # before: a reply for a delivery finished before the outage, or
                        # 'success' for one recorded before it.
                        row = snap.inbound.get(item.key) or {}
                        when = row.get("done_epoch" if a.outcome == "reply" else "received_epoch")
                        sound = when is not None and when - load.wall_started < outage[0]
                        answered_while_down.append((item.key, sound, ", ".join(
                            f"{x.at:.2f}+{x.elapsed:.2f} s {x.outcome}" for x in item.attempts)
                            + f"; {'done' if a.outcome == 'reply' else 'recorded'} at "
                            + (f"{when - load.wall_started:.2f} s" if when is not None else "never")))
                elif a.at >= outage[2]:
                    after[a.outcome] += 1
    return Outcome(s, report, load, service.kills, outage, during, after, undone, errors,
                   time.monotonic() - began, service.starts, snap, phases, answered_while_down)


# ---------------------------------------------------------------- a stalled database

@dataclass
class StallOutcome:
    report: Report
    sent: list[Sent]
    late_flags: dict[str, bool]  # inbound_message.late of each delivery
    snapshot: Snapshot

    def lines(self) -> list[str]:
        out = self.report.lines()
        for s in self.sent:
            attempts = ", ".join(f"{a.at:.1f} s {a.outcome}" for a in s.attempts)
            out.append(f"  {s.key}: {attempts}; recorded late={self.late_flags.get(s.key)}")
        return out


async def run_stall(admin_url: str, *, residents: int = 6, budget: float = 0.1, record_stall: float = 0.5,
                    handling_stall: float = 3.0, timeout: float = 1.0, retry_interval: float = 1.0,
                    retries: int = 3, keep: bool = False, source: Path = ROOT, workers: int = 2) -> StallOutcome:
    """A database that is slow first to record a delivery, then to finish it, at a scale
    where WeChat's 5 s is `timeout` and the reply budget `budget` (PostgreSQL, 2 workers;
    with 1 every retry waits in-process for the first attempt).

    Recording waits on a SHARE lock on inbound_message held for `record_stall` (> budget:
    the first attempt's callback cannot answer 'success' and waits for the handling);
    handling then waits on a row lock on the ticket counter held for `handling_stall`.
    WeChat times out and retries; a retry landing on the other worker finds the record
    live elsewhere and, once its budget is spent, answers 'success'. The lease is long, so
    neither the sweeper nor a retry takes the record over: the first attempt finishes it.
    Its reply must then go by customer-service message, since its own HTTP answer is
    long gone and WeChat will not retry an acknowledged delivery."""
    import asyncpg

    with _temp_dir(keep) as work:
        data_dir = work.path
        database_url = await new_database(admin_url)
        service = Service(ServiceConfig(workers=workers, database_url=database_url, budget=budget, lease_seconds=60,
                                        source=source), data_dir)
        dsn = database_url.replace("postgresql+asyncpg", "postgresql")
        locks: list[Any] = []
        try:
            await asyncio.to_thread(service.prepare)
            await service.start()
            async with WeChatPlatform(service.url, timeout=timeout, retries=retries,
                                      retry_interval=retry_interval) as platform:
                *people, spare = await prepare_residents(platform, residents + 1)
                # One ticket first (not one of the checked deliveries), so today's counter
                # row exists to be locked.
                await platform.must(wechat.text(spare, complaint_text(10_000)))
                counter, table = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
                locks = [counter, table]
                hold_counter, hold_table = counter.transaction(), table.transaction()
                await hold_counter.start()
                await counter.execute("SELECT * FROM counter FOR UPDATE")
                await hold_table.start()
                await table.execute("LOCK TABLE inbound_message IN SHARE MODE")
                platform.started = time.monotonic()
                sent = []
                for i, openid in enumerate(people):
                    fields = wechat.text(openid, complaint_text(i))
                    sent.append(Sent(int(fields["MsgId"]), openid, fields["Content"], fields))
                tasks = [asyncio.create_task(platform.deliver(s)) for s in sent]
                try:
                    await asyncio.sleep(record_stall)
                    await hold_table.commit()
                    await asyncio.sleep(handling_stall)
                    await hold_counter.commit()
                    bound = (1 + retries) * (timeout + retry_interval) + 30
                    await asyncio.wait_for(asyncio.gather(*tasks), timeout=bound)
                finally:
                    for task in tasks:
                        task.cancel()
            keys = {s.key for s in sent}
            await wait_settled(database_url, keys, 30)
            service.stop()
            snap = await snapshot(database_url)
        finally:
            for conn in locks:
                with contextlib.suppress(Exception):
                    await conn.close()
            service.stop()
    report = verify(sent, snap)
    return StallOutcome(report, sent, {k: v["late"] for k, v in snap.inbound.items()}, snap)
