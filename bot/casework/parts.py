"""Joint dispatch (联合派单): each co-department's part of a ticket.

When a ticket with co-departments arrives in a state whose notify is the [part]
`open_on_notify` group of config/workflow.toml (dispatched: the grid and the lead
department are told), every co-department gets a TicketPart in the initial part state
(once: the table is UNIQUE per ticket and department) and its liaisons are told. A
reopened ticket's finished parts open again. Liaisons of the part's department move
their part (`act_on_part`: `minyi ticket part N DEPT accept|done`), by the rights table's
"part" scope; the lead cannot take a `blocks` action (办结) while a part is not done;
when the last part is done the lead's handler is told.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy import update
from sqlmodel import col, select

from bot.casework import desk, rights
from bot.casework.actors import Actor
from bot.casework.context import Casework
from bot.casework.notify import members, notice_rows, notices_of, ticket_fields
from bot.clock import utcnow
from storage.models import Staff, Ticket, TicketEvent, TicketPart
from storage.outbox_rows import insert_rows

WORKFLOW_FILE = "workflow.toml"
ALL_DONE_TITLE = "协办完成 {number}"
ALL_DONE = "【联合派单·协办完成】{number}\n协办部门（{departments}）均已办结，牵头部门可以办结。"


@dataclass(frozen=True)
class PartState:
    code: str
    label: str
    stamp: str = ""
    done: bool = False


@dataclass(frozen=True)
class PartTransition:
    action: str
    word: str
    sources: frozenset[str]
    target: str
    label: str


@dataclass(frozen=True, eq=False)
class PartPolicy:
    initial: str
    worker_role: str
    open_on_notify: str
    notice: str
    blocks: frozenset[str]
    states: dict[str, PartState]
    transitions: dict[str, PartTransition]  # by word

    @classmethod
    def load(cls, path: Path) -> "PartPolicy":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)["part"]
        states = {s["code"]: PartState(s["code"], s["label"], s.get("stamp", ""), bool(s.get("done", False)))
                  for s in raw["state"]}
        transitions = {t["word"]: PartTransition(t["action"], t["word"], frozenset(t["from"]), t["to"], t["label"])
                       for t in raw["transition"]}
        policy = cls(raw["initial"], raw["worker_role"], raw["open_on_notify"], raw["notice"],
                     frozenset(raw["blocks"]), states, transitions)
        unknown = {policy.initial, *(s for t in transitions.values() for s in (*t.sources, t.target))} - states.keys()
        if unknown or not any(s.done for s in states.values()):
            raise ValueError(f"workflow.toml [part]: unknown part states {sorted(unknown)} or no done state")
        return policy

    @property
    def done_states(self) -> tuple[str, ...]:
        return tuple(sorted(code for code, state in self.states.items() if state.done))

    def label(self, status: str) -> str:
        state = self.states.get(status)
        return state.label if state else status


def policy_of(case: Casework) -> PartPolicy:
    return case.parts


def _department_name(case: Casework, code: str | None) -> str:
    return case.router.taxonomy.department_name(code)


def co_departments(ticket: Ticket) -> list[str]:
    """The ticket's co-departments, each once, never the lead."""
    return [d for d in dict.fromkeys(ticket.co_departments or []) if d and d != ticket.department]


# ---------------------------------------------------------------- the hooks desk.act_in calls

async def refusal(case: Casework, session, ticket: Ticket, action: str) -> str | None:  # type: ignore[no-untyped-def]
    """Why the lead department cannot take `action` yet (parts not done), else None."""
    if action not in policy_of(case).blocks:
        return None
    waiting = await waiting_parts(case, session, ticket)
    if not waiting:
        return None
    names = "、".join(_department_name(case, d) for d in waiting)
    return f"协办部门 {names} 尚未办结，暂不能{case.workflow.transitions[action].label}"


async def waiting_parts(case: Casework, session, ticket: Ticket) -> list[str]:  # type: ignore[no-untyped-def]
    """The co-departments whose part of the ticket is not done yet."""
    departments = co_departments(ticket)
    if not departments:
        return []
    rows = await session.exec(select(TicketPart.department).where(
        TicketPart.ticket_id == ticket.id, col(TicketPart.department).in_(departments),
        col(TicketPart.status).not_in(policy_of(case).done_states)).order_by(col(TicketPart.id)))
    return list(rows.all())


