"""Creating tickets and reading them back: numbering, routing, SLA deadlines,
the audit trail and the notifications a new ticket causes."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, bindparam, insert, literal_column, type_coerce, union_all
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import to_local
from bot.casework import parts
from bot.casework.actors import RESIDENT_CODE, SYSTEM_CODE
from bot.casework.context import Casework
from bot.casework.notify import notify_staff
from storage.outbox_rows import insert_rows
from storage.prepared import Prepared
from nlp import similarity
from nlp.router import Routing
from storage.models import Attachment, Counter, Ticket, TicketEvent

SYSTEM_ACTOR = SYSTEM_CODE
# A new report is compared with the open tickets of its grid created this recently…
DUPLICATE_WINDOW = timedelta(hours=72)
# …newest first, at most this many originals of the same category and this many of the
# resident's own (one query, two index seeks: a busy grid keeps the check cheap).
DUPLICATE_CANDIDATES = 8
REPEAT_CANDIDATES = 4


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
    # False when the description is a placeholder (attachments only): nothing to compare.
    compare_text: bool = True


@dataclass(frozen=True)
class Related:
    """An open ticket a new one was linked to."""

    id: int
    number: str
    openid: str


@dataclass
class Created:
    ticket: Ticket
    attachments: list[Attachment]
    duplicate_of: Related | None = None  # another resident's open ticket covers this report
    repeat_of: Related | None = None  # the same resident's open ticket on the same problem (二次投诉)


@functools.cache
def _counter_upsert(dialect: str) -> Prepared:
    """INSERT … ON CONFLICT DO UPDATE … RETURNING for the day counter, built once per
    dialect: values come as parameters, so the statement is compiled once."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return Prepared(insert_(Counter).on_conflict_do_update(  # type: ignore[call-overload]
        index_elements=["name"], set_={"value": Counter.value + 1}).returning(Counter.value))


async def next_number(session: AsyncSession, now: datetime) -> str:
    """'20261122-0007': the local date and that day's sequence, safe under concurrency."""
    day = to_local(now).strftime("%Y%m%d")
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    connection = await session.connection()  # Core, not the ORM: this runs once per ticket
    value = (await _counter_upsert(dialect).run(connection, {"name": f"ticket:{day}", "value": 1})).scalar()
    return f"{day}-{value:04d}"


# Built once; the values come as execute() parameters (cheaper than .values() each time).
_INSERT_TICKET = Prepared(insert(Ticket).returning(Ticket.id))  # type: ignore[call-overload]
_INSERT_EVENTS = Prepared(insert(TicketEvent))


@functools.cache
def _candidates_query(open_states: tuple[str, ...]) -> Prepared:
    """Open tickets of a grid since a time, newest first, that a new report may repeat or
    duplicate: originals (not themselves linked duplicates) of the same category, served by
    ix_ticket_duplicate_candidates, and the resident's own, served by ix_ticket_openid_created.
    The signature comes back as the stored JSON text (no json.loads a row; see _stored)."""
    columns = (Ticket.id, Ticket.number, Ticket.openid, Ticket.category, Ticket.duplicate_of_id,
               type_coerce(Ticket.signature, Text).label("signature"))
    # The open states are config codes: written into the SQL, so the statement is compiled
    # once (an expanding IN parameter is re-rendered on every execution).
    assert all(re.fullmatch(r"[a-z_]+", code) for code in open_states), open_states
    states: list[Any] = [literal_column(f"'{code}'") for code in open_states]
    recent_open = (Ticket.area_code == bindparam("area_code"), Ticket.created_at >= bindparam("since"),
                   col(Ticket.status).in_(states))
    newest = (col(Ticket.created_at).desc(), col(Ticket.id).desc())
    originals = (core_select(*columns)  # type: ignore[call-overload]
                 .where(*recent_open, Ticket.category == bindparam("category"), col(Ticket.duplicate_of_id).is_(None))
                 .order_by(*newest).limit(DUPLICATE_CANDIDATES).subquery())
    own = (core_select(*columns).where(*recent_open, Ticket.openid == bindparam("openid"))  # type: ignore[call-overload]
           .order_by(*newest).limit(REPEAT_CANDIDATES).subquery())
    return Prepared(union_all(core_select(originals), core_select(own)))



def _stored(raw: object) -> object:
    """The signature string from its JSON text ('"…"'; base64 needs no JSON escapes).
    asyncpg may already hand back the decoded value: then it is used as it is."""
    if isinstance(raw, str) and len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return raw[1:-1]
    return raw


