"""Intake never loses a complaint: a real `minyi serve --workers 2` under WeChat-like
load (tests/faults.py), killed with -9, with PostgreSQL stopped for 10 s, with its
connection pool starved; then every acknowledged MsgId must have its ticket, every
ticket its reply, and no MsgId two tickets — the counts are asserted exactly.

Small versions of the runs in tests/bench/fault_harness.py (about a minute in all).
The PostgreSQL runs use one server this module starts and controls (the outage test
stops and starts it); MINYI_TEST_BACKENDS=sqlite leaves them out, as elsewhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Iterator

import pytest

from tests.conftest import BACKENDS
from tests.faults import (
    PROBLEMS, Attempt, Outcome, Postgres, Scenario, Sent, Snapshot, complaint_text, kill_plan, run_scenario, verify,
)

CI_LOAD = dict(workers=2, residents=20, count=150, rate=60.0, seconds=2.5, concurrency=16)


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    if "postgresql" not in BACKENDS:
        pytest.skip("MINYI_TEST_BACKENDS leaves out postgresql")
    server = Postgres()
    server.start()
    try:
        yield server
    finally:
        server.close()


def run(scenario: Scenario, pg: Postgres | None = None) -> Outcome:
    outcome = asyncio.run(run_scenario(scenario, pg=pg, progress=print))
    print("\n".join(outcome.lines()))
    return outcome


def assert_nothing_lost(outcome: Outcome) -> None:
    r = outcome.report
    assert r.failures == {}, "\n".join(outcome.lines())
    # Each one exactly, so a new kind of failure cannot hide behind the dict above.
    assert (r.lost, r.duplicated, r.replies_missing, r.wrong_replies) == (0, 0, 0, 0)
    assert (r.acknowledged_unrecorded, r.recorded_without_ticket, r.gave_up, r.stuck) == (0, 0, 0, 0)
    assert r.stray_tickets == 0 and r.http4xx == 0 and r.malformed == 0
    assert outcome.undone_at_deadline == 0
    # WeChat's retries were all served in the end, so every complaint is a ticket.
    assert r.not_acknowledged == 0
    assert r.acknowledged == r.sent == r.recorded == r.tickets > 0
    assert r.replies_in_http + r.replies_in_outbox_only == r.tickets


def assert_detects_tampering(outcome: Outcome) -> None:
    """The verdict on this run's own data, broken on purpose: each break is counted."""
    sent, snap = outcome.load.sent, outcome.snapshot
    acked = next(s for s in sent if s.acknowledged)
    ticket = next(t for t in snap.tickets if t["source_key"] == acked.key)
    without = dataclasses.replace(snap, tickets=[t for t in snap.tickets if t is not ticket])
    broken = verify(sent, without)
    assert (broken.lost, broken.recorded_without_ticket) == (1, 1)
    twice = verify(sent, dataclasses.replace(snap, tickets=[*snap.tickets, {**ticket, "number": "X-1"}]))
    assert twice.duplicated == 1 and twice.replies_missing == 1  # the second has no reply either
    unrecorded = dict(snap.inbound)
    del unrecorded[acked.key]
    assert verify(sent, dataclasses.replace(snap, inbound=unrecorded)).acknowledged_unrecorded == 1
    # The reply taken away from wherever it was: the answer and the outbox.
    silent = [dataclasses.replace(s, reply="") if s is acked else s for s in sent]
    no_outbox = [row for row in snap.outbox if ticket["number"] not in row["content"]]
    assert verify(silent, dataclasses.replace(snap, outbox=no_outbox)).replies_missing == 1


# ---------------------------------------------------------------- kill -9

def test_kill_9_of_the_whole_service_on_sqlite_loses_nothing():
    outcome = run(Scenario(backend="sqlite", kills=1, kill_mode="group", **CI_LOAD))
    assert [what for _, what, _ in outcome.kills] == ["group"] and outcome.starts == 2
    r = outcome.report
    # The kill cut requests or refused them while the service restarted; WeChat retried.
    assert r.connection_errors > 0 and r.retries > 0
    assert_nothing_lost(outcome)
    assert_detects_tampering(outcome)


def test_kill_9_of_one_worker_then_all_on_postgresql_late_path_loses_nothing(pg):
    # A budget a little above the time to record a delivery (~1 ms) and below the time
    # to handle it: most answers are 'success' and their replies go through the outbox.
    # (0.001 would be below the record's commit: such a callback waits for the handling.)
    outcome = run(Scenario(backend="postgresql", kills=2, kill_mode="worker,group", budget=0.003, **CI_LOAD), pg)
    assert [what for _, what, _ in outcome.kills] == ["worker", "group"] and outcome.starts == 2
    r = outcome.report
    assert r.connection_errors > 0 and r.retries > 0
    assert r.answered_success >= 5, "the tiny budget did not force the late path"
    assert r.replies_in_outbox_only >= r.answered_success
    assert_nothing_lost(outcome)
    assert_detects_tampering(outcome)


# ---------------------------------------------------------------- a starved pool

