"""Emergencies first: a message describing a danger happening now (the highest urgency
level, 特急) becomes a ticket and a red warning at once — before consent, before any
dialog step — with advice for that danger (config/emergency.toml), and the resident is
then asked where it is. PIPL art. 13(4) allows this without consent; the legal basis
is written on the ticket's audit trail and consent is asked afterwards."""

from __future__ import annotations

from sqlalchemy import update

from bot.casework.actors import RESIDENT_CODE
from bot.dialogs import texts
from bot.dialogs.session import Session
from bot.wechat.inbound import Inbound
from nlp.router import Routing
from storage.models import Attachment, Ticket, TicketEvent

AWAITING_LOCATION = "emergency_location"
SYSTEM_ACTOR = "system"


def danger(text: str, session: Session) -> Routing | None:
    """The routing of `text` when it describes a danger of the highest level, else None.
    The urgency rules alone decide (a few µs); only a danger is routed in full here."""
    router = session.services.router
    if not text or router.urgency.detect(text).level != router.urgency.order[-1]:
        return None
    return router.route(text, None, session.resident.home_area_code)


async def report_now(msg: Inbound, session: Session, routing: Routing) -> str:
    """The ticket, the red warning and the advice in one reply; then ask where, and for consent."""
    from bot.dialogs import report

    consented = session.consented
    drafted = session.data if session.state == report.DRAFTING else {}  # what was said before it
    session.goto(report.DRAFTING, texts=[*drafted.get("texts", []), msg.content],
                 evidence=list(drafted.get("evidence", [])))
    reply = await report.submit(msg, session, routing)
    ticket_id, number = session.data.get("ticket_id"), session.data.get("number")
    guide = session.services.emergency
    if not consented:
        session.db.add(TicketEvent(ticket_id=ticket_id, at=session.now, action="legal_basis", actor=SYSTEM_ACTOR,
                                   note=guide.legal_basis))
    lines = [reply]
    if routing.place is None:
        session.goto(AWAITING_LOCATION, ticket_id=ticket_id, number=number)
        lines.append(guide.ask_location)
    if not consented:
        lines.append(f"{guide.ask_consent_after}\n{texts.PRIVACY}\n{texts.ASK_CONSENT}")
    return "\n\n".join(lines)


async def _place(session: Session, ticket_id: int, area_code: str | None, label: str,
                 lat: float | None = None, lng: float | None = None) -> None:
    """Put the place on the ticket: grid, coordinates, address; audit it; tell the duty staff."""
    values: dict = {"address": label[:200], "updated_at": session.now}
    if area_code:
        values["area_code"] = area_code
    if lat is not None and lng is not None:
        values.update(lat=lat, lng=lng)
    connection = await session.db.connection()
    await connection.execute(update(Ticket.__table__).where(Ticket.__table__.c.id == ticket_id)  # type: ignore[attr-defined]
                             .values(**values))
    session.db.add(TicketEvent(ticket_id=ticket_id, at=session.now, action="locate", actor=RESIDENT_CODE,
                               note=f"群众补充位置：{label}"))
    if lat is not None and lng is not None:
        session.db.add(Attachment(ticket_id=ticket_id, kind="location", label=label[:300] or None, lat=lat, lng=lng,
                                  created_at=session.now))
    number = session.data.get("number", "")
    area = session.services.areas.full_name(area_code) if area_code else ""
    for person in session.services.case.org.staff:
        if person.openid and person.role in session.services.emergency.notify_roles:
            session.services.outbox.queue_text(session.db, person.openid,
                                               f"【红色预警·位置】{number}\n位置：{area} {label}".rstrip(),
                                               title=f"红色预警 {number}")
    session.after_commit(session.services.outbox.kick)


async def location_given(msg: Inbound, session: Session) -> str:
    """A location message while an emergency ticket waits for one."""
    ticket_id = session.data.get("ticket_id")
    if msg.location is None or not ticket_id:
        return session.services.emergency.location_unknown
    lat, lng = msg.location
    area_code = session.services.areas.locate(lat, lng)
    label = msg.text("Label") or session.services.areas.full_name(area_code) or f"{lat:.5f},{lng:.5f}"
    await _place(session, ticket_id, area_code, label, lat, lng)
    session.reset()
    return session.services.emergency.location_added.format(place=label)


async def place_named(msg: Inbound, session: Session) -> str | None:
    """A text while an emergency ticket waits for a location: a place name goes on the ticket.
    Returns None when the text names no known place (then it is understood as usual)."""
    ticket_id = session.data.get("ticket_id")
    found = session.services.router.gazetteer.find(msg.content) if msg.content else None
    if not ticket_id or found is None:
        return None
    place, area_code = found
    await _place(session, ticket_id, area_code, msg.content)
    session.reset()
    return session.services.emergency.location_added.format(place=place)