async def _find_related(case: Casework, connection, new: NewTicket,  # type: ignore[no-untyped-def]
                        signature: str | None, now: datetime) -> tuple[Related | None, Related | None]:
    """(duplicate_of, repeat_of) for a new report: the most similar open ticket of the same
    grid within DUPLICATE_WINDOW — the resident's own (a repeat complaint), and another
    resident's of the same category (a duplicate). A repeat of a ticket that was itself
    linked as a duplicate is covered by that ticket's original too."""
    area_code = new.routing.area_code
    packed = similarity.decode(signature)
    if packed is None or not area_code:
        return None, None
    mine = similarity.Matcher(packed)
    rows = (await _candidates_query(case.workflow.open_states()).run(connection, {
        "area_code": area_code, "since": now - DUPLICATE_WINDOW, "openid": new.openid,
        "category": new.routing.category})).rows
    best_own = best_other = None
    own_score = other_score = similarity.THRESHOLD
    for row in rows:
        score = mine.score(_stored(row.signature))
        if row.openid == new.openid:
            if score >= own_score:
                best_own, own_score = row, score
        elif row.category == new.routing.category and row.duplicate_of_id is None and score >= other_score:
            best_other, other_score = row, score
    repeat_of = Related(best_own.id, best_own.number, best_own.openid) if best_own is not None else None
    duplicate_of = Related(best_other.id, best_other.number, best_other.openid) if best_other is not None else None
    if duplicate_of is None and best_own is not None and best_own.duplicate_of_id is not None:
        original = next((r for r in rows if r.id == best_own.duplicate_of_id), None)
        if original is not None:
            duplicate_of = Related(original.id, original.number, original.openid)
    return duplicate_of, repeat_of


async def create_ticket(case: Casework, session: AsyncSession, new: NewTicket,
                        now: datetime) -> Created:
    """Write the ticket, its audit trail and the staff notices in the caller's transaction.

    A report like an open ticket of the same grid (nlp.similarity) is still recorded
    (一口进: no report is lost) but linked: to the same resident's ticket as a repeat
    complaint (二次投诉, staff are notified as usual), or to another resident's ticket
    of the same category as a duplicate (no staff notices: that ticket's staff handle it;
    特急 still raises its red warning).

    This runs for every complaint, so the rows are written with Core inserts (one
    INSERT … RETURNING id, then one executemany a table) instead of ORM objects:
    the ORM's unit of work cost more than everything else a complaint does. The
    returned Ticket is a detached copy for the reply; it is not in the session."""
    routing = new.routing
    workflow = case.workflow
    schedule = case.sla.schedule(now, routing.urgency, routing.sla_class)
    # Routing happens as the ticket is created: submitted → dispatched or → triage.
    action = "to_triage" if routing.needs_triage(case.router.threshold) else "route"
    status = case.workflow.target(workflow.initial, action)
    signature = similarity.signature(new.description) if new.compare_text else None
    connection = await session.connection()
    duplicate_of, repeat_of = await _find_related(case, connection, new, signature, now)
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
        **schedule,
        clock_started_at=now,
        signature=signature,
        duplicate_of_id=duplicate_of.id if duplicate_of else None,
        repeat_of_id=repeat_of.id if repeat_of else None,
    )
    ticket_id = (await _INSERT_TICKET.run(connection, values)).scalar()
    # model_construct: these are the values just written, nothing to check again (and
    # Ticket(...) costs ~90 µs, more than the insert).
    ticket = Ticket.model_construct(id=ticket_id, **values)  # type: ignore[arg-type]
    event = dict(ticket_id=ticket_id, at=now, from_status=None)
    events = [
        {**event, "action": "create", "to_status": workflow.initial, "actor": RESIDENT_CODE, "note": "群众通过公众号反映"},
        {**event, "action": action, "from_status": workflow.initial, "to_status": status,
         "actor": SYSTEM_ACTOR, "note": _routing_note(case, routing)},
    ]
    linked = {**event, "from_status": status, "to_status": status, "actor": SYSTEM_ACTOR}
    if repeat_of is not None:
        events.append({**linked, "action": "repeat", "note": f"二次投诉：同一群众此前反映的工单 {repeat_of.number} 尚未办结"})
    if duplicate_of is not None:
        events.append({**linked, "action": "link_duplicate",
                       "note": f"与工单 {duplicate_of.number} 反映的是同一问题，已关联，由该工单一并办理"})
    await _INSERT_EVENTS.run(connection, events)
    if duplicate_of is None or routing.urgency in case.notices.red_urgencies:  # a red warning is never held back
        await insert_rows(connection, notify_staff(case, ticket))
    if duplicate_of is None:  # joint dispatch: the co-departments' parts (a duplicate is worked on its original)
        await insert_rows(connection, await parts.on_create(case, session, ticket, now))
    # Attachments are rare and need their ids for the media download: ORM objects.
    attachments = [Attachment(ticket_id=ticket_id, kind=item.kind, media_id=item.media_id, url=item.url,
                              label=item.label, lat=item.lat, lng=item.lng, created_at=now) for item in new.evidence]
    if attachments:
        session.add_all(attachments)
        await session.flush()
    return Created(ticket, attachments, duplicate_of, repeat_of)


def _routing_note(case: Casework, routing: Routing) -> str:
    words = "、".join(routing.keywords) or "无"
    return (f"分类：{case.router.taxonomy.label(routing.category)}（置信度 {routing.confidence:.2f}，"
            f"关键词：{words}）；紧急程度：{routing.urgency}")
