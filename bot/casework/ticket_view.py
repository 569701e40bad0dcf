"""Everything the console's ticket page (and the API's ticket) shows, read in one place:
the ticket, its timeline of events with their structured changes, attachments, the
joint-dispatch parts, ratings, related tickets, the grid's polygon, the deadline and
what the viewer may do. The caller checks `rights.refusal(…, VIEW)` first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.casework import rights
from bot.casework.actors import STAFF_PREFIX, Actor
from bot.casework.context import Casework
from bot.casework.countdown import Countdown, countdown
from storage.models import Area, Attachment, Rating, Ticket, TicketChange, TicketEvent, TicketPart


@dataclass
class TimelineEntry:
    event: TicketEvent
    actor_label: str
    action_label: str
    changes: list[TicketChange] = field(default_factory=list)
    internal: bool = False  # a staff-only note, never sent to the resident


@dataclass
class TicketView:
    ticket: Ticket
    countdown: Countdown
    timeline: list[TimelineEntry]
    attachments: list[Attachment]
    parts: list[TicketPart]
    ratings: list[Rating]
    original: Ticket | None  # the ticket this one duplicates
    duplicates: list[Ticket]  # other residents' reports linked to this one
    repeat_of: Ticket | None  # the same resident's earlier open ticket (二次投诉)
    repeats: list[Ticket]
    polygon: list[list[float]] | None  # [[lng, lat], …] of the ticket's grid
    handler_label: str | None
    actions: list[tuple[str, str]]  # (action, Chinese label) the viewer may take now
    part_actions: list[PartAction] = field(default_factory=list)  # joint-dispatch part actions they may take


@dataclass(frozen=True)
class PartAction:
    """A part action the viewer may take now: on `department`'s part, the part
    transition `word` (as `minyi ticket part NUMBER DEPT WORD`)."""

    department: str
    department_name: str
    word: str
    label: str


# Event actions that are not workflow transitions, with their Chinese names.
EVENT_LABELS = {"create": "群众反映", "recategorize": "改分类", "relocate": "改网格", "repeat": "二次投诉",
                "link_duplicate": "并入同一问题", "urge": "催办", "supplement": "群众补充", "comment": "内部备注",
                "supervise": "督办", "escalate": "升级督办", "sla_warning": "超时预警", "merge": "合并重复",
                "locate": "补充位置", "legal_basis": "紧急处理依据"}
INTERNAL_EVENTS = frozenset({"comment"})
# TicketChange fields (bot/casework/changes.py, sla_clock.py), in Chinese.
FIELD_LABELS = {"status": "状态", "category": "分类", "department": "承办部门", "area_code": "网格",
                "urgency": "紧急程度", "handler_id": "处理人", "overdue": "超时", "escalation_level": "督办级别"}


def actor_label(case: Casework, code: str) -> str:
    if code.startswith(STAFF_PREFIX) and code[len(STAFF_PREFIX):].isdigit():
        staff = case.org.record(int(code[len(STAFF_PREFIX):]))
        if staff is not None:
            return Actor.of_staff(staff).label
    return case.org.rights.actors[code].label if code in case.org.rights.actors else code


def change_value(case: Casework, field_name: str, value: str | None) -> str:
    """A TicketChange value as people read it: names for codes and staff ids."""
    if value is None or value == "":
        return "—"
    if field_name == "handler_id" and value.isdigit():
        return actor_label(case, f"{STAFF_PREFIX}{value}")
    if field_name == "status":
        return case.workflow.label(value)
    if field_name == "category":
        return case.router.taxonomy.label(value)
    if field_name == "department":
        return case.router.taxonomy.department_name(value) or value
    if field_name == "area_code":
        return case.areas.full_name(value) or value
    return {"True": "是", "False": "否"}.get(value, value)


def event_label(case: Casework, action: str) -> str:
    """The Chinese name of an event: a workflow, part or extra action, the SLA escalation,
    or one of EVENT_LABELS."""
    if action in case.workflow.transitions or action in case.org.rights.extra_actions:
        return rights.action_label(case, action)
    if action == case.sla.escalation.action:
        return case.sla.escalation.action_label
    return EVENT_LABELS.get(action) or rights.action_label(case, action)


def available_actions(case: Casework, actor: Actor, ticket: Ticket) -> list[tuple[str, str]]:
    """The workflow actions the viewer may take on the ticket in its state now."""
    found = []
    for action, transition in case.workflow.transitions.items():
        if ticket.status in transition.sources and rights.may(case, actor, ticket, action):
            found.append((action, transition.label))
    return found


def available_part_actions(case: Casework, actor: Actor, ticket: Ticket, parts: list[TicketPart]) -> list[PartAction]:
    found = []
    for part in parts:
        for word, transition in case.parts.transitions.items():
            if part.status in transition.sources and rights.may(case, actor, ticket, transition.action,
                                                                 part=part.department):
                found.append(PartAction(part.department, case.router.taxonomy.department_name(part.department),
                                        word, transition.label))
    return found


async def _related(session: AsyncSession, ticket: Ticket) -> tuple[Ticket | None, list[Ticket], Ticket | None, list[Ticket]]:
    ids = [i for i in (ticket.duplicate_of_id, ticket.repeat_of_id) if i is not None]
    statement = select(Ticket).where(or_(col(Ticket.duplicate_of_id) == ticket.id, col(Ticket.repeat_of_id) == ticket.id,
                                         col(Ticket.id).in_(ids)))
    rows = list((await session.exec(statement.order_by(col(Ticket.id)))).all())
    by_id = {t.id: t for t in rows}
    return (by_id.get(ticket.duplicate_of_id), [t for t in rows if t.duplicate_of_id == ticket.id],
            by_id.get(ticket.repeat_of_id), [t for t in rows if t.repeat_of_id == ticket.id])


async def ticket_view(case: Casework, session: AsyncSession, actor: Actor, ticket: Ticket, now: datetime) -> TicketView:
    events = list((await session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                                      .order_by(col(TicketEvent.id)))).all())
    changes = list((await session.exec(select(TicketChange).where(TicketChange.ticket_id == ticket.id)
                                       .order_by(col(TicketChange.id)))).all())
    by_event: dict[int | None, list[TicketChange]] = {}
    for change in changes:
        by_event.setdefault(change.event_id, []).append(change)
    timeline = [TimelineEntry(e, actor_label(case, e.actor), event_label(case, e.action), by_event.get(e.id, []),
                              e.action in INTERNAL_EVENTS) for e in events]
    attachments = list((await session.exec(select(Attachment).where(Attachment.ticket_id == ticket.id)
                                           .order_by(col(Attachment.id)))).all())
    parts = list((await session.exec(select(TicketPart).where(TicketPart.ticket_id == ticket.id)
                                     .order_by(col(TicketPart.id)))).all())
    ratings = list((await session.exec(select(Rating).where(Rating.ticket_id == ticket.id)
                                       .order_by(col(Rating.round)))).all())
    original, duplicates, repeat_of, repeats = await _related(session, ticket)
    area = await session.get(Area, ticket.area_code) if ticket.area_code else None
    handler = case.org.record(ticket.handler_id) if ticket.handler_id else None
    return TicketView(ticket, countdown(case.workflow, ticket, now), timeline, attachments, parts, ratings, original,
                      duplicates, repeat_of, repeats, (area.polygon or None) if area else None,
                      Actor.of_staff(handler).label if handler else None, available_actions(case, actor, ticket),
                      available_part_actions(case, actor, ticket, parts))
