"""Jobs run once: one leader among all workers (bot/leader.py, bot/scheduler.py).

Unit tests: two `Leadership` objects on one database (PostgreSQL advisory lock, or the
SQLite file lock in the data dir): exactly one leads, the other takes over once the
leader's lock is gone, and `guard` runs a job on the leader only. Integration: a real
`minyi serve --workers 2` on PostgreSQL whose leader is killed with -9.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from bot.leader import LEADER_LOCK, Leadership, advisory_key, asyncpg_dsn, exclusive, process_lock
from bot.retrain import RETRAIN_LOCK
from bot.settings import Settings
from tests.conftest import BACKENDS, make_settings

TAKEN = "scheduler leadership taken by pid"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url, scheduler={"leader_retry_seconds": "1"})


@pytest.fixture
async def pair(settings: Settings) -> AsyncIterator[tuple[Leadership, Leadership]]:
    a, b = Leadership.for_settings(settings), Leadership.for_settings(settings)
    try:
        yield a, b
    finally:
        await a.release()
        await b.release()


async def break_lock(leadership: Leadership, settings: Settings) -> None:
    """The leader's lock goes as if its process died: on PostgreSQL its connection is
    killed by the server, on SQLite its lock file is closed."""
    lock: Any = leadership.lock
    if settings.is_sqlite:
        lock._file.close()
        return
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        backend = lock._conn.get_server_pid()
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", backend)
    finally:
        await conn.close()


async def eventually_leads(leadership: Leadership, seconds: float = 10.0) -> bool:
    """Try as the election job does (faster), until it leads or time is up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await leadership.try_lead():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_exactly_one_leads(pair: tuple[Leadership, Leadership]) -> None:
    a, b = pair
    assert await a.try_lead() and a.is_leader
    assert not await b.try_lead() and not b.is_leader
    assert await a.try_lead() and not await b.try_lead()  # the leader stays leader


async def test_the_other_takes_over_when_the_leader_dies(pair: tuple[Leadership, Leadership],
                                                         settings: Settings) -> None:
    a, b = pair
    assert await a.try_lead() and not await b.try_lead()
    await break_lock(a, settings)
    assert not await a.try_lead() and not a.is_leader  # its broken lock is noticed on the next try
    assert await eventually_leads(b)
    assert not await a.try_lead()


async def test_a_released_leadership_is_taken_on_the_next_try(pair: tuple[Leadership, Leadership]) -> None:
    a, b = pair
    assert await a.try_lead()
    await a.release()
    assert not a.is_leader
    assert await b.try_lead()
    assert not await a.try_lead()  # released on shutdown: never taken again


async def test_guard_runs_the_job_on_the_leader_only(pair: tuple[Leadership, Leadership],
                                                     settings: Settings) -> None:
    a, b = pair
    runs: list[str] = []

    async def job(name: str) -> str:
        runs.append(name)
        return name

    assert await a.try_lead()
    assert await a.guard(job)("a") == "a"
    assert await b.guard(job)("b") is None
    assert runs == ["a"]
    await break_lock(a, settings)
    assert await a.guard(job)("a") is None  # the guard checks the lock first
    assert await eventually_leads(b)
    assert await b.guard(job)("b") == "b"
    assert runs == ["a", "b"]


async def test_the_leader_lock_is_where_the_settings_say(settings: Settings) -> None:
    leadership = Leadership.for_settings(settings)
    try:
        assert leadership.interval == 1.0
        assert await leadership.try_lead()
        if settings.is_sqlite:
            assert (settings.data_dir / "leader.lock").exists()
        else:
            assert await advisory_holders(settings.database_url, LEADER_LOCK) == 1
    finally:
        await leadership.release()


async def test_retraining_holds_a_lock_of_its_own(settings: Settings) -> None:
    path = settings.models_dir / ".retrain.lock"
    other = process_lock(settings, RETRAIN_LOCK, path)
    async with exclusive(settings, RETRAIN_LOCK, path):
        assert not await other.try_acquire()
        leadership = Leadership.for_settings(settings)
        assert await leadership.try_lead()  # a different lock from the leader's
        await leadership.release()
    assert await other.try_acquire()
    await other.release()


def test_scheduler_settings_section() -> None:
    from bot.settings import load_settings

    assert load_settings({}).scheduler.leader_retry_seconds == 10.0
    assert load_settings({"MINYI_SCHEDULER_LEADER_RETRY_SECONDS": "1.5"}).scheduler.leader_retry_seconds == 1.5


