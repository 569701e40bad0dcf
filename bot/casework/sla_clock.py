"""The SLA clock: the bookkeeping as a ticket moves, and the tick that warns and escalates.

A pause (a state whose clock is "paused", e.g. waiting for the resident) stops the clock:
every deadline and warning point moves on by the time paused when the ticket leaves it
(`on_move`), so the tick compares plain columns with the time.

`tick` runs every minute in the leader (bot/sla_jobs.py). For the tickets in a state whose
clock runs, two clocks: response (接单) while nobody has accepted the ticket, closure (办结)
until it leaves the running states. At a clock's warning point its handler is warned
(超时预警); at its deadline the ticket is marked overdue and escalated (督办) to the first
level of sla.toml [escalation] levels, and one level further every `interval` after. Every
warning and escalation is an `SlaMark` row inserted by a set-based INSERT … SELECT … ON
CONFLICT DO NOTHING RETURNING: only the rows actually inserted get their notices, events
and changes, in the same transaction, so a tick is idempotent on any number of workers.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import bindparam, case as sql_case, insert, literal_column, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.casework.actors import SYSTEM_CODE
from bot.casework.areas import AreaDirectory, AreaNode
from bot.casework.context import Casework
from bot.casework.notify import members, notice_rows, notices_of, ticket_fields
from bot.casework.workflow import Workflow
from bot.clock import format_local
from storage.models import SlaMark, Staff, Ticket, TicketChange, TicketEvent
from storage.outbox_rows import insert_rows

log = logging.getLogger(__name__)

RUNNING = "running"
PAUSED = "paused"
# The columns a pause moves on.
CLOCK_COLUMNS = ("response_due_at", "closure_due_at", "response_warn_at", "closure_warn_at")
# SlaMark kinds.
WARNING_NOTICE = "sla_warning"  # notice kinds of config/notices.toml
ESCALATION_NOTICE = "escalation"
WARN = "warn"
ESCALATE = "escalate"
# Ticket fields the tick changes (TicketChange.field).
OVERDUE = "overdue"
ESCALATION_LEVEL = "escalation_level"
# Ticks serialise on PostgreSQL (pg_advisory_xact_lock): a second tick waits, then finds
# everything marked, instead of two inserts waiting on each other's marks.
_TICK_LOCK = 0x5A5C10C0
_CHUNK = 500  # ids per IN list when the marked tickets are read

_T = Ticket.__table__  # type: ignore[attr-defined]
_M = SlaMark.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Clock:
    name: str  # SlaMark.clock
    label: str  # 接单 / 办结, in notices
    warn_column: str
    due_column: str
    until_accepted: bool  # runs only while accepted_at is empty
    urge: str  # what the warned handler is asked to do


CLOCKS = (
    Clock("response", "接单", "response_warn_at", "response_due_at", True, "请尽快接单"),
    Clock("closure", "办结", "closure_warn_at", "closure_due_at", False, "请抓紧处置，按时办结"),
)


@dataclass(frozen=True)
class Check:
    """One kind of mark on one clock: a warning (level 0) or an escalation level."""

    clock: Clock
    kind: str
    level: int = 0


@dataclass(frozen=True)
class TickResult:
    at: datetime
    warnings: int  # 超时预警 sent
    breaches: int  # clocks newly past their deadline (escalation level 1, ticket marked overdue)
    escalations: int  # escalations above level 1 (督办升级)
    notices: int  # outbox rows queued

    @property
    def marks(self) -> int:
        return self.warnings + self.breaches + self.escalations


@dataclass(frozen=True)
class _Mark:
    id: int
    ticket_id: int
    check: Check
    round: int = 0


def on_move(workflow: Workflow, ticket: Ticket, after: str, now: datetime) -> None:
    paused = after in workflow.states_with_clock(PAUSED)
    if paused and ticket.paused_since is None:
        ticket.paused_since = now
    elif not paused and ticket.paused_since is not None:
        held = now - ticket.paused_since
        for column in CLOCK_COLUMNS:
            due = getattr(ticket, column)
            if due is not None:
                setattr(ticket, column, due + held)
        ticket.paused_seconds = (ticket.paused_seconds or 0) + int(held.total_seconds())
        ticket.paused_since = None


# ---------------------------------------------------------------- the tick

def checks(levels: int) -> list[Check]:
    """Every mark the tick looks for: a warning and each escalation level, per clock."""
    out: list[Check] = []
    for clock in CLOCKS:
        out.append(Check(clock, WARN))
        out += [Check(clock, ESCALATE, level) for level in range(1, levels + 1)]
    return out


def _codes(codes: Iterable[str]) -> list[Any]:
    """Config codes written into the SQL (the statement is compiled once)."""
    out: list[Any] = []
    for code in codes:
        assert re.fullmatch(r"[a-z_]+", code), code
        out.append(literal_column(f"'{code}'"))
    return out


def due_condition(check: Check, running: tuple[str, ...]) -> list[Any]:
    """The WHERE of a check: plain comparisons of indexed columns with bound instants
    (`now`; `before` = now − (level − 1) × interval). A duplicate report is handled, and
    escalated, through its original. (A warning point passed together with the deadline
    is marked without a notice: see `_plan`; a `due > now` here would tempt SQLite into
    the deadline's index.)"""
    where = [_T.c.status.in_(_codes(running)), _T.c.duplicate_of_id.is_(None)]
    if check.clock.until_accepted:
        where.append(_T.c.accepted_at.is_(None))
    if check.kind == WARN:
        where.append(_T.c[check.clock.warn_column] <= bindparam("now", type_=_T.c.created_at.type))
    else:
        where.append(_T.c[check.clock.due_column] <= bindparam("before", type_=_T.c.created_at.type))
    return where


@functools.cache
def _mark_statement(dialect: str, running: tuple[str, ...], check: Check) -> Any:
    """INSERT INTO sla_mark SELECT … FROM ticket WHERE … ON CONFLICT DO NOTHING RETURNING."""
    instant = bindparam("now", type_=_M.c.at.type)
    chosen = select(_T.c.id, _T.c.reopen_count, *_codes((check.kind, check.clock.name)),
                    literal_column(str(int(check.level))), instant).where(*due_condition(check, running))
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # A reopened ticket (reopen_count + 1) is a new round: its clocks warn and escalate anew.
    return (insert_(_M).from_select(["ticket_id", "round", "kind", "clock", "level", "at"], chosen)
            .on_conflict_do_nothing(index_elements=["ticket_id", "round", "kind", "clock", "level"])
            .returning(_M.c.id, _M.c.ticket_id, _M.c.round))


_TICKET_COLUMNS = (_T.c.id, _T.c.number, _T.c.status, _T.c.category, _T.c.urgency, _T.c.area_code,
                   _T.c.department, _T.c.handler_id, _T.c.overdue, _T.c.escalation_level,
                   _T.c.response_due_at, _T.c.closure_due_at, _T.c.accepted_at, _T.c.appeal_type,
                   _T.c.description, _T.c.reopen_count)
_MARK_NODE = update(_M).where(_M.c.id == bindparam("mark_id")).values(area_code=bindparam("node"))
_RAISE = update(_T).where(_T.c.id == bindparam("ticket"), _T.c.reopen_count == bindparam("round")).values(
    overdue=True, escalation_level=sql_case((_T.c.escalation_level < bindparam("level"), bindparam("level")),
                                            else_=_T.c.escalation_level))
_INSERT_EVENTS = insert(TicketEvent).returning(TicketEvent.id, sort_by_parameter_order=True)  # type: ignore[arg-type, call-overload]


async def tick(case: Casework, now: datetime) -> TickResult:
    """Make the warnings and escalations due at `now`, with their notices, audit events
    and ticket changes, in one transaction."""
    running = case.workflow.states_with_clock(RUNNING)
    escalation = case.sla.escalation
    async with case.db.transaction() as session:
        connection = await session.connection()
        dialect = connection.dialect.name
        if dialect == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _TICK_LOCK})
        marks: list[_Mark] = []
        for check in checks(len(escalation.levels)):
            instants = {"now": now, "before": now - escalation.interval * max(check.level - 1, 0)}
            rows = (await connection.execute(_mark_statement(dialect, running, check), instants)).all()
            marks += [_Mark(row.id, row.ticket_id, check, row.round) for row in rows]
        plan = await _record(case, connection, marks, now) if marks else _Plan()
    if plan.outbox:
        case.outbox.kick()
    result = TickResult(now, plan.warned, sum(m.check.kind == ESCALATE and m.check.level == 1 for m in marks),
                        sum(m.check.kind == ESCALATE and m.check.level > 1 for m in marks), len(plan.outbox))
    if result.marks:
        log.info("SLA tick at %s: %d warnings, %d breaches, %d escalations, %d notices", now.isoformat(),
                 result.warnings, result.breaches, result.escalations, result.notices)
    return result


