"""Staff actions on a ticket: the workflow transitions of config/workflow.toml, with a
re-route (category and/or grid) on the workflow's `reroute_action`, and the notices
each action sends.

One function, `act`, behind every way a ticket is worked (`minyi ticket act`, staff
chat commands, the resident's own answers, the web console to come), so the rights
check, the audit trail, the structured changes the router learns from and the messages
to residents and staff are the same whichever way it was done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, update
from sqlmodel import select

from bot.casework import changes, parts, ratings, rights, sla_clock
from bot.casework.actors import Actor
from bot.casework.context import Casework
from bot.casework.notify import notify_staff, resident_updates
from bot.casework.workflow import WAITING_KIND, InvalidTransition
from bot.clock import utcnow
from storage.models import AuditEntry, Resident, Ticket, TicketChange, TicketEvent
from storage.outbox_rows import insert_rows

RECATEGORIZE = "recategorize"
RELOCATE = "relocate"
REFUSED = "refused"


class DeskError(ValueError):
    """An action that cannot be taken; the message is shown as is (Chinese)."""


class Refused(DeskError):
    """An action the actor has no right to take (audited)."""


@dataclass(frozen=True)
class Done:
    number: str
    from_status: str
    to_status: str
    category: str
    area_code: str | None
    recategorized: bool
    notices: int  # messages queued to staff and residents


async def act(case: Casework, number: str, action: str, actor: Actor, note: str | None = None,
              category: str | None = None, area_code: str | None = None) -> Done:
    """Take `action` on ticket `number` as `actor`, in one transaction (ticket, events,
    changes, notices). `category` / `area_code` re-route it (only the reroute action).
    A refusal is audited in a transaction of its own, then raised."""
    check_request(case, action, category, area_code)
    try:
        async with case.db.transaction() as session:
            done = await act_in(case, session, number, action, actor, note, category, area_code)
    except Refused as exc:
        await audit_refusal(case, actor, action, number, str(exc))
        raise
    if done.notices:
        case.outbox.kick()
    return done


def check_request(case: Casework, action: str, category: str | None, area_code: str | None) -> None:
    workflow = case.workflow
    if action not in workflow.transitions:
        known = "、".join(f"{a}（{t.label}）" for a, t in workflow.transitions.items())
        raise DeskError(f"没有动作 {action}；可用动作：{known}")
    if (category or area_code) and action != workflow.reroute_action:
        raise DeskError(f"只有「{workflow.transitions[workflow.reroute_action].label}」可以改分类或网格")
    if category and category not in case.router.taxonomy.categories:
        raise DeskError(f"没有分类 {category}（分类代码见 config/taxonomy.toml）")
    if area_code and case.areas.nodes.get(area_code) is None:
        raise DeskError(f"没有网格 {area_code}")


async def audit_refusal(case: Casework, actor: Actor, action: str, target: str | None, reason: str) -> None:
    async with case.db.transaction() as session:
        session.add(AuditEntry(at=utcnow(), actor=actor.code, action=action, target=target, outcome=REFUSED,
                               reason=reason[:300]))


async def act_in(case: Casework, session, number: str, action: str, actor: Actor,  # type: ignore[no-untyped-def]
                 note: str | None = None, category: str | None = None, area_code: str | None = None) -> Done:
    """`act` inside the caller's transaction (e.g. a resident's answer handled with its
    message); the caller commits, audits a `Refused` and kicks the outbox."""
    workflow = case.workflow
    now = utcnow()
    # populate_existing: a ticket the session loaded before is refreshed from the locked row.
    ticket = (await session.exec(select(Ticket).where(Ticket.number == number).with_for_update()
                                 .execution_options(populate_existing=True))).first()
    if ticket is None:
        raise DeskError(f"没有工单 {number}")
    before = ticket.status
    try:
        after = workflow.target(before, action)
    except InvalidTransition:
        raise DeskError(f"工单 {number} 当前为「{workflow.label(before)}」，不能「{workflow.transitions[action].label}」") from None
    reason = rights.refusal(case, actor, ticket, action) or await parts.refusal(case, session, ticket, action)
    if not reason and area_code and area_code != ticket.area_code:
        reason = rights.destination_refusal(case, actor, area_code)
    if reason:
        raise Refused(reason)
    snapshot = changes.snapshot(ticket)
    events = [{"ticket_id": ticket.id, "at": now, "action": action, "from_status": before, "to_status": after,
               "actor": actor.code, "note": note}]
    rerouted = _reroute(case, ticket, category, area_code, actor.code, now)
    for event in rerouted:
        events.append({**event, "from_status": after, "to_status": after})
    if workflow.transitions[action].restarts_clock:
        _restart_clock(case, ticket, now)
    _move(case, ticket, after, actor, now)
    session.add(ticket)
    await session.flush()
    # Whoever must now act is told: dispatchers when it lands in triage, the grid and
    # department when it is (re)dispatched somewhere new or reopened.
    queued_anew = bool(workflow.notifies(after)) and (after != before or bool(rerouted))
    rows = notify_staff(case, ticket) if queued_anew else []
    if after != before or rerouted:
        rows += await resident_updates(case, session, ticket, after, note)
    rows += await parts.on_move(case, session, ticket, before, after, actor, now)
    rows += await ratings.on_move(case, session, ticket, before, after, actor, now)
    connection = await session.connection()
    event_ids = (await connection.execute(insert(TicketEvent).returning(TicketEvent.id, sort_by_parameter_order=True),  # type: ignore[arg-type, call-overload]
                                           events)).scalars().all()
    changed = changes.rows(ticket, snapshot, actor.code, now, event_ids[0])
    if changed:
        await connection.execute(insert(TicketChange), changed)
    await insert_rows(connection, rows)
    if after in workflow.states_of_kind(WAITING_KIND):  # the resident's next message is looked at as the answer
        await connection.execute(update(Resident.__table__).where(Resident.__table__.c.openid == ticket.openid)  # type: ignore[attr-defined]
                                 .values(awaiting_answer_since=now))
    recategorized = any(e["action"] == RECATEGORIZE for e in rerouted)
    return Done(number, before, after, ticket.category, ticket.area_code, recategorized, len(rows))


def _reroute(case: Casework, ticket: Ticket, category: str | None, area_code: str | None, actor: str,
             now: datetime) -> list[dict]:
    """Change the ticket's category (department, co-departments, SLA deadlines counted
    from the clock's start: creation, or the last reopen) and grid; the audit events."""
    events: list[dict] = []
    if category and category != ticket.category:
        events.append({"ticket_id": ticket.id, "at": now, "action": RECATEGORIZE, "actor": actor,
                       "note": f"{ticket.category} → {category}"})
        chosen = case.router.taxonomy.categories[category]
        ticket.category, ticket.department = category, chosen.department
        ticket.co_departments = list(chosen.co_departments)
        # Urgency as routing would give it with this category: the category's default,
        # raised by danger words in the report; the deadlines follow, counted from creation
        # (plus any time paused).
        urgency = case.router.urgency
        detected = urgency.detect(ticket.description).level
        ticket.urgency = max(chosen.urgency, detected, key=urgency.rank)
        schedule = case.sla.schedule(ticket.clock_started_at or ticket.created_at, ticket.urgency, chosen.sla_class)
        paused = timedelta(seconds=ticket.paused_seconds or 0)  # a pause in progress is added at its end
        for column, due in schedule.items():
            setattr(ticket, column, due + paused)
    if area_code and area_code != ticket.area_code:
        events.append({"ticket_id": ticket.id, "at": now, "action": RELOCATE, "actor": actor,
                       "note": f"{ticket.area_code or '未定位'} → {area_code}"})
        ticket.area_code = area_code
    return events