async def test_the_scheduler_runs_leader_jobs_through_the_guard(settings: Settings) -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.scheduler import add_leader_job

    a, b = Leadership.for_settings(settings), Leadership.for_settings(settings)
    runs: list[str] = []

    async def tick(name: str) -> None:
        runs.append(name)

    schedulers = [AsyncIOScheduler(), AsyncIOScheduler()]
    try:
        assert await a.try_lead()
        for scheduler, leadership, name in zip(schedulers, (a, b), "ab"):
            add_leader_job(scheduler, leadership, tick, "interval", args=[name], seconds=0.1)
            scheduler.start()
        await asyncio.sleep(0.55)
    finally:
        for scheduler in schedulers:
            scheduler.shutdown(wait=False)
        await a.release()
        await b.release()
    assert runs and set(runs) == {"a"}


async def test_start_scheduler_elects_and_guards_retraining(client: Any) -> None:
    from bot.retrain import retrain_job
    from bot.routes import INBOX
    from bot.scheduler import LEADER_ELECTION_JOB, RETRAIN_JOB, start_scheduler
    from tests.conftest import services_of

    services = services_of(client)
    leadership = Leadership.for_settings(services.settings)
    scheduler = start_scheduler(services, client.server.app[INBOX], leadership=leadership)
    try:
        assert scheduler.get_job(RETRAIN_JOB).func.__wrapped__ is retrain_job
        election = scheduler.get_job(LEADER_ELECTION_JOB)
        assert election.func == leadership.try_lead and election.trigger.interval.total_seconds() == 1.0
    finally:
        scheduler.shutdown(wait=False)
        await leadership.release()


# ---------------------------------------------------------------- a real service

async def advisory_holders(url: str, name: str) -> int:
    """How many sessions hold the advisory lock `name` (0 or 1)."""
    return len(await leader_sessions(url, name))


async def leader_sessions(url: str, name: str = LEADER_LOCK) -> list[str]:
    """application_name of each session holding the advisory lock `name`."""
    import asyncpg

    key = advisory_key(name)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::bigint::oid"
            " AND l.objid = $2::bigint::oid AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)
    finally:
        await conn.close()
    return [row[0] for row in rows]


async def leader_pid(url: str, timeout: float, not_pid: int | None = None) -> int:
    """The worker pid holding leadership (from its lock session's application_name)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = await leader_sessions(url)
        assert len(names) <= 1, names
        found = [int(m.group(1)) for m in (re.search(r"pid=(\d+)", n) for n in names) if m]
        if found and found[0] != not_pid:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no leader (other than {not_pid}) within {timeout} s")


def wait_dead(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in "ZX":
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still alive")


@pytest.fixture
def pg_url(postgres_template: str) -> str:
    """A fresh, migrated database on the session's PostgreSQL server."""
    from tests.conftest import _admin

    name = "leader_" + uuid.uuid4().hex[:10]
    asyncio.run(_admin(postgres_template, f"CREATE DATABASE {name} TEMPLATE minyi_template"))
    return postgres_template.rsplit("/", 1)[0] + "/" + name


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="MINYI_TEST_BACKENDS leaves out postgresql")
def test_a_killed_leader_is_replaced_by_the_other_worker(pg_url: str, tmp_path: Path) -> None:
    from tests.faults import Service, ServiceConfig

    config = ServiceConfig(workers=2, database_url=pg_url,
                           extra_env={"MINYI_SCHEDULER_LEADER_RETRY_SECONDS": "1"})
    service = Service(config, tmp_path / "data")
    service.data_dir.mkdir(parents=True)
    try:
        asyncio.run(service.start())
        workers = set(service.workers())
        first = asyncio.run(leader_pid(pg_url, 10))
        assert first in workers
        time.sleep(2.5)  # a few more election rounds: the follower stays follower
        assert service.log_count(TAKEN) == 1, service.log_tail()
        assert f"{TAKEN} {first}" in service.log_path.read_text()

        os.kill(first, signal.SIGKILL)
        wait_dead(first)
        killed_at = time.monotonic()
        second = asyncio.run(leader_pid(pg_url, 60, not_pid=first))
        took = time.monotonic() - killed_at
        assert second in workers - {first}
        assert took < 60
        assert service.log_count(TAKEN) == 2 and f"{TAKEN} {second}" in service.log_path.read_text()
        assert service.log_count(" ERROR ") == 0, service.first_error()
        print(f"leader {first} killed; {second} took over in {took:.1f} s")
    finally:
        service.stop()
