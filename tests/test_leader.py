"""Jobs run once: one leader among all workers (bot/leader.py, bot/scheduler.py).

Unit tests: two `Leadership` objects on one database (PostgreSQL advisory lock, or the
SQLite file lock in the data dir): exactly one leads, the other takes over once the
leader's lock is gone, and `guard` runs a job on the leader only. Integration: a real
`minyi serve --workers 2` on PostgreSQL whose leader is killed with -9.
"""

from __future__ import annotations

import asyncio
import json
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


async def test_a_run_missed_while_the_loop_was_busy_runs_late_not_skipped(client: Any,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Under a load peak the loop can be seconds late; APScheduler's default then skips the
    run (over 1 s late) and warns each time. Every job here runs late instead, once."""
    import logging

    from bot.routes import INBOX
    from bot.scheduler import LEADER_ELECTION_JOB, start_scheduler
    from tests.conftest import services_of

    services = services_of(client)
    leadership = Leadership.for_settings(services.settings)
    leadership.interval = 2.0  # tried at start, then at +2 s, +4 s …
    scheduler = start_scheduler(services, client.server.app[INBOX], leadership=leadership)
    try:
        await asyncio.sleep(0.3)  # the first election has run
        due = scheduler.get_job(LEADER_ELECTION_JOB).next_run_time  # the +2 s one
        # This scheduler's election (the app's own scheduler elects every 1 s), for the +2 s slot:
        ours = 'Running job "Leadership.try_lead (trigger: interval[0:00:02]'
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="apscheduler"):
            time.sleep(3.5)  # the loop is blocked until 1.8 s after that election was due
            for _ in range(30):  # then give it up to 3 s to start
                messages = [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler")]
                if [m for m in messages if m.startswith(ours) and f"(scheduled at {due})" in m]:
                    break
                await asyncio.sleep(0.1)
        assert not [m for m in messages if "was missed by" in m], messages
        assert [m for m in messages if m.startswith(ours) and f"(scheduled at {due})" in m], (due, messages)
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


# ---------------------------------------------------------------- the SLA clock in the leader

# Two different problems of 西山街道 (the same one twice would be linked as a duplicate,
# which is escalated through its original).
REPORTS = ("枫林小区楼下烧烤摊油烟太大，窗户都不敢开", "枫林小区门口的垃圾堆了好几天没人清运，臭气熏天")
STREET_SUPERVISOR = "o-demo-supervisor-02"  # S02, 西山街道 (config/demo/staff.toml)


async def _overdue(url: str, number: str) -> None:
    """Move a ticket's response deadline (and warning point) into the past."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("UPDATE ticket SET response_warn_at = now() - interval '2 hours',"
                           " response_due_at = now() - interval '1 hour' WHERE number = $1", number)
    finally:
        await conn.close()


async def _sla_state(url: str) -> tuple[dict[str, list[tuple]], dict[str, int]]:
    """Per ticket number: its SLA marks; and how many 督办 notices each number got."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        marks = await conn.fetch("SELECT t.number, m.round, m.kind, m.clock, m.level FROM sla_mark m"
                                 " JOIN ticket t ON t.id = m.ticket_id ORDER BY m.id")
        notices = await conn.fetch("SELECT payload FROM outbox WHERE openid = $1", STREET_SUPERVISOR)
    finally:
        await conn.close()
    by_ticket: dict[str, list[tuple]] = {}
    for row in marks:
        by_ticket.setdefault(row["number"], []).append(tuple(row)[1:])
    told: dict[str, int] = {}
    for row in notices:
        payload = row["payload"]
        content = (json.loads(payload) if isinstance(payload, str) else payload or {}).get("content", "")
        found = re.search(r"【督办·街道】工单 (\d{8}-\d{4})", content)
        if found:
            told[found.group(1)] = told.get(found.group(1), 0) + 1
    return by_ticket, told


async def _until_told(url: str, number: str, timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if number in (await _sla_state(url))[1]:
            return time.monotonic() - began
        await asyncio.sleep(0.2)
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await conn.fetchrow("SELECT status, area_code, response_due_at, accepted_at, duplicate_of_id"
                                  " FROM ticket WHERE number = $1", number)
    finally:
        await conn.close()
    raise AssertionError(f"{number}: no 督办 notice within {timeout} s; ticket {dict(row or {})}; "
                         f"{await _sla_state(url)}")


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="MINYI_TEST_BACKENDS leaves out postgresql")
def test_the_sla_clock_runs_in_the_leader_and_the_other_worker_takes_it_over(pg_url: str, tmp_path: Path) -> None:
    """`minyi serve --workers 2` on PostgreSQL, the SLA tick every second: an overdue
    ticket is escalated once; the leader is killed; the other worker takes leadership and
    escalates the next overdue ticket; no notice is ever sent twice."""
    from tests import wechat
    from tests.faults import Service, ServiceConfig, WeChatPlatform

    config = ServiceConfig(workers=2, database_url=pg_url,
                           extra_env={"MINYI_SCHEDULER_LEADER_RETRY_SECONDS": "1",
                                      "MINYI_SCHEDULER_SLA_TICK_SECONDS": "1"})
    service = Service(config, tmp_path / "data")
    service.data_dir.mkdir(parents=True)

    async def report(platform: WeChatPlatform, openid: str, text: str) -> str:
        await platform.must(wechat.event(openid, "subscribe"))
        await platform.must(wechat.text(openid, "同意"))
        found = re.search(r"\d{8}-\d{4}", await platform.must(wechat.text(openid, text)))
        assert found, "no ticket number in the reply"
        return found.group(0)

    async def run() -> None:
        async with WeChatPlatform(service.url) as platform:
            first_ticket = await report(platform, "o-leader-sla-1", REPORTS[0])
            await _overdue(pg_url, first_ticket)
            await _until_told(pg_url, first_ticket, 20)
            first = await leader_pid(pg_url, 10)
            os.kill(first, signal.SIGKILL)
            wait_dead(first)
            second = await leader_pid(pg_url, 60, not_pid=first)
            assert second in set(service.workers()) - {first}
            # The next overdue ticket is escalated by the new leader (the old one is dead).
            second_ticket = await report(platform, "o-leader-sla-2", REPORTS[1])
            await _overdue(pg_url, second_ticket)
            took = await _until_told(pg_url, second_ticket, 60)
            await asyncio.sleep(3)  # a few more ticks by the new leader: nothing more
            marks, told = await _sla_state(pg_url)
            expected = [(0, "warn", "response", 0), (0, "escalate", "response", 1)]
            assert marks == {first_ticket: expected, second_ticket: expected}
            assert told == {first_ticket: 1, second_ticket: 1}
            print(f"leader {first} killed; {second} leads and escalated {second_ticket} {took:.1f} s after it was due")

    try:
        service.prepare()  # migrate and load the demo organisation
        asyncio.run(service.start())
        asyncio.run(run())
        assert service.log_count(" ERROR ") == 0, service.first_error()
    finally:
        service.stop()
