"""Reading tickets: a resident's list, one ticket, its audit trail."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Ticket, TicketEvent


async def tickets_of(session: AsyncSession, openid: str, limit: int) -> list[Ticket]:
    rows = await session.exec(select(Ticket).where(Ticket.openid == openid)
                              .order_by(col(Ticket.created_at).desc(), col(Ticket.id).desc()).limit(limit))
    return list(rows.all())


async def find_ticket(session: AsyncSession, number: str) -> Ticket | None:
    return (await session.exec(select(Ticket).where(Ticket.number == number))).first()


async def events_of(session: AsyncSession, ticket_id: int) -> list[TicketEvent]:
    rows = await session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id))
    return list(rows.all())
