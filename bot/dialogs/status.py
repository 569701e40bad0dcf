"""我的诉求: the resident's tickets and one ticket's timeline (own tickets only)."""

from __future__ import annotations

import re

from bot.clock import format_local
from bot.dialogs import texts
from bot.dialogs.session import Session
from bot.casework.queries import events_of, find_ticket, tickets_of
from bot.casework.actors import STAFF_PREFIX
from bot.wechat.inbound import Inbound

TICKET_NUMBER = re.compile(r"\b(\d{8}-\d{4})\b")


async def my_tickets(msg: Inbound, session: Session) -> str:
    rows = await tickets_of(session.db, session.resident.openid, session.settings.dialog.status_list_length)
    if not rows:
        return texts.NO_TICKETS
    workflow, taxonomy = session.services.workflow, session.services.router.taxonomy
    lines = [texts.TICKET_LIST_HEAD]
    for index, ticket in enumerate(rows, 1):
        category = taxonomy.categories.get(ticket.category)
        lines.append(texts.TICKET_LIST_ITEM.format(
            index=index, number=ticket.number, status=workflow.label(ticket.status),
            category=category.name if category else ticket.category, created=format_local(ticket.created_at)))
    lines.append(texts.TICKET_LIST_TAIL)
    return "\n".join(lines)


async def query(msg: Inbound, session: Session) -> str:
    """A status question in everyday words: one ticket when it names a number, else the list."""
    number = session.services.intents.ticket_number(msg.content)
    return await ticket_detail(number, session) if number else await my_tickets(msg, session)


async def ticket_detail(number: str, session: Session) -> str:
    ticket = await find_ticket(session.db, number)
    if ticket is None or ticket.openid != session.resident.openid:
        # The same answer whether it exists or not: numbers are no key to others' reports.
        return texts.OTHERS_TICKET
    workflow, taxonomy = session.services.workflow, session.services.router.taxonomy
    timeline, notes = [], []
    for event in await events_of(session.db, ticket.id or 0):
        if event.to_status and event.to_status != event.from_status:  # a move, not a note on the way
            timeline.append(f"· {format_local(event.at)} {workflow.label(event.to_status)}")
        if event.to_status and event.note and event.actor.startswith(STAFF_PREFIX):  # staff's own words
            notes.append(f"· {event.note}")
    summary = ticket.description if len(ticket.description) <= 80 else ticket.description[:80] + "…"
    detail = texts.TICKET_DETAIL.format(number=ticket.number, status=workflow.label(ticket.status),
                                        category=taxonomy.label(ticket.category), summary=summary,
                                        timeline="\n".join(timeline))
    return detail + "\n" + texts.TICKET_NOTES.format(notes="\n".join(notes)) if notes else detail
