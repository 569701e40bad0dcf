"""Reporting a problem: one message when it says enough, else a short draft
(describe → optional photo/location/detail → 「1」 to submit, 「取消」 to drop)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from bot.casework.actors import RESIDENT_CODE
from bot.casework.workflow import TRIAGE_KIND
from bot.clock import format_local
from bot.dialogs import binding, texts
from bot.dialogs.session import Session
from bot.media import fetch_media
from bot.casework.tickets import Created, Evidence, NewTicket, create_ticket
from bot.wechat.inbound import Inbound
from nlp.router import Routing
from storage.models import Attachment, TicketEvent

DRAFTING = "drafting"
AFTER_TICKET = "after_ticket"  # media sent right after a ticket is added to it
RECENT_LOCATION = timedelta(minutes=10)
SUMMARY_CHARS = 60
SAVED_DRAFT_KEPT = timedelta(days=1)  # a draft that timed out can be resumed (「继续」) this long


def _summary(text: str) -> str:
    return text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS] + "…"


def evidence_of(msg: Inbound) -> Evidence | None:
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
    if routing.urgency == _highest(session) or _says_enough(session, text, routing):
        session.goto(DRAFTING, texts=[text], evidence=items)
        return await submit(None, session, routing)
    # An opener with no substance (「我要投诉」「我要反映个事」) starts the draft but is not its text.
    substantive = bool(text) and session.services.intents.classify(text).substantive
    session.goto(DRAFTING, texts=[text] if substantive else [], evidence=items)
    if not text and evidence:
        return texts.DRAFT_MEDIA_STARTED.format(kind=texts.MEDIA_KIND.get(evidence.kind, "内容"))
    return _next_question(session, routing if substantive else None)


def _says_enough(session: Session, text: str, routing: Routing) -> bool:
    """One message that names a known problem, confidently, and where: a ticket at once."""
    return (len(text) >= session.settings.dialog.oneshot_min_chars and routing.known_problem
            and routing.confidence >= session.services.router.threshold and routing.area_code is not None)


def _next_question(session: Session, routing: Routing | None) -> str:
    """Guided report: ask for what routing still lacks, one question at a time (each once),
    then a summary to confirm."""
    data = session.data
    described = "".join(t for t in data.get("texts", []) if t)
    vague = routing is None or (not routing.known_problem and len(described) < session.settings.dialog.oneshot_min_chars)
    if vague and not data.get("asked_problem"):
        session.update(asked_problem=True)
        return texts.ASK_PROBLEM
    if routing is not None and routing.area_code is None and not data.get("asked_place"):
        session.update(asked_place=True)
        return texts.ASK_PLACE
    description = "，".join(t for t in data.get("texts", []) if t)
    if routing is None:  # only attachments so far
        evidence = data.get("evidence") or []
        if not evidence:
            return texts.DRAFT_EMPTY
        return texts.DRAFT_MEDIA_STARTED.format(kind=texts.MEDIA_KIND.get(evidence[-1].get("kind"), "内容"))
    place = session.services.areas.full_name(routing.area_code) or texts.PLACE_UNKNOWN
    if routing.place:
        place = f"{place}（{routing.place}）" if routing.area_code else routing.place
    category = session.services.router.taxonomy.label(routing.category) if routing.known_problem else "待人工分类"
    return texts.DRAFT_SUMMARY.format(category=category, place=place, summary=_summary(description))


def _draft_routing(session: Session) -> Routing | None:
    parts = [t for t in session.data.get("texts", []) if t]
    if not parts:
        return None
    locations = [e for e in session.data.get("evidence", []) if e.get("kind") == "location" and e.get("lat") is not None]
    location = (locations[-1]["lat"], locations[-1]["lng"]) if locations else None
    return session.services.router.route("\n".join(parts), location, session.resident.home_area_code)


async def on_text(msg: Inbound, session: Session) -> str:
    return await begin(msg.content, session)


async def on_media(msg: Inbound, session: Session) -> str:
    """Photo, voice, video or link from an idle resident: attach to a fresh ticket or start a draft."""
    if msg.msg_type == "voice" and msg.content:
        return await begin(msg.content, session, evidence_of(msg))
    evidence = evidence_of(msg)
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
    if text:
        session.update(texts=[*session.data.get("texts", []), text])
    return _next_question(session, _draft_routing(session))


async def draft_media(msg: Inbound, session: Session) -> str:
    evidence = evidence_of(msg)
    if evidence is None:
        return texts.UNKNOWN_MESSAGE
    update: dict = {"evidence": [*session.data.get("evidence", []), evidence.to_dict()]}
    if msg.msg_type == "voice" and msg.content:
        update["texts"] = [*session.data.get("texts", []), msg.content]
    session.update(**update)
    kind = texts.MEDIA_KIND.get(msg.msg_type, "内容")
    routing = _draft_routing(session)
    if msg.msg_type in ("location", "voice") and routing is not None:  # what routing lacked may have come
        return f"{texts.MEDIA_RECEIVED.format(kind=kind)}\n{_next_question(session, routing)}"
    return texts.DRAFT_ADDED.format(kind=kind)


async def on_report(msg: Inbound, session: Session) -> str:
    """The resident reports a problem (intent 'report'): voice keeps its recording."""
    return await on_media(msg, session) if msg.msg_type == "voice" else await on_text(msg, session)


async def resume(msg: Inbound, session: Session) -> str:
    """「继续」: the draft that timed out (kept for a day) is open again."""
    saved = session.data.get("saved_draft")
    if not saved or session.now - datetime.fromisoformat(saved["saved_at"]) > SAVED_DRAFT_KEPT:
        return texts.NO_SAVED_DRAFT
    session.goto(DRAFTING, **{k: v for k, v in saved.items() if k != "saved_at"})
    return texts.DRAFT_RESUMED.format(summary=_summary("，".join(saved.get("texts", [])) or "（附件）"))


async def nothing_to_submit(msg: Inbound, session: Session) -> str:
    """「1」 with no draft under way: said so, never drafted."""
    saved = session.data.get("saved_draft")
    if saved and saved.get("texts"):
        return texts.NOTHING_TO_SUBMIT_SAVED.format(summary=_summary("，".join(saved["texts"])))
    return texts.NOTHING_TO_SUBMIT


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
    levels = services.router.urgency.order
    if session.data.get("emergency") and services.router.urgency.rank(routing.urgency) < len(levels) - 2:
        routing = dataclasses.replace(routing, urgency=levels[-2])  # the menu's 紧急求助: at least urgent
    created = await create_ticket(services.case, session.db, NewTicket(
        openid=session.resident.openid, description=description, routing=routing, location=location,
        address=locations[-1].label if locations else None, evidence=evidence, source_key=session.message_key,
        compare_text=bool(parts),
    ), session.now)
    ticket, attachments = created.ticket, created.attachments
    session.goto(AFTER_TICKET, ticket_id=ticket.id, number=ticket.number)
    session.after_commit(services.outbox.kick)
    fetch_media(services, session.db, ticket.id or 0, attachments, session.after_commit)
    return _created_reply(session, created, routing)


def _highest(session: Session) -> str:
    """The top urgency level (特急): red warning, advice first."""
    return session.services.router.urgency.order[-1]


def _created_reply(session: Session, created: Created, routing: Routing) -> str:
    services = session.services
    ticket = created.ticket
    advice = services.emergency.advice_for(routing.urgency_reasons) if routing.urgency == _highest(session) else ""
    if created.duplicate_of is not None:
        # The original is another resident's ticket: the reply names only this resident's own.
        reply = texts.TICKET_DUPLICATE.format(number=ticket.number)
        if created.repeat_of is not None and created.repeat_of.openid == ticket.openid:
            reply += "\n" + texts.REPEAT_LINE.format(original=created.repeat_of.number)
        return f"{advice}\n{reply}" if advice else reply
    if ticket.status in services.workflow.states_of_kind(TRIAGE_KIND):
        routing_line = texts.TRIAGE_LINE
    else:
        area = services.areas.full_name(ticket.area_code)
        department = services.router.taxonomy.department_name(ticket.department)
        routing_line = texts.ROUTED_LINE.format(area=f"{area} " if area else "", department=department)
    reply = texts.TICKET_CREATED.format(number=ticket.number, category=services.router.taxonomy.label(ticket.category),
                                        routing_line=routing_line, due=format_local(ticket.response_due_at))
    if created.repeat_of is not None and created.repeat_of.openid == ticket.openid:
        reply += "\n" + texts.REPEAT_LINE.format(original=created.repeat_of.number)
    return f"{advice}\n{reply}" if advice else reply


async def cancel(msg: Inbound, session: Session) -> str:
    if session.state in (DRAFTING, "consent", "choosing_community", "choosing_grid"):
        session.reset()
        return texts.DRAFT_CANCELLED
    session.reset()
    return texts.NOTHING_TO_CANCEL


async def supplement(msg: Inbound, session: Session) -> str:
    """Photo/location/voice sent just after a ticket was created: add it to that ticket."""
    evidence = evidence_of(msg)
    ticket_id, number = session.data.get("ticket_id"), session.data.get("number")
    if evidence is None or not ticket_id:
        return texts.UNKNOWN_MESSAGE
    attachment = Attachment(ticket_id=ticket_id, kind=evidence.kind, media_id=evidence.media_id, url=evidence.url,
                            label=evidence.label, lat=evidence.lat, lng=evidence.lng, created_at=session.now)
    session.db.add(attachment)
    session.db.add(TicketEvent(ticket_id=ticket_id, at=session.now, action="supplement", actor=RESIDENT_CODE,
                               note=f"群众补充{texts.MEDIA_KIND.get(evidence.kind, '材料')}"))
    if evidence.media_id:
        await session.db.flush()
        fetch_media(session.services, session.db, ticket_id, [attachment], session.after_commit)
    return texts.EVIDENCE_ATTACHED.format(kind=texts.MEDIA_KIND.get(evidence.kind, "材料"), number=number)