async def _tickets(connection: AsyncConnection, ids: set[int]) -> dict[int, Any]:
    found: dict[int, Any] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start:start + _CHUNK]
        rows = (await connection.execute(select(*_TICKET_COLUMNS).where(_T.c.id.in_(chunk)))).all()
        found |= {row.id: row for row in rows}
    return found


@dataclass
class _Plan:
    """What the marks just made write: notices, the node of each escalation mark, one audit
    event per escalation (with its level) and each ticket's highest level reached."""

    outbox: list[dict] = field(default_factory=list)
    nodes: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    event_levels: list[int] = field(default_factory=list)
    reached: dict[int, int] = field(default_factory=dict)
    warned: int = 0  # warnings sent (not those passed together with their deadline)


async def _record(case: Casework, connection: AsyncConnection, marks: list[_Mark], now: datetime) -> _Plan:
    tickets = await _tickets(connection, {m.ticket_id for m in marks})
    plan = _plan(case, marks, tickets, now)
    if plan.nodes:
        await connection.execute(_MARK_NODE, plan.nodes)
    if plan.events:
        event_ids = (await connection.execute(_INSERT_EVENTS, plan.events)).scalars().all()
        await connection.execute(_RAISE, [{"ticket": tid, "level": level, "round": tickets[tid].reopen_count}
                                          for tid, level in plan.reached.items()])
        changes = _changes(plan, tickets, list(event_ids), now)
        if changes:
            await connection.execute(insert(TicketChange), changes)
    await insert_rows(connection, plan.outbox)
    return plan


