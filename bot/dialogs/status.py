"""我的诉求: the resident's tickets and one ticket's timeline (own tickets only)."""

from __future__ import annotations

import re

from bot.clock import format_local
from bot.dialogs import texts
from bot.dialogs.session import Session
from bot.tickets import events_of, find_ticket, tickets_of
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


async def ticket_detail(number: str, session: Session) -> str:
    ticket = await find_ticket(session.db, number)
    if ticket is None or ticket.openid != session.resident.openid:
        return texts.TICKET_NOT_FOUND.format(number=number)
    workflow, taxonomy = session.services.workflow, session.services.router.taxonomy
    timeline = []
    for event in await events_of(session.db, ticket.id or 0):
        if event.to_status:
            timeline.append(f"· {format_local(event.at)} {workflow.label(event.to_status)}")
    summary = ticket.description if len(ticket.description) <= 80 else ticket.description[:80] + "…"
    return texts.TICKET_DETAIL.format(number=ticket.number, status=workflow.label(ticket.status),
                                      category=taxonomy.label(ticket.category), summary=summary,
                                      timeline="\n".join(timeline))