def test_exhausted_connection_pool_answers_503_and_loses_nothing(pg):
    # The burst alone exhausted the pool on a slow machine only; with the ticket table
    # locked for 0.6 s each handling keeps its connection, so new deliveries wait > 0.2 s.
    outcome = run(Scenario(backend="postgresql", workers=2, residents=20, count=150, rate=300.0, seconds=0.5,
                           concurrency=64, pool_size=1, pool_timeout=0.2, lock_tickets_at=0.05,
                           lock_tickets_seconds=0.6), pg)
    r = outcome.report
    assert r.http503 > 0, "the burst did not exhaust the pool"
    assert r.timeouts == 0 and r.connection_errors == 0  # refused at once, not left hanging
    assert_nothing_lost(outcome)


# ---------------------------------------------------------------- PostgreSQL stopped for 10 s

def test_postgresql_down_for_10_seconds_answers_503_then_serves_every_retry(pg):
    try:
        # New complaints for the first 6 s; their retries (every 5 s) keep arriving
        # throughout the outage and after it.
        outcome = run(Scenario(backend="postgresql", workers=2, residents=20, count=200, rate=15.0, seconds=6.0,
                               concurrency=16, outage_at=0.5, outage_seconds=10.0), pg)
    finally:
        if not (pg.server.data / "postmaster.pid").exists():
            pg.start_server()  # whatever happened, the server is up for the next test
    assert outcome.outage is not None
    stopped, starting, _up = outcome.outage
    assert starting - stopped >= 9.5
    # While it was down attempts were refused with 503 at once (no timeouts); a 200 then
    # could only come from a worker's memory: a reply of a delivery finished before the
    # outage or a 'success' for one recorded before it (checked against the database).
    assert outcome.during_outage["http503"] > 0
    assert set(outcome.during_outage) <= {"http503", "reply", "success"}
    assert all(sound for _, sound, _ in outcome.answered_while_down), outcome.answered_while_down
    # Once it was back (`pg_ctl start` returned) every attempt, retries included, was answered.
    assert set(outcome.after_outage) <= {"reply", "success"} and outcome.after_outage.total() > 0
    assert_nothing_lost(outcome)


# ---------------------------------------------------------------- the harness itself

def test_the_verdict_counts_each_kind_of_failure():
    """On made-up data: the harness can fail."""
    def delivery(i: int, reply: str | None) -> Sent:
        return Sent(i, f"o{i}", "", {}, [Attempt(0.0, 0.01, "reply" if reply else "success", 200)], reply)

    def row(done: bool = True, attempts: int = 1, error: str | None = None) -> dict:
        return {"done": done, "late": False, "reply": "", "attempts": attempts, "last_error": error}

    sent = [delivery(1, "编号：20260101-0001"), delivery(2, ""), delivery(3, ""), delivery(4, "编号：20260101-0009"),
            delivery(5, None), delivery(6, "")]
    snap = Snapshot(
        inbound={"m:1": row(), "m:2": row(), "m:3": row(attempts=5, error="gave up after 5 attempts"),
                 "m:4": row(), "m:5": row(done=False), "m:6": row()},
        tickets=[{"number": "20260101-0001", "openid": "o1", "source_key": "m:1"},
                 {"number": "20260101-0002", "openid": "o2", "source_key": "m:2"},
                 {"number": "20260101-0004", "openid": "o4", "source_key": "m:4"},
                 {"number": "20260101-0005", "openid": "o6", "source_key": "m:6"},
                 {"number": "20260101-0006", "openid": "o6", "source_key": "m:6"},
                 {"number": "20260101-0007", "openid": "o1", "source_key": None}],
        outbox=[{"openid": "o6", "content": "编号：20260101-0005", "title": "回复", "status": "offline"},
                {"openid": "o6", "content": "编号：20260101-0006", "title": "回复", "status": "offline"},
                {"openid": "o1", "content": "编号：20260101-0002", "title": "回复", "status": "offline"}])
    r = verify(sent, snap)
    assert r.lost == 1  # m:3 acknowledged, no ticket (the intake gave up on it)
    assert r.gave_up == 1 and r.recorded_without_ticket == 1
    assert r.replies_missing == 2  # m:2 (its reply went to o1, not o2) and m:4
    assert r.wrong_replies == 1  # m:4 was answered with another ticket's number
    assert r.duplicated == 1  # m:6
    assert r.stuck == 1 and r.not_acknowledged == 1  # m:5
    assert r.stray_tickets == 1  # 20260101-0007
    assert set(r.failures) == {"lost", "gave_up", "recorded_without_ticket", "replies_missing", "wrong_replies",
                               "duplicated", "stuck", "stray_tickets"}


def test_complaint_texts_are_distinct_and_kill_plans_cycle():
    texts = [complaint_text(i) for i in range(3000)]
    assert len(set(texts)) == len(texts)
    assert len({t[-6:] for t in texts[:len(PROBLEMS)]}) == len(PROBLEMS)  # the first ones: each problem once
    assert kill_plan(Scenario(kills=3, kill_mode="alternate")) == ["group", "worker", "group"]
    assert kill_plan(Scenario(kills=3, kill_mode="worker,group")) == ["worker", "group", "worker"]
    with pytest.raises(ValueError):
        kill_plan(Scenario(kills=1, kill_mode="everything"))