def _plan(case: Casework, marks: list[_Mark], tickets: dict[int, Any], now: datetime) -> _Plan:
    staff: dict[int, Staff] = {person.id: person for person in case.org.staff if person.id is not None}
    plan = _Plan()
    for mark in marks:
        ticket, check = tickets[mark.ticket_id], mark.check
        if mark.round != ticket.reopen_count:
            # Marked from a snapshot taken before a reopen committed (PostgreSQL): that
            # round is over, its new deadlines lie ahead. Nothing to tell or raise.
            continue
        if check.kind == WARN:
            if getattr(ticket, check.clock.due_column) > now:  # else the escalation tells
                plan.outbox += _warning_rows(case, ticket, check.clock, staff, now)
                plan.warned += 1
            continue
        node = escalation_node(case.areas, ticket.area_code, case.sla.escalation.levels[check.level - 1])
        if node is not None:
            plan.nodes.append({"mark_id": mark.id, "node": node.code})
        plan.outbox += _escalation_rows(case, ticket, check, node, staff, now)
        plan.events.append(_event(case, ticket, check, node, now))
        plan.event_levels.append(check.level)
        plan.reached[ticket.id] = max(plan.reached.get(ticket.id, 0), check.level)
    return plan


def _changes(plan: _Plan, tickets: dict[int, Any], event_ids: list[int], now: datetime) -> list[dict]:
    """overdue and escalation_level as they changed, each beside the event of the highest
    level the ticket reached in this tick."""
    event_of: dict[int, tuple[int, int]] = {}  # ticket id → (level, event id)
    for event, level, event_id in zip(plan.events, plan.event_levels, event_ids):
        if level >= event_of.get(event["ticket_id"], (0, 0))[0]:
            event_of[event["ticket_id"]] = (level, event_id)
    changes: list[dict] = []
    for tid, level in plan.reached.items():
        ticket = tickets[tid]
        row = {"ticket_id": tid, "event_id": event_of[tid][1], "actor": SYSTEM_CODE, "at": now}
        if not ticket.overdue:
            changes.append({**row, "field": OVERDUE, "old_value": str(False), "new_value": str(True)})
        if level > ticket.escalation_level:
            changes.append({**row, "field": ESCALATION_LEVEL, "old_value": str(ticket.escalation_level),
                            "new_value": str(level)})
    return changes


