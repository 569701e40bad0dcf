"""Staff actions on a ticket: the workflow transitions of config/workflow.toml, with a
re-route (category and/or grid) on `dispatch`, and the notices each action sends.

One function, `act`, behind every way staff work a ticket (`minyi ticket act`, and the
web console to come), so the audit trail, the labels the router learns from and the
messages to residents and staff are the same whichever way it was done. A re-route is
recorded as a `recategorize` event whose note ends with the new category code: the
nightly retraining (bot.retrain) reads those as labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, update
from sqlmodel import col, select

from bot.clock import utcnow
from bot.services import Services
from bot.tickets import notify_staff
from bot.wechat.outbox import insert_rows
from bot.workflow import InvalidTransition
from storage.models import Resident, Ticket, TicketEvent

RECATEGORIZE = "recategorize"
REROUTE_ACTION = "dispatch"
# When a ticket reaches one of these states, the matching timestamp is set (once).
STAMPS = {"accepted": "accepted_at", "resolved": "resolved_at"}
# States whose arrival queues the ticket with someone new (bot.tickets.notify_staff).
NOTIFY_ON = ("triage", "dispatched")


class DeskError(ValueError):
    """An action staff cannot take; the message is shown to them as is (Chinese)."""


@dataclass(frozen=True)
class Done:
    number: str
    from_status: str
    to_status: str
    category: str
    area_code: str | None
    recategorized: bool
    notices: int  # messages queued to staff and residents


async def act(services: Services, number: str, action: str, actor: str, note: str | None = None,
              category: str | None = None, area_code: str | None = None) -> Done:
    """Take `action` on ticket `number` as `actor`, in one transaction (ticket, events,
    notices). `category` / `area_code` re-route it; only `dispatch` (分拨/改派) may."""
    workflow, taxonomy = services.workflow, services.router.taxonomy
    if action not in workflow.transitions:
        known = "、".join(f"{a}（{t.label}）" for a, t in workflow.transitions.items())
        raise DeskError(f"没有动作 {action}；可用动作：{known}")
    if (category or area_code) and action != REROUTE_ACTION:
        raise DeskError(f"只有「{workflow.transitions[REROUTE_ACTION].label}」可以改分类或网格")
    if category and category not in taxonomy.categories:
        raise DeskError(f"没有分类 {category}（分类代码见 config/taxonomy.toml）")
    if area_code and services.areas.nodes.get(area_code) is None:
        raise DeskError(f"没有网格 {area_code}")
    async with services.db.transaction() as session:
        done = await act_in(services, session, number, action, actor, note, category, area_code)
    if done.notices:
        services.outbox.kick()
    return done


async def act_in(services: Services, session, number: str, action: str, actor: str,  # type: ignore[no-untyped-def]
                 note: str | None = None, category: str | None = None, area_code: str | None = None) -> Done:
    """`act` inside the caller's transaction (e.g. a resident's answer handled with its
    message); the caller commits and kicks the outbox."""
    workflow = services.workflow
    now = utcnow()
    ticket = (await session.exec(select(Ticket).where(Ticket.number == number).with_for_update())).first()
    if ticket is None:
        raise DeskError(f"没有工单 {number}")
    before = ticket.status
    try:
        after = workflow.target(before, action)
    except InvalidTransition:
        raise DeskError(f"工单 {number} 当前为「{workflow.label(before)}」，不能「{workflow.transitions[action].label}」") from None
    events = [{"ticket_id": ticket.id, "at": now, "action": action, "from_status": before, "to_status": after,
               "actor": actor, "note": note}]
    rerouted = _reroute(services, ticket, category, area_code, actor, now)
    for event in rerouted:
        events.append({**event, "from_status": after, "to_status": after})
    _move(services, ticket, after, now)
    session.add(ticket)
    await session.flush()
    # Whoever must now act is told: dispatchers when it lands in triage, the grid and
    # department when it is (re)dispatched somewhere new or reopened.
    queued_anew = after in NOTIFY_ON and (after != before or bool(rerouted))
    rows = notify_staff(services, ticket) if queued_anew else []
    if after != before or rerouted:
        rows += await _resident_updates(services, session, ticket, after, note)
    connection = await session.connection()
    await connection.execute(insert(TicketEvent), events)
    await insert_rows(connection, rows)
    if after in workflow.states_of_kind("waiting"):  # the resident's next message is looked at as the answer
        await connection.execute(update(Resident.__table__).where(Resident.__table__.c.openid == ticket.openid)  # type: ignore[attr-defined]
                                 .values(awaiting_answer_since=now))
    recategorized = any(e["action"] == RECATEGORIZE for e in rerouted)
    return Done(number, before, after, ticket.category, ticket.area_code, recategorized, len(rows))


def _reroute(services: Services, ticket: Ticket, category: str | None, area_code: str | None, actor: str,
             now: datetime) -> list[dict]:
    """Change the ticket's category (department, co-departments, SLA deadlines counted
    from creation) and grid; the audit events of what changed."""
    events: list[dict] = []
    if category and category != ticket.category:
        events.append({"ticket_id": ticket.id, "at": now, "action": RECATEGORIZE, "actor": actor,
                       "note": f"{ticket.category} → {category}"})
        chosen = services.router.taxonomy.categories[category]
        ticket.category, ticket.department = category, chosen.department
        ticket.co_departments = list(chosen.co_departments)
        # Urgency as routing would give it with this category: the category's default,
        # raised by danger words in the report; the deadlines follow, counted from creation.
        urgency = services.router.urgency
        detected = urgency.detect(ticket.description).level
        ticket.urgency = max(chosen.urgency, detected, key=urgency.rank)
        ticket.response_due_at, ticket.closure_due_at = services.sla.deadlines(
            ticket.created_at, ticket.urgency, chosen.sla_class)
    if area_code and area_code != ticket.area_code:
        events.append({"ticket_id": ticket.id, "at": now, "action": "relocate", "actor": actor,
                       "note": f"{ticket.area_code or '未定位'} → {area_code}"})
        ticket.area_code = area_code
    return events


def _move(services: Services, ticket: Ticket, status: str, now: datetime) -> None:
    """The new status and the timestamps reaching it sets (accepted, resolved, closed)."""
    ticket.status, ticket.updated_at = status, now
    stamp = STAMPS.get(status)
    if stamp and getattr(ticket, stamp) is None:
        setattr(ticket, stamp, now)
    if services.workflow.is_open(status):
        ticket.closed_at = None  # reopened
    elif ticket.closed_at is None:
        ticket.closed_at = now


async def _resident_updates(services: Services, session, ticket: Ticket, status: str,  # type: ignore[no-untyped-def]
                            note: str | None) -> list[dict]:
    """A status message to the resident, and to the residents whose reports were linked
    to this ticket as duplicates (they were told it covers theirs)."""
    label = services.workflow.label(status)
    if ticket.department:
        label += f"（{services.router.taxonomy.department_name(ticket.department)}）"
    linked = (await session.exec(select(Ticket.openid, Ticket.number)
                                 .where(col(Ticket.duplicate_of_id) == ticket.id))).all()
    said = f"\n处理说明：{note}" if note else ""
    rows = [services.outbox.text_row(ticket.openid, f"您的诉求 {ticket.number} 状态更新：{label}。{said}",
                                     title=f"工单 {ticket.number} {label}")]
    for openid, own_number in linked:
        if openid != ticket.openid:
            rows.append(services.outbox.text_row(
                openid, f"您反映的问题（{own_number}）与其他群众反映的同一问题一并办理，状态更新：{label}。{said}",
                title=f"工单 {own_number} {label}"))  # never the other resident's number
    return rows
