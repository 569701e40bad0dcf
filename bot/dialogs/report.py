"""Reporting a problem: one message when it says enough, else a short draft
(describe → optional photo/location/detail → 「1」 to submit, 「取消」 to drop)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from bot.clock import format_local
from bot.dialogs import binding, texts
from bot.dialogs.session import Session
from bot.media import fetch_media
from bot.tickets import Created, Evidence, NewTicket, create_ticket
from bot.wechat.inbound import Inbound
from nlp.router import Routing
from storage.models import Attachment, TicketEvent

DRAFTING = "drafting"
AFTER_TICKET = "after_ticket"  # media sent right after a ticket is added to it
RECENT_LOCATION = timedelta(minutes=10)
SUMMARY_CHARS = 60


def _summary(text: str) -> str:
    return text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS] + "…"


def _evidence_of(msg: Inbound) -> Evidence | None:
    kind = msg.msg_type
    if kind == "image":
        return Evidence(kind, media_id=msg.text("MediaId") or None, url=msg.text("PicUrl") or None)
    if kind in ("voice", "video", "shortvideo"):
        return Evidence(kind, media_id=msg.text("MediaId") or None, label=msg.content or None)
    if kind == "location" and msg.location:
        lat, lng = msg.location
        return Evidence(kind, lat=lat, lng=lng, label=msg.text("Label") or None)
    if kind == "link":
        return Evidence(kind, url=msg.text("Url") or None, label=msg.text("Title") or None)
    return None


def _recent_location(session: Session) -> tuple[float, float] | None:
    saved, at = session.data.get("last_location"), session.data.get("last_location_at")
    if saved and at and session.now - datetime.fromisoformat(at) <= RECENT_LOCATION:
        return float(saved[0]), float(saved[1])
    return None


async def begin(text: str, session: Session, evidence: Evidence | None = None) -> str:
    """A new report from an idle resident."""
    if not session.consented:
        session.goto("consent", pending=text, pending_evidence=evidence.to_dict() if evidence else None)
        return f"{texts.CONSENT_NEEDED}\n{texts.PRIVACY}\n{texts.ASK_CONSENT}"
    location = _recent_location(session)
    items = [evidence.to_dict()] if evidence else []
    if location:
        items.append(Evidence("location", lat=location[0], lng=location[1]).to_dict())
    routing = session.services.router.route(text, location, session.resident.home_area_code)
    says_enough = len(text) >= session.settings.dialog.oneshot_min_chars and routing.known_problem \
        and routing.confidence >= session.services.router.threshold
    if routing.urgency == "特急" or says_enough:
        session.goto(DRAFTING, texts=[text], evidence=items)
        return await submit(None, session, routing)
    session.goto(DRAFTING, texts=[text] if text else [], evidence=items)
    if not text and evidence:
        return texts.DRAFT_MEDIA_STARTED.format(kind=texts.MEDIA_KIND.get(evidence.kind, "内容"))
    return texts.DRAFT_STARTED.format(summary=_summary(text))


async def on_text(msg: Inbound, session: Session) -> str:
    return await begin(msg.content, session)


async def on_media(msg: Inbound, session: Session) -> str:
    """Photo, voice, video or link from an idle resident: attach to a fresh ticket or start a draft."""
    if msg.msg_type == "voice" and msg.content:
        return await begin(msg.content, session, _evidence_of(msg))
    evidence = _evidence_of(msg)
    if evidence is None:
        return texts.UNKNOWN_MESSAGE
    if msg.msg_type == "link" and evidence.label:
        return await begin(evidence.label, session, evidence)
    return await begin("", session, evidence)


async def on_location(msg: Inbound, session: Session) -> str:
    if msg.location is None:
        return texts.UNKNOWN_MESSAGE
    return binding.bind_location(session, *msg.location)


async def start(msg: Inbound, session: Session) -> str:
    """Menu 反映问题."""
    session.goto(DRAFTING, texts=[], evidence=[])
    return texts.REPORT_PROMPT


async def emergency(msg: Inbound, session: Session) -> str:
    """Menu 紧急求助: advice first, then whatever is written becomes an urgent report."""
    session.goto(DRAFTING, texts=[], evidence=[], emergency=True)
    return texts.EMERGENCY_PROMPT


async def draft_text(msg: Inbound, session: Session) -> str:
    text = msg.content
    if session.data.get("emergency") and text:
        session.update(texts=[*session.data.get("texts", []), text])
        return await submit(msg, session)
    session.update(texts=[*session.data.get("texts", []), text] if text else session.data.get("texts", []))
    if len(session.data.get("texts", [])) == 1 and not session.data.get("evidence"):
        return texts.DRAFT_STARTED.format(summary=_summary(text))
    return texts.DRAFT_ADDED.format(kind=texts.MEDIA_KIND["text"])


async def draft_media(msg: Inbound, session: Session) -> str:
    evidence = _evidence_of(msg)
    if evidence is None:
        return texts.UNKNOWN_MESSAGE
    update: dict = {"evidence": [*session.data.get("evidence", []), evidence.to_dict()]}
    if msg.msg_type == "voice" and msg.content:
        update["texts"] = [*session.data.get("texts", []), msg.content]
    session.update(**update)
    return texts.DRAFT_ADDED.format(kind=texts.MEDIA_KIND.get(msg.msg_type, "内容"))


async def submit(msg: Inbound | None, session: Session, routing: Routing | None = None) -> str:
    """「1」/「提交」: turn the draft into a ticket (`routing` when the caller just routed it)."""
    parts = [t for t in session.data.get("texts", []) if t]
    evidence = [Evidence(**e) for e in session.data.get("evidence", [])]
    if not parts and not evidence:
        return texts.DRAFT_EMPTY
    description = "\n".join(parts) or "（群众仅上传了附件，未填写文字说明）"
    locations = [e for e in evidence if e.kind == "location" and e.lat is not None and e.lng is not None]
    location = (locations[-1].lat, locations[-1].lng) if locations else None
    services = session.services
    if routing is None:
        routing = services.router.route(description, location, session.resident.home_area_code)
    if session.data.get("emergency") and routing.urgency != "特急":
        routing = dataclasses.replace(routing, urgency="紧急")
    created = await create_ticket(services, session.db, NewTicket(
        openid=session.resident.openid, description=description, routing=routing, location=location,
        address=locations[-1].label if locations else None, evidence=evidence, source_key=session.message_key,
        compare_text=bool(parts),
    ), session.now)
    ticket, attachments = created.ticket, created.attachments
    session.goto(AFTER_TICKET, ticket_id=ticket.id, number=ticket.number)
    session.after_commit(services.outbox.kick)
    fetch_media(services, session.db, ticket.id or 0, attachments, session.after_commit)
    return _created_reply(session, created, routing.urgency)


def _created_reply(session: Session, created: Created, urgency: str) -> str:
    services = session.services
    ticket = created.ticket
    if created.duplicate_of is not None:
        # The original is another resident's ticket: the reply names only this resident's own.
        reply = texts.TICKET_DUPLICATE.format(number=ticket.number)
        if created.repeat_of is not None and created.repeat_of.openid == ticket.openid:
            reply += "\n" + texts.REPEAT_LINE.format(original=created.repeat_of.number)
        return texts.EMERGENCY_ADVICE + "\n" + reply if urgency == "特急" else reply
    if ticket.status == "triage":
        routing_line = texts.TRIAGE_LINE
    else:
        area = services.areas.full_name(ticket.area_code)
        department = services.router.taxonomy.department_name(ticket.department)
        routing_line = texts.ROUTED_LINE.format(area=f"{area} " if area else "", department=department)
    reply = texts.TICKET_CREATED.format(number=ticket.number, category=services.router.taxonomy.label(ticket.category),
                                        routing_line=routing_line, due=format_local(ticket.response_due_at))
    if created.repeat_of is not None and created.repeat_of.openid == ticket.openid:
        reply += "\n" + texts.REPEAT_LINE.format(original=created.repeat_of.number)
    if urgency == "特急":
        reply = texts.EMERGENCY_ADVICE + "\n" + reply
    return reply


async def cancel(msg: Inbound, session: Session) -> str:
    if session.state in (DRAFTING, "consent", "choosing_community", "choosing_grid"):
        session.reset()
        return texts.DRAFT_CANCELLED
    session.reset()
    return texts.NOTHING_TO_CANCEL


async def supplement(msg: Inbound, session: Session) -> str:
    """Photo/location/voice sent just after a ticket was created: add it to that ticket."""
    evidence = _evidence_of(msg)
    ticket_id, number = session.data.get("ticket_id"), session.data.get("number")
    if evidence is None or not ticket_id:
        return texts.UNKNOWN_MESSAGE
    attachment = Attachment(ticket_id=ticket_id, kind=evidence.kind, media_id=evidence.media_id, url=evidence.url,
                            label=evidence.label, lat=evidence.lat, lng=evidence.lng, created_at=session.now)
    session.db.add(attachment)
    session.db.add(TicketEvent(ticket_id=ticket_id, at=session.now, action="supplement", actor=session.resident.openid,
                               note=f"群众补充{texts.MEDIA_KIND.get(evidence.kind, '材料')}"))
    if evidence.media_id:
        await session.db.flush()
        fetch_media(session.services, session.db, ticket_id, [attachment], session.after_commit)
    return texts.EVIDENCE_ATTACHED.format(kind=texts.MEDIA_KIND.get(evidence.kind, "材料"), number=number)