def escalation_node(areas: AreaDirectory, area_code: str | None, level: str) -> AreaNode | None:
    """The ticket's nearest ancestor of an area level; a ticket with no grid (not located)
    goes to the only node of that level when the tree has exactly one."""
    if area_code:
        return next((node for node in areas.ancestors(area_code) if node.level == level), None)
    only = areas.children(None, level)
    return only[0] if len(only) == 1 else None


# ---------------------------------------------------------------- notices

def _span(length: timedelta) -> str:
    """'2天3小时', '4小时48分钟', '不到1分钟'."""
    minutes = int(length.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}天" if days else "", f"{hours}小时" if hours else "", f"{minutes}分钟" if minutes and not days else ""]
    return "".join(parts) or "不到1分钟"


def warn_recipients(case: Casework, ticket: Any, staff: dict[int, Staff]) -> list[Staff]:
    """The handler; with none (or no longer active), the recipient group of config/notices.toml
    the ticket's state notifies (the dispatchers of its node when it waits in triage, its
    grid worker and department liaisons when dispatched) — the same people its arrival told."""
    handler = staff.get(ticket.handler_id) if ticket.handler_id is not None else None
    if handler is not None:
        return [handler]
    group = case.workflow.notifies(ticket.status) or notices_of(case).arrival_otherwise
    return [person for person, _why in members(case, ticket, group)]


def _warning_rows(case: Casework, ticket: Any, clock: Clock, staff: dict[int, Staff], now: datetime) -> list[dict]:
    due = getattr(ticket, clock.due_column)
    fields = {**ticket_fields(case, ticket), "clock": clock.label, "due": format_local(due),
              "left": _span(due - now), "urge": clock.urge}
    return notice_rows(case, WARNING_NOTICE, _reachable(warn_recipients(case, ticket, staff)), fields)


def _escalation_rows(case: Casework, ticket: Any, check: Check, node: AreaNode | None, staff: dict[int, Staff],
                     now: datetime) -> list[dict]:
    if node is None:
        log.warning("SLA escalation of %s to level %d: the ticket has no %s node", ticket.number, check.level,
                    case.sla.escalation.levels[check.level - 1])
        return []
    escalation = case.sla.escalation
    people = [p for p in case.org.staff if p.role == escalation.role and p.area_code == node.code]
    return notice_rows(case, ESCALATION_NOTICE, _reachable(people), escalation_fields(case, ticket, check, staff, now))


def _reachable(people: Iterable[Staff]) -> list[Staff]:
    """Each person once; staff without WeChat are skipped (notice_rows skips them too)."""
    return list({p.openid: p for p in people if p.openid}.values())


def escalation_fields(case: Casework, ticket: Any, check: Check, staff: dict[int, Staff],
                      now: datetime) -> dict[str, str]:
    due = getattr(ticket, check.clock.due_column)
    handler = staff.get(ticket.handler_id) if ticket.handler_id is not None else None
    escalation = case.sla.escalation
    return {**ticket_fields(case, ticket), "clock": check.clock.label, "due": format_local(due),
            "late": f"，已超时{_span(now - due)}" if now - due >= timedelta(minutes=1) else "",
            "action": escalation.action_label, "level": escalation.label(check.level),
            "handler": f"{handler.name}（{handler.login or handler.id}）" if handler is not None else "未接单"}


def _event(case: Casework, ticket: Any, check: Check, node: AreaNode | None, now: datetime) -> dict:
    escalation = case.sla.escalation
    target = node.name if node is not None else "未设置该级网格节点，未通知"
    note = f"{check.clock.label}时限已过，{escalation.action_label}·{escalation.label(check.level)}（{target}）"
    return {"ticket_id": ticket.id, "at": now, "action": escalation.action, "from_status": ticket.status,
            "to_status": ticket.status, "actor": SYSTEM_CODE, "note": note}
