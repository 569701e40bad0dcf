"""What a resident says about a ticket they already have: an urge (催办), an answer
to a question staff asked (待补充材料), a supplement. Each lands on that ticket as an
event — never as a new ticket — and whoever handles it is told."""

from __future__ import annotations

from sqlmodel import col, select

from bot.clock import format_local
from bot.casework.actors import RESIDENT_CODE, Actor
from bot.casework.desk import act_in
from bot.casework.workflow import OPEN_KIND, TRIAGE_KIND, WAITING_KIND
from bot.dialogs import texts
from bot.dialogs.choices import parse_choice
from bot.dialogs.session import Session
from bot.media import fetch_media
from bot.casework.notify import notice_rows, notify_staff
from bot.wechat.inbound import Inbound
from storage.models import Attachment, Staff, Ticket, TicketEvent
from storage.outbox_rows import insert_rows

CHOOSING_TICKET = "choosing_ticket"
OPEN_KINDS = (OPEN_KIND, TRIAGE_KIND, WAITING_KIND)
LISTED = 5
URGE_ACTION = "urge"
SUPPLEMENT_ACTION = "supplement"
ANSWER_NOTICE = "answer"  # the notice kind of config/notices.toml


def _summary(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


async def open_tickets(session: Session, kinds: tuple[str, ...] = OPEN_KINDS) -> list[Ticket]:
    """The resident's tickets in states of these kinds, newest first."""
    workflow = session.services.workflow
    states = [code for kind in kinds for code in workflow.states_of_kind(kind)]
    rows = await session.db.exec(select(Ticket).where(Ticket.openid == session.resident.openid,
                                                      col(Ticket.status).in_(states))
                                 .order_by(col(Ticket.created_at).desc(), col(Ticket.id).desc()).limit(LISTED))
    return list(rows.all())


async def waiting_tickets(session: Session) -> list[Ticket]:
    return await open_tickets(session, (WAITING_KIND,))


def _handler_staff(session: Session, ticket: Ticket) -> list[Staff | str]:
    """The staff member who accepted it, else whom a new ticket there notifies (openids)."""
    case = session.services.case
    handler: list[Staff | str] = [p for p in case.org.staff if p.id == ticket.handler_id and p.openid]
    return handler or sorted(_handler_openids(session, ticket))


def _handler_openids(session: Session, ticket: Ticket) -> set[str]:
    """Who handles it: the staff member who accepted it (ticket.handler_id), else whom a
    new ticket there notifies."""
    case = session.services.case
    handler = {p.openid for p in case.org.staff if p.id == ticket.handler_id and p.openid}
    return handler or {row["openid"] for row in notify_staff(case, ticket) if row.get("openid")}


def _who_handles(session: Session, ticket: Ticket) -> str:
    services = session.services
    if ticket.status in services.workflow.states_of_kind(TRIAGE_KIND) or not ticket.department:
        return texts.UNASSIGNED
    area = services.areas.full_name(ticket.area_code)
    department = services.router.taxonomy.department_name(ticket.department)
    return f"{area} {department}".strip()


def _notify(session: Session, openids: set[str], text: str, title: str) -> None:
    for openid in sorted(openids):
        session.services.outbox.queue_text(session.db, openid, text, title=title)
    session.after_commit(session.services.outbox.kick)


# ------------------------------------------------------------ choosing a ticket

async def _pick(msg: Inbound, session: Session, purpose: str, candidates: list[Ticket]) -> tuple[Ticket | None, str | None]:
    """The ticket meant: the one named by number, the only candidate, or (several) a question."""
    number = session.services.intents.ticket_number(msg.content) if msg.content else None
    if number:
        named = [t for t in candidates if t.number == number]
        return (named[0], None) if named else (None, texts.OTHERS_TICKET)
    if len(candidates) <= 1:
        return (candidates[0] if candidates else None), None
    options = "\n".join(f"{i}. {t.number} {_summary(' '.join(t.description.split()), 20)}"
                         for i, t in enumerate(candidates, 1))
    session.goto(CHOOSING_TICKET, purpose=purpose, numbers=[t.number for t in candidates], text=msg.content,
                 kind=msg.msg_type, fields={k: v for k, v in msg.fields.items() if isinstance(v, str)})
    return None, texts.CHOOSE_TICKET.format(options=options)


def is_choice(msg: Inbound, session: Session) -> bool:
    return parse_choice(msg.content, len(session.data.get("numbers", []))) is not None


async def ticket_chosen(msg: Inbound, session: Session) -> str | None:
    """The numbered reply to CHOOSE_TICKET."""
    numbers = session.data.get("numbers", [])
    choice = parse_choice(msg.content, len(numbers))
    if choice is None:
        return None  # not an answer: the registry understands it afresh
    purpose, text, kind = session.data.get("purpose"), session.data.get("text", ""), session.data.get("kind", "text")
    fields = session.data.get("fields") or {}
    session.reset()
    ticket = (await session.db.exec(select(Ticket).where(Ticket.number == numbers[choice - 1],
                                                         Ticket.openid == session.resident.openid))).first()
    if ticket is None:
        return texts.NO_OPEN_TICKET
    original = Inbound(msg.account, msg.openid, msg.create_time, kind, "", msg.msg_id, fields)
    if purpose == URGE_ACTION:
        return await _urge(session, ticket, text)
    return await _answer(original, session, ticket)


# ------------------------------------------------------------ 催办

async def urge(msg: Inbound, session: Session) -> str:
    """「催一下」: an urge event on the open ticket, its handler told, the resident told who
    has it and by when. No new ticket."""
    ticket, question = await _pick(msg, session, URGE_ACTION, await open_tickets(session))
    if question:
        return question
    if ticket is None:
        return texts.NO_OPEN_TICKET
    return await _urge(session, ticket, msg.content)


async def _urge(session: Session, ticket: Ticket, text: str) -> str:
    earlier = (await session.db.exec(select(TicketEvent.id).where(TicketEvent.ticket_id == ticket.id,
                                                                  TicketEvent.action == URGE_ACTION))).all()
    session.db.add(TicketEvent(ticket_id=ticket.id or 0, at=session.now, action=URGE_ACTION,
                               actor=RESIDENT_CODE, note=text[:500] or None))
    handler = _handler_openids(session, ticket)
    _notify(session, handler, texts.URGE_NOTICE.format(number=ticket.number, count=len(earlier) + 1,
                                                       summary=_summary(ticket.description)),
            title=f"催办 {ticket.number}")
    due = ticket.closure_due_at if ticket.accepted_at else ticket.response_due_at
    return texts.URGED.format(number=ticket.number, status=session.services.workflow.label(ticket.status),
                              handler=_who_handles(session, ticket), due=format_local(due) or "—")


# ------------------------------------------------------------ answers and supplements

async def answer_if_waiting(msg: Inbound, session: Session) -> str | None:
    """While one of the resident's tickets waits for them, this message is the answer:
    attached to it, the ticket back to its handler. None when nothing waits."""
    if session.resident.awaiting_answer_since is None:  # nobody asked them anything: no query
        return None
    waiting = await waiting_tickets(session)
    if not waiting:
        session.resident.awaiting_answer_since = None  # answered (or the question was withdrawn)
        return None
    ticket, question = await _pick(msg, session, "answer", waiting)
    if question:
        return question
    return await _answer(msg, session, ticket) if ticket else None


async def _answer(msg: Inbound, session: Session, ticket: Ticket) -> str:
    kind = await _attach(msg, session, ticket)
    services = session.services
    summary = _summary(msg.content or texts.MEDIA_KIND.get(msg.msg_type, "材料"))
    if ticket.status in services.workflow.states_of_kind(WAITING_KIND) and services.workflow.resident_reply_action:
        await act_in(services.case, session.db, ticket.number, services.workflow.resident_reply_action,
                     actor=Actor.resident(session.resident.openid), note=f"群众已补充：{summary}")
    # The handler is told by the notice of config/notices.toml (a template when configured).
    case = services.case
    rows = notice_rows(case, ANSWER_NOTICE, _handler_staff(session, ticket), {"number": ticket.number, "summary": summary})
    await insert_rows(await session.db.connection(), rows)
    session.after_commit(services.outbox.kick)
    return texts.ANSWER_ATTACHED.format(kind=kind, number=ticket.number)


async def supplement_text(msg: Inbound, session: Session) -> str | None:
    """「补充一下…」: onto the newest open ticket. None when there is none (then it is a report)."""
    tickets = await open_tickets(session)
    if not tickets:
        return None
    ticket, question = await _pick(msg, session, "answer", tickets)
    if question:
        return question
    if ticket is None:
        return None
    await _attach(msg, session, ticket)
    return texts.SUPPLEMENT_ATTACHED.format(number=ticket.number)


async def _attach(msg: Inbound, session: Session, ticket: Ticket) -> str:
    """The message as a supplement event (and an attachment for media); returns its kind's name."""
    from bot.dialogs.report import evidence_of

    kind = texts.MEDIA_KIND.get(msg.msg_type, "材料")
    evidence = evidence_of(msg) if msg.msg_type != "text" else None
    if evidence is not None:
        attachment = Attachment(ticket_id=ticket.id or 0, kind=evidence.kind, media_id=evidence.media_id,
                                url=evidence.url, label=evidence.label, lat=evidence.lat, lng=evidence.lng,
                                created_at=session.now)
        session.db.add(attachment)
        if evidence.media_id:
            await session.db.flush()
            fetch_media(session.services, session.db, ticket.id or 0, [attachment], session.after_commit)
    note = msg.content or f"群众补充{kind}"
    session.db.add(TicketEvent(ticket_id=ticket.id or 0, at=session.now, action=SUPPLEMENT_ACTION,
                               actor=RESIDENT_CODE, note=note[:1000]))
    return kind