def _restart_clock(case: Casework, ticket: Ticket, now: datetime) -> None:
    """A reopened ticket: deadlines from now, to be accepted (and resolved) again, no
    longer overdue; the SLA marks of its next round (reopen_count) are new."""
    category = case.router.taxonomy.categories.get(ticket.category)
    for column, due in case.sla.schedule(now, ticket.urgency, category.sla_class if category else None).items():
        setattr(ticket, column, due)
    ticket.clock_started_at = now
    ticket.accepted_at = ticket.resolved_at = ticket.paused_since = None
    ticket.paused_seconds, ticket.overdue, ticket.escalation_level = 0, False, 0


def _move(case: Casework, ticket: Ticket, status: str, actor: Actor, now: datetime) -> None:
    """The new status, the column the state stamps, the handler who accepted it, the
    SLA pause bookkeeping, and closed_at (cleared on a reopen)."""
    workflow = case.workflow
    ticket.status, ticket.updated_at = status, now
    stamp = workflow.stamp(status)
    if stamp and getattr(ticket, stamp) is None:
        setattr(ticket, stamp, now)
    state = workflow.states[status]
    if state.takes_handler and actor.staff is not None:
        ticket.handler_id = actor.staff.id  # whoever accepts it handles it
    elif state.releases_handler:  # sent back: whoever it goes to next accepts it anew
        ticket.handler_id = ticket.accepted_at = None
    sla_clock.on_move(workflow, ticket, status, now)
    if workflow.is_open(status):
        ticket.closed_at = None  # reopened
    elif ticket.closed_at is None:
        ticket.closed_at = now