async def on_move(case: Casework, session, ticket: Ticket, before: str, after: str,  # type: ignore[no-untyped-def]
                  actor: Actor, now: datetime) -> list[dict]:
    """Parts opened (or opened again on a reopen) as the ticket reaches the handlers'
    queue; the outbox rows of their notices."""
    if case.workflow.notifies(after) != policy_of(case).open_on_notify:
        return []
    return await open_parts(case, session, ticket, now, reopened=not case.workflow.is_open(before))


async def on_create(case: Casework, session, ticket: Ticket, now: datetime) -> list[dict]:  # type: ignore[no-untyped-def]
    """A ticket created straight into the handlers' queue (bot.casework.tickets): its
    parts, with no look for existing ones (there are none); the notices' rows."""
    if not ticket.co_departments or case.workflow.notifies(ticket.status) != policy_of(case).open_on_notify:
        return []
    return await open_parts(case, session, ticket, now, fresh=True)


@functools.cache
def _insert_part(dialect: str):  # type: ignore[no-untyped-def]
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_(TicketPart).on_conflict_do_nothing(index_elements=["ticket_id", "department"])


async def open_parts(case: Casework, session, ticket: Ticket, now: datetime, *,  # type: ignore[no-untyped-def]
                     fresh: bool = False, reopened: bool = False) -> list[dict]:
    """A part for each co-department that has none; done parts back to the initial state
    when the ticket was reopened. The notices to the liaisons of the parts (re)opened."""
    departments = co_departments(ticket)
    if not departments:
        return []
    policy = policy_of(case)
    existing: dict[str, str] = {}
    if not fresh:
        rows = await session.exec(select(TicketPart.department, TicketPart.status)
                                  .where(TicketPart.ticket_id == ticket.id))
        existing = {department: status for department, status in rows.all()}
    new = [d for d in departments if d not in existing]
    again = [d for d in departments if reopened and existing.get(d) in policy.done_states]
    connection = await session.connection()
    if new:
        await connection.execute(_insert_part(connection.dialect.name), [
            {"ticket_id": ticket.id, "department": d, "status": policy.initial, "created_at": now} for d in new])
    if again:
        await session.exec(update(TicketPart).where(col(TicketPart.ticket_id) == ticket.id,
                                                    col(TicketPart.department).in_(again))
                           .values(status=policy.initial, done_at=None))
    return [row for d in new + again for row in _assigned_rows(case, ticket, d)]


def liaisons(case: Casework, ticket: Ticket, department: str) -> list[Staff]:
    """Active staff of the part worker role in `department` whose area (if any) is the
    ticket's or above it."""
    above = {n.code for n in case.areas.ancestors(ticket.area_code)}
    role = policy_of(case).worker_role
    return [p for p in case.org.staff if p.role == role and p.department == department and p.openid
            and (p.area_code is None or not above or p.area_code in above)]


def _assigned_rows(case: Casework, ticket: Ticket, department: str) -> list[dict]:
    fields = {**ticket_fields(case, ticket), "department": _department_name(case, department),
              "lead": _department_name(case, ticket.department)}
    return notice_rows(case, policy_of(case).notice, liaisons(case, ticket, department), fields)


# ---------------------------------------------------------------- working a part

@dataclass(frozen=True)
class PartDone:
    number: str
    department: str
    from_status: str
    to_status: str
    all_done: bool
    notices: int


def department_code(case: Casework, given: str) -> str:
    """A department by code or Chinese name (config/taxonomy.toml)."""
    names = case.router.taxonomy.departments
    given = given.strip()
    return given if given in names else next((code for code, name in names.items() if name == given), given)


