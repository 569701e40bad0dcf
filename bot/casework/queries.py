"""Reading tickets, in one place: a resident's list, one ticket, its audit trail, the
filtered lists of the Open311 API (and the console to come)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.casework.workflow import Workflow
from storage.models import Ticket, TicketEvent


async def tickets_of(session: AsyncSession, openid: str, limit: int) -> list[Ticket]:
    rows = await session.exec(select(Ticket).where(Ticket.openid == openid)
                              .order_by(col(Ticket.created_at).desc(), col(Ticket.id).desc()).limit(limit))
    return list(rows.all())


async def find_ticket(session: AsyncSession, number: str) -> Ticket | None:
    return (await session.exec(select(Ticket).where(Ticket.number == number))).first()


async def events_of(session: AsyncSession, ticket_id: int) -> list[TicketEvent]:
    rows = await session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id))  # type: ignore[arg-type]
    return list(rows.all())


@dataclass(frozen=True)
class TicketFilter:
    """A list of tickets: created in [start, end], optionally of some categories and of
    the open (or closed) states, newest first, at most `limit`."""

    start: datetime
    end: datetime
    categories: tuple[str, ...] | None = None  # None: any; () matches nothing
    open: bool | None = None
    limit: int = 1000


async def find_tickets(session: AsyncSession, workflow: Workflow, where: TicketFilter) -> list[Ticket]:
    if where.categories == ():
        return []
    statement = select(Ticket).where(Ticket.created_at >= where.start, Ticket.created_at <= where.end)
    if where.categories is not None:
        statement = statement.where(col(Ticket.category).in_(where.categories))
    if where.open is not None:
        codes = [code for code in workflow.states if workflow.is_open(code) == where.open]
        statement = statement.where(col(Ticket.status).in_(codes))
    statement = statement.order_by(col(Ticket.created_at).desc()).limit(where.limit)
    return list((await session.exec(statement)).all())
