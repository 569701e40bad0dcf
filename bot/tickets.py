"""Creating tickets and reading them back: numbering, routing, SLA deadlines,
the audit trail and the notifications a new ticket causes."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import to_local
from bot.services import Services
from bot.wechat.outbox import insert_rows
from nlp.router import Routing
from storage.models import Attachment, Counter, Staff, Ticket, TicketEvent

SYSTEM_ACTOR = "system"


@dataclass
class Evidence:
    """What a resident attached to a report before it became a ticket."""

    kind: str
    media_id: str | None = None
    url: str | None = None
    label: str | None = None
    lat: float | None = None
    lng: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class NewTicket:
    openid: str
    description: str
    routing: Routing
    location: tuple[float, float] | None = None
    address: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    source_key: str | None = None


@functools.cache
def _counter_upsert(dialect: str):  # type: ignore[no-untyped-def]
    """INSERT … ON CONFLICT DO UPDATE … RETURNING for the day counter, built once per
    dialect: values come as parameters, so SQLAlchemy reuses the compiled statement."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_(Counter).on_conflict_do_update(
        index_elements=["name"], set_={"value": Counter.value + 1}).returning(Counter.value)


async def next_number(session: AsyncSession, now: datetime) -> str:
    """'20261122-0007': the local date and that day's sequence, safe under concurrency."""
    day = to_local(now).strftime("%Y%m%d")
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    connection = await session.connection()  # Core, not the ORM: this runs once per ticket
    value = (await connection.execute(_counter_upsert(dialect), {"name": f"ticket:{day}", "value": 1})).scalar_one()
    return f"{day}-{value:04d}"


# Built once; the values come as execute() parameters (cheaper than .values() each time).
_INSERT_TICKET = insert(Ticket).returning(Ticket.id)
_INSERT_EVENTS = insert(TicketEvent)


async def create_ticket(services: Services, session: AsyncSession, new: NewTicket,
                        now: datetime) -> tuple[Ticket, list[Attachment]]:
    """Write the ticket, its audit trail and the staff notices in the caller's transaction.

    This runs for every complaint, so the rows are written with Core inserts (one
    INSERT … RETURNING id, then one executemany a table) instead of ORM objects:
    the ORM's unit of work cost more than everything else a complaint does. The
    returned Ticket is a detached copy for the reply; it is not in the session."""
    routing = new.routing
    workflow = services.workflow
    respond_due, close_due = services.sla.deadlines(now, routing.urgency, routing.sla_class)
    # Routing happens as the ticket is created: submitted → dispatched or → triage.
    action = "to_triage" if routing.needs_triage(services.router.threshold) else "route"
    status = services.workflow.target(workflow.initial, action)
    values = dict(
        number=await next_number(session, now),
        openid=new.openid,
        appeal_type=routing.appeal_type,
        category=routing.category,
        department=routing.department,
        co_departments=list(routing.co_departments),
        urgency=routing.urgency,
        area_code=routing.area_code,
        status=status,
        description=new.description,
        lat=new.location[0] if new.location else None,
        lng=new.location[1] if new.location else None,
        address=new.address,
        confidence=routing.confidence,
        keywords=list(routing.keywords),
        source_key=new.source_key,
        created_at=now,
        updated_at=now,
        response_due_at=respond_due,
        closure_due_at=close_due,
    )
    connection = await session.connection()
    ticket_id = (await connection.execute(_INSERT_TICKET, values)).scalar_one()
    # model_construct: these are the values just written, nothing to check again (and
    # Ticket(...) costs ~90 µs, more than the insert).
    ticket = Ticket.model_construct(id=ticket_id, **values)
    event = dict(ticket_id=ticket_id, at=now, from_status=None)
    await connection.execute(_INSERT_EVENTS, [
        {**event, "action": "create", "to_status": workflow.initial, "actor": new.openid, "note": "群众通过公众号反映"},
        {**event, "action": action, "from_status": workflow.initial, "to_status": status,
         "actor": SYSTEM_ACTOR, "note": _routing_note(services, routing)},
    ])
    await insert_rows(connection, _notify_staff(services, ticket))
    # Attachments are rare and need their ids for the media download: ORM objects.
    attachments = [Attachment(ticket_id=ticket_id, kind=item.kind, media_id=item.media_id, url=item.url,
                              label=item.label, lat=item.lat, lng=item.lng, created_at=now) for item in new.evidence]
    if attachments:
        session.add_all(attachments)
        await session.flush()
    return ticket, attachments


def _routing_note(services: Services, routing: Routing) -> str:
    words = "、".join(routing.keywords) or "无"
    return (f"分类：{services.router.taxonomy.label(routing.category)}（置信度 {routing.confidence:.2f}，"
            f"关键词：{words}）；紧急程度：{routing.urgency}")


def _notify_staff(services: Services, ticket: Ticket) -> list[dict]:
    """New-ticket notice to the grid worker and department liaison; 特急 also goes
    straight to the district duty staff as a red warning (红色预警, 直报).
    Returns the outbox rows, for create_ticket to insert in one go."""
    taxonomy = services.router.taxonomy
    area_name = services.areas.full_name(ticket.area_code) or "未定位"
    summary = ticket.description if len(ticket.description) <= 60 else ticket.description[:60] + "…"
    category = taxonomy.label(ticket.category)
    staff = services.staff
    rows: list[dict] = []
    recipients: dict[str, str] = {}
    if ticket.status == "triage":
        for person in staff:
            if person.role == "dispatcher" and person.openid:
                recipients[person.openid] = "待分拨"
    else:
        for person in staff:
            if not person.openid:
                continue
            if person.role == "grid_worker" and person.area_code == ticket.area_code:
                recipients[person.openid] = "网格"
            elif person.role == "liaison" and person.department == ticket.department:
                recipients[person.openid] = "部门"
    for openid, why in recipients.items():
        rows.append(services.outbox.text_row(openid,
                     f"【新工单·{why}】{ticket.number}\n类别：{category}\n紧急程度：{ticket.urgency}\n"
                     f"位置：{area_name}\n内容：{summary}\n请在时限内接单处理。",
                     title=f"新工单 {ticket.number}"))
    if ticket.urgency == "特急":
        district_codes = {n.code for n in services.areas.ancestors(ticket.area_code) if n.level in ("district", "city")}
        for person in staff:
            if person.openid and person.role in ("dispatcher", "supervisor") and (
                    not district_codes or person.area_code in district_codes):
                rows.append(services.outbox.text_row(person.openid,
                             f"【红色预警·直报】{ticket.number}\n{category}\n位置：{area_name}\n内容：{summary}\n"
                             f"请立即处置并关注。", title=f"红色预警 {ticket.number}"))
    return rows


async def tickets_of(session: AsyncSession, openid: str, limit: int) -> list[Ticket]:
    rows = await session.exec(select(Ticket).where(Ticket.openid == openid)
                              .order_by(col(Ticket.created_at).desc(), col(Ticket.id).desc()).limit(limit))
    return list(rows.all())


async def find_ticket(session: AsyncSession, number: str) -> Ticket | None:
    return (await session.exec(select(Ticket).where(Ticket.number == number))).first()


async def events_of(session: AsyncSession, ticket_id: int) -> list[TicketEvent]:
    rows = await session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id))
    return list(rows.all())