async def act_on_part(case: Casework, number: str, department: str, word: str, actor: Actor,
                      note: str | None = None) -> PartDone:
    """Take the part action `word` (accept / done) on `department`'s part of ticket
    `number`, in one transaction; a refusal is audited in its own, then raised."""
    policy = policy_of(case)
    transition = policy.transitions.get(word)
    if transition is None:
        known = "、".join(f"{w}（{t.label}）" for w, t in policy.transitions.items())
        raise desk.DeskError(f"没有协办动作 {word}；可用：{known}")
    try:
        async with case.db.transaction() as session:
            done = await act_on_part_in(case, session, number, department_code(case, department), transition,
                                        actor, note)
    except desk.Refused as exc:
        await desk.audit_refusal(case, actor, transition.action, number, str(exc))
        raise
    if done.notices:
        case.outbox.kick()
    return done


async def act_on_part_in(case: Casework, session, number: str, department: str,  # type: ignore[no-untyped-def]
                         transition: PartTransition, actor: Actor, note: str | None) -> PartDone:
    """`act_on_part` inside the caller's transaction (the caller audits a Refused)."""
    policy = policy_of(case)
    now = utcnow()
    ticket = (await session.exec(select(Ticket).where(Ticket.number == number).with_for_update()
                                 .execution_options(populate_existing=True))).first()
    if ticket is None:
        raise desk.DeskError(f"没有工单 {number}")
    name = _department_name(case, department)
    part = (await session.exec(select(TicketPart).where(TicketPart.ticket_id == ticket.id,
                                                        TicketPart.department == department))).first()
    if part is None:
        raise desk.DeskError(f"工单 {number} 没有{name}的协办任务")
    if part.status not in transition.sources:
        raise desk.DeskError(f"{name}的协办任务当前为「{policy.label(part.status)}」，不能「{transition.label}」")
    reason = rights.refusal(case, actor, ticket, transition.action, part=department)
    if reason:
        raise desk.Refused(reason)
    before = part.status
    _move_part(policy, part, transition.target, actor, note, now)
    session.add(part)
    session.add(TicketEvent(ticket_id=ticket.id or 0, at=now, action=transition.action, from_status=ticket.status,
                            to_status=ticket.status, actor=actor.code,
                            note=f"{name}：{transition.label}" + (f"，{note}" if note else "")))
    await session.flush()
    rows = await _all_done_rows(case, session, ticket) if policy.states[part.status].done else []
    await insert_rows(await session.connection(), rows)
    all_done = not await waiting_parts(case, session, ticket)
    return PartDone(number, department, before, part.status, all_done, len(rows))


def _move_part(policy: PartPolicy, part: TicketPart, status: str, actor: Actor, note: str | None,
               now: datetime) -> None:
    part.status = status
    stamp = policy.states[status].stamp
    if stamp and getattr(part, stamp) is None:
        setattr(part, stamp, now)
    if actor.staff is not None and part.handler_id is None:
        part.handler_id = actor.staff.id  # the liaison who first works it handles it
    if note:
        part.note = note[:1000]


async def _all_done_rows(case: Casework, session, ticket: Ticket) -> list[dict]:  # type: ignore[no-untyped-def]
    """The lead's handler told once the last part is done."""
    if await waiting_parts(case, session, ticket):
        return []
    departments = "、".join(_department_name(case, d) for d in co_departments(ticket))
    text = ALL_DONE.format(number=ticket.number, departments=departments)
    title = ALL_DONE_TITLE.format(number=ticket.number)
    return [case.outbox.text_row(p.openid, text, title=title) for p in handlers_of(case, ticket) if p.openid]


def handlers_of(case: Casework, ticket: Ticket) -> list[Staff]:
    """Whoever handles the ticket: the staff member who accepted it, else the group told
    of a ticket whose state notifies nobody (its grid and lead department)."""
    handler = case.org.record(ticket.handler_id) if ticket.handler_id else None
    if handler is not None and handler.active and handler.openid:
        return [handler]
    return [person for person, _ in members(case, ticket, notices_of(case).arrival_otherwise)]


async def parts_of(session, ticket_id: int) -> list[TicketPart]:  # type: ignore[no-untyped-def]
    rows = await session.exec(select(TicketPart).where(TicketPart.ticket_id == ticket_id).order_by(col(TicketPart.id)))
    return list(rows.all())
