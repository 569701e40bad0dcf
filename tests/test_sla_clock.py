"""The SLA clock (bot/casework/sla_clock.py): warnings at 80 %, overdue and 督办 up the grid
tree street → district → city, once per ticket, clock and level; pauses stop it; working
days follow the official Chinese arrangement (the `holidays` library plus overrides).

Reports come in through /wechat, staff act and the clock ticks through the CLI
(`minyi ticket act`, `minyi sla tick --at …`), which opens the app's database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from bot.casework.areas import AreaDirectory
from bot.casework.org import Organisation
from bot.casework.sla import SlaPolicy, WorkingCalendar
from bot.casework.sla_clock import tick
from bot.clock import format_local, from_local, to_local, utcnow
from bot.sla_jobs import check_calendar
from storage.models import Area, Outbox, SlaMark, Staff, TicketChange, TicketEvent
from tests.conftest import services_of
from tests.steps import follow, minyi, report, ticket_by_number
from tests import wechat

FUMES = "枫林小区楼下烧烤摊油烟太大，窗户都不敢开"  # → cooking_fumes, 枫林第一网格, environment
GRID_WORKER = "o-demo-grid-01"  # G01, the worker of 枫林第一网格
LIAISON = "o-demo-liaison-environment"
STREET_SUPERVISOR = "o-demo-supervisor-02"  # S02, 西山街道
DISTRICT_SUPERVISOR = "o-demo-supervisor-01"  # S01, 示范区
CITY_SUPERVISOR = "o-test-supervisor-city"  # added below with the city node
PLACE = "西山街道 枫林社区 枫林第一网格"
CONFIG = Path(__file__).resolve().parents[1] / "config"


async def add_supervisors(client: Any) -> None:
    """The demo tree stops at the district: a city above it with its supervisor, and a
    second street supervisor without WeChat bound (skipped)."""
    async with services_of(client).db.transaction() as s:
        s.add(Area(code="420100", name="示范市", level="city"))
        await s.flush()
        await s.exec(update(Area).where(col(Area.code) == "420199").values(parent_code="420100"))  # type: ignore[call-overload]
        s.add_all([Staff(login="S12", name="未绑定督办", role="supervisor", area_code="420199001"),
                   Staff(login="S31", name="市督办", role="supervisor", area_code="420100", openid=CITY_SUPERVISOR)])


async def sla_tick(capsys: Any, at: datetime) -> str:
    code, out, err = await minyi(capsys, "sla", "tick", "--at", at.isoformat())
    assert code == 0, err
    return out


def summary(warnings: int = 0, breaches: int = 0, escalations: int = 0) -> str:
    return f"预警 {warnings} 条，超时 {breaches} 条，督办升级 {escalations} 条"


async def last_outbox_id(client: Any) -> int:
    async with services_of(client).db.session() as s:
        return max((await s.exec(select(Outbox.id))).all() or [0])  # type: ignore[type-var]


async def rows_after(client: Any, after: int) -> list[tuple[str, str]]:
    """(openid, text) of the outbox rows queued since `after`."""
    async with services_of(client).db.session() as s:
        rows = (await s.exec(select(Outbox).where(col(Outbox.id) > after).order_by(col(Outbox.id)))).all()
    return [(row.openid or "", (row.payload or {}).get("content", "")) for row in rows]


async def marks_of(client: Any, ticket_id: int) -> list[tuple[str, str, int, str | None]]:
    async with services_of(client).db.session() as s:
        rows = (await s.exec(select(SlaMark).where(SlaMark.ticket_id == ticket_id).order_by(col(SlaMark.id)))).all()
    return [(m.kind, m.clock, m.level, m.area_code) for m in rows]


def category(client: Any) -> str:
    return f"类别：{services_of(client).router.taxonomy.label('cooking_fumes')}（一般）\n位置：{PLACE}"


def warning_text(client: Any, number: str, clock: str, left: str, due: datetime, urge: str) -> str:
    return f"【超时预警】工单 {number} 距{clock}时限还剩{left}（{format_local(due)}）。\n{category(client)}\n{urge}。"


def escalation_text(client: Any, number: str, level: str, clock: str, due: datetime, late: str, state: str,
                    handler: str) -> str:
    late = f"，已超时{late}" if late else ""
    return (f"【督办·{level}】工单 {number} 已超过{clock}时限（{format_local(due)}）{late}。\n{category(client)}\n"
            f"状态：{state}；处理人：{handler}\n请督促办理。")


class FakeClock:
    """What `utcnow()` returns to the desk and the dialogs while a test moves time."""

    def __init__(self, monkeypatch: Any, at: datetime) -> None:
        self.at = at
        for target in ("bot.casework.desk.utcnow", "bot.dialogs.dispatch.utcnow"):
            monkeypatch.setattr(target, lambda: self.at)


# ---------------------------------------------------------------- warnings and escalation

async def test_a_late_ticket_is_warned_then_escalated_street_district_city(client, sender, new_openid, cli_env,
                                                                           capsys):
    await add_supervisors(client)
    number = await report(sender, await follow(sender, new_openid()), FUMES)
    code, _, err = await minyi(capsys, "ticket", "act", number, "accept", "--by", "G01")
    assert code == 0, err
    ticket = await ticket_by_number(client, number)
    assert ticket.handler_id is not None and not ticket.overdue and ticket.escalation_level == 0
    warn, due = ticket.closure_warn_at, ticket.closure_due_at
    assert warn is not None and due is not None
    interval = timedelta(hours=4)  # config/sla.toml [escalation] interval
    start = await last_outbox_id(client)

    assert summary() in await sla_tick(capsys, warn - timedelta(minutes=1))
    assert await rows_after(client, start) == []

    # 80 %: one warning, to the handler only (not the liaison: someone has accepted it).
    assert summary(warnings=1) in await sla_tick(capsys, warn)
    left = due - warn
    hours, minutes = divmod(int(left.total_seconds() // 60), 60)
    days, hours = divmod(hours, 24)
    left_text = f"{days}天{hours}小时" if days else f"{hours}小时{minutes}分钟"
    assert await rows_after(client, start) == [
        (GRID_WORKER, warning_text(client, number, "办结", left_text, due, "请抓紧处置，按时办结"))]
    assert summary() in await sla_tick(capsys, warn + timedelta(minutes=5))  # once per ticket and clock

    # The deadline: overdue, and 督办 to the street's supervisor (the one with WeChat).
    start = await last_outbox_id(client)
    assert summary(breaches=1) in await sla_tick(capsys, due)
    assert await rows_after(client, start) == [
        (STREET_SUPERVISOR, escalation_text(client, number, "街道", "办结", due, "", "已接单", "王芳（G01）"))]
    after = await ticket_by_number(client, number)
    assert after.overdue and after.escalation_level == 1 and after.status == ticket.status

    # Each interval later, one level up: the district, then the city.
    start = await last_outbox_id(client)
    assert summary() in await sla_tick(capsys, due + interval - timedelta(minutes=1))
    assert summary(escalations=1) in await sla_tick(capsys, due + interval)
    assert summary(escalations=1) in await sla_tick(capsys, due + 2 * interval)
    assert await rows_after(client, start) == [
        (DISTRICT_SUPERVISOR, escalation_text(client, number, "区", "办结", due, "4小时", "已接单", "王芳（G01）")),
        (CITY_SUPERVISOR, escalation_text(client, number, "市", "办结", due, "8小时", "已接单", "王芳（G01）"))]
    assert (await ticket_by_number(client, number)).escalation_level == 3

    # Run again, and later: nothing more (every level once).
    start = await last_outbox_id(client)
    assert summary() in await sla_tick(capsys, due + 2 * interval)
    assert summary() in await sla_tick(capsys, due + 10 * interval)
    assert await rows_after(client, start) == []
    assert await marks_of(client, ticket.id) == [("warn", "closure", 0, None),
                                                 ("escalate", "closure", 1, "420199001"),
                                                 ("escalate", "closure", 2, "420199"),
                                                 ("escalate", "closure", 3, "420100")]
    await assert_audit(client, ticket.id, ticket.status)


async def assert_audit(client: Any, ticket_id: int, status: str) -> None:
    """One 督办 event per level (actor system, state unchanged), with the field changes."""
    async with services_of(client).db.session() as s:
        events = (await s.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id,
                                                         TicketEvent.action == "supervise")
                               .order_by(col(TicketEvent.id)))).all()
        changes = (await s.exec(select(TicketChange).where(TicketChange.ticket_id == ticket_id,
                                                           col(TicketChange.field).in_(["overdue", "escalation_level"]))
                                .order_by(col(TicketChange.id)))).all()
    assert [e.note for e in events] == ["办结时限已过，督办·街道（西山街道）", "办结时限已过，督办·区（示范区）",
                                        "办结时限已过，督办·市（示范市）"]
    assert {(e.actor, e.from_status, e.to_status) for e in events} == {("system", status, status)}
    assert [(c.field, c.old_value, c.new_value, c.event_id) for c in changes] == [
        ("overdue", "False", "True", events[0].id), ("escalation_level", "0", "1", events[0].id),
        ("escalation_level", "1", "2", events[1].id), ("escalation_level", "2", "3", events[2].id)]


async def test_the_response_clock_runs_until_someone_accepts(client, sender, new_openid, cli_env, capsys):
    await add_supervisors(client)
    number = await report(sender, await follow(sender, new_openid()), FUMES)
    ticket = await ticket_by_number(client, number)
    warn, due = ticket.response_warn_at, ticket.response_due_at
    assert warn is not None and due is not None
    start = await last_outbox_id(client)

    # Nobody has accepted it: the grid's worker and the department's liaison are warned.
    assert summary(warnings=1) in await sla_tick(capsys, warn)
    text = warning_text(client, number, "接单", "4小时48分钟", due, "请尽快接单")  # 20 % of 24 h
    assert await rows_after(client, start) == [(GRID_WORKER, text), (LIAISON, text)]

    start = await last_outbox_id(client)
    assert summary(breaches=1) in await sla_tick(capsys, due + timedelta(minutes=30))
    assert await rows_after(client, start) == [
        (STREET_SUPERVISOR, escalation_text(client, number, "街道", "接单", due, "30分钟", "已派单", "未接单"))]

    # Accepted late: the response clock stops, no district escalation follows.
    code, _, err = await minyi(capsys, "ticket", "act", number, "accept", "--by", "G01")
    assert code == 0, err
    start = await last_outbox_id(client)
    assert summary() in await sla_tick(capsys, due + timedelta(hours=5))
    assert await rows_after(client, start) == []
    after = await ticket_by_number(client, number)
    assert after.overdue and after.escalation_level == 1
    assert await marks_of(client, ticket.id) == [("warn", "response", 0, None), ("escalate", "response", 1, "420199001")]


async def test_ticks_at_once_escalate_once(client, sender, new_openid, cli_env, capsys):
    """Two ticks at the same instant, at the same time (as two workers would): one set of
    marks and notices; a duplicate report is escalated through its original only."""
    await add_supervisors(client)
    first = await report(sender, await follow(sender, new_openid()), FUMES)
    second = await report(sender, await follow(sender, new_openid()), "枫林小区楼下的烧烤摊油烟太大了，窗户都不敢开")
    original, duplicate = await ticket_by_number(client, first), await ticket_by_number(client, second)
    assert duplicate.duplicate_of_id == original.id
    services = services_of(client)
    async with services.db.session() as s:  # the tree and staff as they are now (a CLI would load them)
        case = dataclasses.replace(services.case, areas=await AreaDirectory.load(s), org=await Organisation.load(s))
    at = max(original.response_due_at, duplicate.response_due_at) + timedelta(hours=4)
    start = await last_outbox_id(client)
    results = await asyncio.gather(tick(case, at), tick(case, at))
    assert sorted((r.warnings, r.breaches, r.escalations) for r in results) == [(0, 0, 0), (0, 1, 1)]
    assert sorted(await rows_after(client, start)) == sorted([
        (STREET_SUPERVISOR, escalation_text(client, first, "街道", "接单", original.response_due_at, "4小时",
                                            "已派单", "未接单")),
        (DISTRICT_SUPERVISOR, escalation_text(client, first, "区", "接单", original.response_due_at, "4小时",
                                              "已派单", "未接单"))])
    assert await marks_of(client, duplicate.id) == []
    assert summary() in await sla_tick(capsys, at)


async def test_a_late_first_tick_makes_every_level_and_a_missing_node_is_recorded(client, sender, new_openid,
                                                                                   cli_env, capsys):
    """The demo tree as shipped: no city node. A tick long after the deadline (the service
    was down) makes all three levels at once, no warning; the street and the district
    supervisors are told; the city level is recorded in the audit trail."""
    number = await report(sender, await follow(sender, new_openid()), FUMES)
    ticket = await ticket_by_number(client, number)
    start = await last_outbox_id(client)
    assert summary(breaches=1, escalations=2) in await sla_tick(capsys, ticket.response_due_at + timedelta(hours=9))
    assert await rows_after(client, start) == [
        (STREET_SUPERVISOR, escalation_text(client, number, "街道", "接单", ticket.response_due_at, "9小时", "已派单",
                                            "未接单")),
        (DISTRICT_SUPERVISOR, escalation_text(client, number, "区", "接单", ticket.response_due_at, "9小时", "已派单",
                                              "未接单"))]
    assert await marks_of(client, ticket.id) == [("warn", "response", 0, None), ("escalate", "response", 1, "420199001"),
                                                 ("escalate", "response", 2, "420199"), ("escalate", "response", 3, None)]
    async with services_of(client).db.session() as s:
        notes = (await s.exec(select(TicketEvent.note).where(TicketEvent.ticket_id == ticket.id,
                                                             TicketEvent.action == "supervise")
                              .order_by(col(TicketEvent.id)))).all()
    assert notes[-1] == "接单时限已过，督办·市（未设置该级网格节点，未通知）"
    assert (await ticket_by_number(client, number)).escalation_level == 3


# ---------------------------------------------------------------- pauses

async def test_a_pause_stops_the_clock_and_moves_the_deadlines(client, sender, new_openid, cli_env, capsys,
                                                              monkeypatch):
    await add_supervisors(client)
    openid = await follow(sender, new_openid())
    number = await report(sender, openid, FUMES)
    before = await ticket_by_number(client, number)
    clock = FakeClock(monkeypatch, before.created_at + timedelta(minutes=10))
    code, _, err = await minyi(capsys, "ticket", "act", number, "accept", "--by", "G01")
    assert code == 0, err
    clock.at = asked = before.created_at + timedelta(hours=1)
    code, _, err = await minyi(capsys, "ticket", "act", number, "ask_resident", "--by", "G01",
                               "--note", "请拍一张烧烤摊的照片")
    assert code == 0, err
    waiting = await ticket_by_number(client, number)
    assert waiting.status == "waiting" and waiting.paused_since == asked

    # Waiting for the resident, well past the original warning point and deadline: nothing.
    start = await last_outbox_id(client)
    assert summary() in await sla_tick(capsys, before.closure_due_at + timedelta(hours=9))
    assert await rows_after(client, start) == []

    # The resident answers eight days later: every deadline moves on by the pause.
    clock.at = answered = before.created_at + timedelta(days=8)
    assert "工单" in await sender.reply(wechat.text(openid, "照片晚点发，烧烤摊每天晚上六点开始营业"))
    resumed = await ticket_by_number(client, number)
    held = answered - asked
    assert resumed.status == "handling" and resumed.paused_since is None
    assert resumed.paused_seconds == int(held.total_seconds())
    assert (resumed.closure_warn_at, resumed.closure_due_at) == (before.closure_warn_at + held,
                                                                 before.closure_due_at + held)
    assert summary() in await sla_tick(capsys, before.closure_due_at + timedelta(hours=9))
    assert summary(warnings=1) in await sla_tick(capsys, resumed.closure_warn_at)
    assert summary(breaches=1) in await sla_tick(capsys, resumed.closure_due_at)
    assert await marks_of(client, before.id) == [("warn", "closure", 0, None), ("escalate", "closure", 1, "420199001")]


# ---------------------------------------------------------------- the working calendar

async def test_working_days_follow_the_official_arrangement(client, sender, new_openid, cli_env, capsys,
                                                           monkeypatch):
    """Reported on 2026-09-30, an ordinary ticket has five working days: 10-08, 10-09, the
    make-up Saturday 10-10, 10-12 and 10-13 (the National Day week is off)."""
    openid = await follow(sender, new_openid())
    FakeClock(monkeypatch, from_local(datetime(2026, 9, 30, 10, 0)))
    ticket = await ticket_by_number(client, await report(sender, openid, FUMES))
    assert to_local(ticket.closure_due_at) == from_local(datetime(2026, 10, 13, 10, 0))

    code, out, _ = await minyi(capsys, "sla", "calendar", "2026-10-10")
    assert code == 0 and out == "2026-10-10 是工作日：国庆节调休补班\n"
    code, out, _ = await minyi(capsys, "sla", "calendar", "2026-10-07")
    assert out == "2026-10-07 不是工作日：国庆节调休放假（2026-10-10 补班）\n"
    code, out, _ = await minyi(capsys, "sla", "calendar", "2026-10-17")
    assert out == "2026-10-17 不是工作日：周六\n"
    code, out, _ = await minyi(capsys, "sla", "calendar", "2027-01-01")
    lines = out.splitlines()
    assert lines[0] == "2027-01-01 不是工作日：元旦"
    assert lines[1].startswith("注意：日历中没有 2027 年的国务院放假调休安排") and len(lines) == 2


def test_a_year_without_the_official_arrangement_is_warned(caplog):
    sla = SlaPolicy.load(CONFIG)
    assert sla.calendar.uncovered(date(2026, 3, 1), 60) == []
    assert sla.calendar.uncovered(date(2026, 12, 2), 60) == [2027]
    with caplog.at_level(logging.WARNING, logger="bot.sla_jobs"):
        assert check_calendar(sla, date(2026, 12, 2)) == [2027]
        assert check_calendar(sla, date(2026, 6, 1)) == []
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "2027" in warned[0] and "holidays_cn.toml" in warned[0]


def test_the_overrides_file_adds_days_and_completes_a_year(tmp_path):
    overrides = tmp_path / "holidays_cn.toml"
    overrides.write_text('[2027]\ncomplete = true\nholidays = ["2027-02-11"]\nworkdays = ["2027-02-20"]\n'
                         '[2027.names]\n"2027-02-20" = "春节调休补班"\n', encoding="utf-8")
    calendar = WorkingCalendar.load(overrides)
    assert calendar.uncovered(date(2026, 12, 2), 60) == []
    assert not calendar.is_working_day(date(2027, 2, 11))  # a Thursday
    assert calendar.explain(date(2027, 2, 11)).reason == "本地配置的节假日"
    info = calendar.explain(date(2027, 2, 20))  # a Saturday
    assert info.working and info.reason == "春节调休补班" and info.covered
    assert calendar.is_working_day(date(2027, 2, 22)) and not calendar.is_working_day(date(2027, 1, 1))
    # The shipped file changes nothing; a date outside its year's section is refused.
    assert WorkingCalendar.load(CONFIG / "holidays_cn.toml").overrides.holidays == {}
    overrides.write_text('[2027]\nholidays = ["2028-01-03"]\n', encoding="utf-8")
    try:
        WorkingCalendar.load(overrides)
    except ValueError as exc:
        assert "2028-01-03" in str(exc)
    else:
        raise AssertionError("a date outside its year was accepted")


# ---------------------------------------------------------------- a reopened ticket

async def test_a_reopened_ticket_gets_new_deadlines_and_escalates_anew(client, sender, new_openid, cli_env, capsys,
                                                                        monkeypatch):
    await add_supervisors(client)
    number = await report(sender, await follow(sender, new_openid()), FUMES)
    clock = FakeClock(monkeypatch, utcnow())
    for argv in (["act", number, "accept", "--by", "G01"], ["part", number, "urban_mgmt", "done", "--by", "D01"]):
        code, _, err = await minyi(capsys, "ticket", *argv)
        assert code == 0, err
    first = await ticket_by_number(client, number)
    assert first.closure_due_at is not None
    assert summary(breaches=1) in await sla_tick(capsys, first.closure_due_at)  # late: overdue, 督办·街道
    code, _, err = await minyi(capsys, "ticket", "act", number, "resolve", "--by", "G01", "--note", "已整改")
    assert code == 0, err
    # The resident is dissatisfied; a dispatcher reopens it two days after the deadline.
    clock.at = first.closure_due_at + timedelta(days=2)
    code, _, err = await minyi(capsys, "ticket", "act", number, "reopen", "--by", "D01", "--note", "群众反映油烟依旧")
    assert code == 0, err
    reopened = await ticket_by_number(client, number)
    services = services_of(client)
    category = services.router.taxonomy.categories[reopened.category]
    expected = services.sla.schedule(clock.at, reopened.urgency, category.sla_class)
    assert (reopened.response_due_at, reopened.closure_due_at) == (expected["response_due_at"],
                                                                   expected["closure_due_at"])
    assert reopened.accepted_at is None and reopened.resolved_at is None and reopened.handler_id == first.handler_id
    assert (reopened.overdue, reopened.escalation_level, reopened.reopen_count) == (False, 0, 1)
    # The old marks do not hold the new round back: not yet due → nothing; then its own
    # response deadline (nobody has accepted it again) → overdue and 督办·街道 once more.
    assert summary() in await sla_tick(capsys, clock.at + timedelta(minutes=1))
    assert reopened.response_due_at is not None
    assert summary(breaches=1) in await sla_tick(capsys, reopened.response_due_at)
    assert summary() in await sla_tick(capsys, reopened.response_due_at)
    async with services_of(client).db.session() as s:
        rounds = (await s.exec(select(SlaMark.round, SlaMark.kind, SlaMark.clock, SlaMark.level)
                               .where(SlaMark.ticket_id == first.id).order_by(col(SlaMark.id)))).all()
    assert [tuple(r) for r in rounds] == [(0, "warn", "closure", 0), (0, "escalate", "closure", 1),
                                          (1, "warn", "response", 0), (1, "escalate", "response", 1)]


async def test_a_sent_back_ticket_has_no_handler_and_its_response_clock_runs_again(client, sender, new_openid,
                                                                                     cli_env, capsys):
    """退回: the grid worker sends it back; the dispatcher re-routes it to another grid. It
    has no handler (the old one is not warned), and the new grid must accept in time."""
    await add_supervisors(client)
    number = await report(sender, await follow(sender, new_openid()), FUMES)
    for argv in (["accept", "--by", "G01"], ["send_back", "--by", "G01", "--note", "不属于本网格"],
                 ["dispatch", "--by", "D01", "--grid", "420199001001002"]):
        code, _, err = await minyi(capsys, "ticket", "act", number, *argv)
        assert code == 0, err
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.handler_id, ticket.accepted_at) == ("dispatched", None, None)
    assert ticket.response_warn_at is not None and ticket.response_due_at is not None
    start = await last_outbox_id(client)
    assert summary(warnings=1) in await sla_tick(capsys, ticket.response_warn_at)
    told = [openid for openid, _ in await rows_after(client, start)]
    assert GRID_WORKER not in told and "o-demo-grid-02" in told  # G02, 枫林第二网格


async def test_a_reopened_ticket_re_routed_keeps_its_new_deadlines(client, sender, new_openid, cli_env, capsys,
                                                                    monkeypatch):
    number = await report(sender, await follow(sender, new_openid()), FUMES)
    clock = FakeClock(monkeypatch, utcnow())
    for argv in (["act", number, "accept", "--by", "G01"], ["part", number, "urban_mgmt", "done", "--by", "D01"],
                 ["act", number, "resolve", "--by", "G01", "--note", "已整改"]):
        code, _, err = await minyi(capsys, "ticket", *argv)
        assert code == 0, err
    clock.at += timedelta(days=10)  # long after the first deadlines
    for argv in (["reopen", "--by", "D01"], ["dispatch", "--by", "D01", "--category", "odor"]):
        code, _, err = await minyi(capsys, "ticket", "act", number, *argv)
        assert code == 0, err
    ticket = await ticket_by_number(client, number)
    services = services_of(client)
    expected = services.sla.schedule(clock.at, ticket.urgency, services.router.taxonomy.categories["odor"].sla_class)
    assert ticket.category == "odor" and ticket.clock_started_at is not None
    assert (ticket.response_due_at, ticket.closure_due_at) == (expected["response_due_at"], expected["closure_due_at"])
    assert summary() in await sla_tick(capsys, clock.at + timedelta(minutes=1))  # not overdue at once
