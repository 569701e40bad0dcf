"""Staff in the chat: binding a staff member's WeChat (「绑定 CODE」, a one-time code from
`minyi staff invite`) and working tickets by chat: 「接单 N」「办结 N 说明」「退回 N 原因」
「我的工单」 (words and actions: [staff_chat] of config/notices.toml).

The registry sends every message a person sends through `first`: 「绑定 CODE」 is answered
here from anyone, and everything a bound staff member sends is answered here — never
taken as a resident's report. A command moves the ticket with bot.casework.desk.act_in
in the message's handling transaction; a rights refusal is shown and audited.
"""

from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Awaitable, Callable

from sqlalchemy import and_, false, func, or_, true, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select

from bot.casework import rights
from bot.casework.actors import RESIDENT_CODE, Actor
from bot.casework.desk import REFUSED, DeskError, Refused, act_in, check_request
from bot.casework.invites import code_hash
from bot.casework.notify import DEPARTMENT, GRID, in_scope, notices_of
from bot.casework.org import bump_org_version
from bot.casework.parts import act_on_part_in
from bot.clock import format_local
from bot.dialogs import texts
from bot.dialogs.session import Session
from bot.wechat.inbound import Inbound
from storage.models import AuditEntry, Staff, StaffInvite, Ticket, TicketPart

CONFIG_FILE = "notices.toml"
BIND_ACTION = "bind"  # AuditEntry.action of a binding attempt
BOUND = "bound"  # AuditEntry.outcome (REFUSED: bot.casework.desk)
# What a person sends (not the account's events): from a bound staff member, answered here.
PERSONAL_KINDS = frozenset({"text", "voice", "image", "video", "shortvideo", "location", "link", "event:click"})
TICKET_NUMBER = r"\d{8}-\d{4}"
TYPED_NUMBER = r"\d{8}[-－]\d{4}|\d{1,3}"  # as typed: full-width digits and hyphen too
LIST_KEY = "staff_list"  # dialog data: the numbers of the last 「我的工单」, for 「接单 1」
FETCHED = 100  # candidates read for 「我的工单」 before the precise queue check
NOTE_NONE, NOTE_REQUIRED = "none", "required"  # a command's note (config: none / optional / required)

Handler = Callable[[Inbound, Session], Awaitable[str | None]]


@dataclass(frozen=True)
class Command:
    word: str
    action: str  # a workflow action (config/workflow.toml), or "" for a part command
    note: str  # NOTE_NONE / "optional" / NOTE_REQUIRED
    usage: str
    ask: str = ""
    part: str = ""  # a part word of config/workflow.toml [part]: acts on the member's department's part


@dataclass(frozen=True)
class StaffChat:
    bind: re.Pattern[str]
    max_failures: int
    failure_window: timedelta
    list_words: tuple[str, ...]  # the first is the one shown
    list_length: int
    help_words: frozenset[str]
    commands: dict[str, Command]
    command: re.Pattern[str]

    def check(self, workflow_actions: set[str], part_words: set[str]) -> None:
        """Refuse a [staff_chat] naming an action or part word that does not exist (at
        start, not as an error on a staff member's message)."""
        unknown = sorted({c.action for c in self.commands.values() if not c.part} - workflow_actions
                         | {c.part for c in self.commands.values() if c.part} - part_words)
        if unknown:
            raise ValueError(f"notices.toml [staff_chat]: unknown actions or part words {unknown}")

    @classmethod
    def load(cls, path: Path) -> "StaffChat":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)["staff_chat"]
        commands = {c["word"]: Command(c["word"], c.get("action", ""), c.get("note", NOTE_NONE),
                                       c.get("usage", c["word"]), c.get("ask", ""), c.get("part", ""))
                    for c in raw["command"]}
        words = "|".join(re.escape(w) for w in sorted(commands, key=len, reverse=True))
        return cls(
            bind=re.compile(rf"{re.escape(raw['bind_word'])}[\s:：]*([0-9A-Za-z][0-9A-Za-z\s\-]*)"),
            max_failures=int(raw["bind_max_failures"]),
            failure_window=timedelta(minutes=int(raw["bind_failure_window_minutes"])),
            list_words=tuple(raw["list_words"]),
            list_length=int(raw["list_length"]),
            help_words=frozenset(raw["help_words"]),
            commands=commands,
            command=re.compile(rf"({words})\s*({TYPED_NUMBER})?[\s,，:：。]*(.*)", re.DOTALL),
        )

    def usage(self, member: Staff, *, listing: bool = True) -> str:
        """接单 N、办结 N 说明、退回 N 原因、我的工单 — part commands only for a member of a
        department (they are the ones with parts)."""
        usages = [c.usage for c in self.commands.values() if member.department or not c.part]
        return "、".join([*usages, self.list_words[0]] if listing else usages)


@functools.cache
def _load(path: Path) -> StaffChat:
    return StaffChat.load(path)


def chat_of(session: Session) -> StaffChat:
    return _load(session.settings.config_dir / CONFIG_FILE)


def _plain(text: str) -> str:
    """Full-width letters, digits and spaces as ASCII (ＡＢ１２ → AB12), trimmed."""
    return unicodedata.normalize("NFKC", text).strip().rstrip("。.!！")


def bind_code(text: str, chat: StaffChat) -> str | None:
    """The code of 「绑定 CODE」 (any case, spaces, full-width), else None."""
    match = chat.bind.fullmatch(_plain(text))
    return match.group(1).replace("-", "") if match else None


# ---------------------------------------------------------------- the registry's entry

def first(resident: Handler | None) -> Handler:
    """The handler for a message a person sent: staff's here, else the resident's."""

    async def handle(msg: Inbound, session: Session) -> str | None:
        handler = await _staff_handler(msg, session) or resident
        return await handler(msg, session) if handler else None

    return handle


async def _staff_handler(msg: Inbound, session: Session) -> Handler | None:
    if msg.content and bind_code(msg.content, chat_of(session)) is not None:
        return bind
    org, openid = session.services.case.org, session.resident.openid
    known = org.by_openid(openid) or org.disabled_by_openid(openid)
    if known is None:
        return None  # a resident (no query: staff bound since the last refresh are known at once, _known_here)
    if await _bound_and_active(session, known) != known.active:
        # Disabled, re-enabled or unbound elsewhere since this worker loaded the staff: the
        # staff cache refreshes every 30 s; a command must not wait for it.
        await org.reload_in(session.db)
    if member_of(session) is not None:
        return on_message
    return disabled if _numbered_command(msg, session) else None


async def _bound_and_active(session: Session, member: Staff) -> bool:
    """Whether the database has this WeChat bound to `member`, and the account active."""
    found = await session.db.exec(select(Staff.id).where(Staff.id == member.id, col(Staff.active).is_(True),
                                                         Staff.openid == session.resident.openid))
    return found.first() is not None


def _numbered_command(msg: Inbound, session: Session) -> re.Match[str] | None:
    """A staff command with a ticket number or list index: what a former member may still
    send out of habit. Anything else from them (「退回来的垃圾…」, 「我的工单」) is a resident's."""
    found = chat_of(session).command.fullmatch((msg.content or "").strip())
    return found if found is not None and found.group(2) else None


async def disabled(msg: Inbound, session: Session) -> str:
    """A numbered staff command from the WeChat of a disabled member: said plainly, not
    taken as a resident's query or report, and audited as a refusal (it commits with
    this reply)."""
    case, chat = session.services.case, chat_of(session)
    member = case.org.disabled_by_openid(session.resident.openid)
    command = _numbered_command(msg, session)
    assert command is not None
    word = chat.commands[command.group(1)]
    action = case.parts.transitions[word.part].action if word.part else word.action
    session.db.add(AuditEntry(at=session.now, actor=Actor.of_staff(member).code if member else RESIDENT_CODE,
                              action=action, target=_plain(command.group(2))[:64], outcome=REFUSED,
                              reason=texts.STAFF_DISABLED[:300]))
    return texts.STAFF_DISABLED


def member_of(session: Session) -> Staff | None:
    """The active staff member whose WeChat this is, if any."""
    return session.services.case.org.by_openid(session.resident.openid)


async def on_message(msg: Inbound, session: Session) -> str:
    """Whatever a bound staff member sends: a command, the list, or the help."""
    member = member_of(session)
    assert member is not None
    chat = chat_of(session)
    words = _plain(msg.content)
    if words in chat.list_words:
        return await my_work(session, member)
    command = chat.command.fullmatch(msg.content.strip())  # the note as typed, punctuation and all
    if command is not None:
        target = _plain(command.group(2)) if command.group(2) else None
        return await _command(session, member, chat.commands[command.group(1)], target, command.group(3).strip())
    reply = staff_help(session, member)
    return reply if words in chat.help_words else f"{texts.STAFF_NOT_A_COMMAND}\n{reply}"


def staff_help(session: Session, member: Staff) -> str:
    return texts.STAFF_HELP.format(name=member.name, role=_role(session, member), commands=chat_of(session).usage(member))


def _role(session: Session, member: Staff) -> str:
    return session.services.case.org.rights.role_label(member.role)


# ---------------------------------------------------------------- binding

def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


async def _failures(session: Session, chat: StaffChat) -> int:
    since = session.now - chat.failure_window
    return (await session.db.exec(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.action == BIND_ACTION, AuditEntry.outcome == REFUSED,
        AuditEntry.target == session.resident.openid, col(AuditEntry.at) > since))).one()


def _audit(session: Session, actor: str, outcome: str, reason: str) -> None:
    session.db.add(AuditEntry(at=session.now, actor=actor, action=BIND_ACTION, target=session.resident.openid,
                              outcome=outcome, reason=reason[:300]))


def _refuse(session: Session, reason: str) -> str:
    """A failed attempt, counted (AuditEntry rows, kept with the reply)."""
    member = member_of(session)
    _audit(session, Actor.of_staff(member).code if member else RESIDENT_CODE, REFUSED, reason)
    return reason


async def bind(msg: Inbound, session: Session) -> str:
    """「绑定 CODE」: the invite's staff member gets this openid, in this transaction."""
    chat = chat_of(session)
    if await _failures(session, chat) >= chat.max_failures:
        return texts.BIND_LOCKED.format(minutes=int(chat.failure_window.total_seconds() // 60))
    digest = code_hash(bind_code(msg.content, chat) or "")
    invite = (await session.db.exec(select(StaffInvite).where(StaffInvite.code_hash == digest))).first()
    if invite is None:
        return _refuse(session, texts.BIND_BAD_CODE)
    if invite.used_at is not None:
        return _refuse(session, texts.BIND_USED)
    if _aware(invite.expires_at) <= session.now:
        return _refuse(session, texts.BIND_EXPIRED)
    staff = await session.db.get(Staff, invite.staff_id)
    if staff is None or not staff.active:
        return _refuse(session, texts.BIND_INACTIVE)
    openid = session.resident.openid
    other = (await session.db.exec(select(Staff).where(Staff.openid == openid, Staff.id != staff.id))).first()
    if other is not None:
        return _refuse(session, texts.BIND_TAKEN.format(name=other.name))
    if not await _claim(session, digest):  # another attempt used it a moment ago
        return _refuse(session, texts.BIND_USED)
    staff.openid = openid
    session.db.add(staff)
    _audit(session, Actor.of_staff(staff).code, BOUND, f"绑定微信：{staff.name}（{staff.login or staff.id}）")
    await bump_org_version(session.db)  # every worker reloads the organisation
    session.reset()
    _known_here(session, staff.id or 0, openid)
    return texts.STAFF_BOUND.format(name=staff.name, role=_role(session, staff), commands=chat.usage(staff))


async def _claim(session: Session, digest: str) -> bool:
    """Mark the invite used, only if it still is unused (two attempts at once: one wins)."""
    result = await session.db.exec(update(StaffInvite).where(  # type: ignore[call-overload]
        col(StaffInvite.code_hash) == digest, col(StaffInvite.used_at).is_(None))
        .values(used_at=session.now, used_by=session.resident.openid))
    return result.rowcount == 1


def _known_here(session: Session, staff_id: int, openid: str) -> None:
    """After commit, this worker knows the binding at once (the others on their next refresh)."""
    services = session.services
    org = services.case.org

    def apply() -> None:
        org.note_binding(staff_id, openid)
        services.tasks.spawn(org.refresh_if_changed(services.db), name="org-refresh")

    session.after_commit(apply)


# ---------------------------------------------------------------- commands

async def _command(session: Session, member: Staff, command: Command, target: str | None, note: str) -> str:
    if target is None:
        return texts.STAFF_NEED_NUMBER.format(example=command.usage.replace("N", "1", 1))
    number = _ticket_number(session, target)
    if number is None:
        return texts.STAFF_NO_SUCH_INDEX.format(index=target)
    if command.note == NOTE_REQUIRED and not note:
        return command.ask or texts.STAFF_NEED_NOTE.format(usage=command.usage)
    if command.part:
        return await _part_command(session, member, command, number, note)
    case = session.services.case
    action, given = command.action, note if command.note != NOTE_NONE and note else None

    async def work() -> str:
        check_request(case, action, None, None)
        done = await act_in(case, session.db, number, action, Actor.of_staff(member), given)
        _kick_if(session, done.notices)
        return texts.STAFF_DONE.format(number=done.number, before=case.workflow.label(done.from_status),
                                       after=case.workflow.label(done.to_status))

    return await _attempt(session, member, action, number, work)


async def _part_command(session: Session, member: Staff, command: Command, number: str, note: str) -> str:
    """协办接单 / 协办办结: the member's department's part of a joint ticket."""
    case = session.services.case
    if not member.department:
        return texts.STAFF_NO_DEPARTMENT
    department = member.department
    transition = case.parts.transitions[command.part]
    given = note if command.note != NOTE_NONE and note else None

    async def work() -> str:
        done = await act_on_part_in(case, session.db, number, department, transition, Actor.of_staff(member), given)
        _kick_if(session, done.notices)
        return texts.STAFF_PART_DONE.format(number=number, before=case.parts.label(done.from_status),
                                            after=case.parts.label(done.to_status))

    return await _attempt(session, member, transition.action, number, work)


async def _attempt(session: Session, member: Staff, action: str, number: str,
                   work: Callable[[], Awaitable[str]]) -> str:
    """Run a command's work: a refusal is shown and audited (after this message's commit,
    in a transaction of its own, so it is kept); another desk error is shown as is."""
    try:
        return await work()
    except Refused as exc:
        # Refused before anything changed: the audit row commits with this message's reply.
        session.db.add(AuditEntry(at=session.now, actor=Actor.of_staff(member).code, action=action, target=number,
                                  outcome=REFUSED, reason=str(exc)[:300]))
        return texts.STAFF_REFUSED.format(reason=str(exc))
    except DeskError as exc:
        return str(exc)


def _kick_if(session: Session, notices: int) -> None:
    if notices:
        session.after_commit(session.services.outbox.kick)


def _ticket_number(session: Session, target: str) -> str | None:
    """A ticket number as given, or the one at that place of the last 「我的工单」."""
    if re.fullmatch(TICKET_NUMBER, target):
        return target
    listed = session.data.get(LIST_KEY) or []
    index = int(target)
    return listed[index - 1] if 1 <= index <= len(listed) else None


# ---------------------------------------------------------------- 我的工单

async def my_work(session: Session, member: Staff) -> str:
    """Open tickets they handle, or waiting in a queue they are told of (their grid,
    their department, the triage queue above …), newest first, numbered."""
    tickets = await work_of(session, member, chat_of(session).list_length)
    session.reset(**{LIST_KEY: [t.number for t in tickets]})
    if not tickets:
        return texts.STAFF_LIST_EMPTY
    case = session.services.case
    lines = [texts.STAFF_LIST_HEAD]
    for index, ticket in enumerate(tickets, 1):
        category = case.router.taxonomy.categories.get(ticket.category)
        due = ticket.closure_due_at if ticket.accepted_at else ticket.response_due_at
        lines.append(texts.STAFF_LIST_ITEM.format(
            index=index, number=ticket.number, category=category.name if category else ticket.category,
            status=case.workflow.label(ticket.status), due=format_local(due) or "—"))
    lines.append(texts.STAFF_LIST_TAIL.format(commands=chat_of(session).usage(member, listing=False)))
    return "\n".join(lines)


def _queues(session: Session, member: Staff) -> dict[str, tuple[str, ...]]:
    """The groups they belong to → the states whose arrival notifies that group."""
    case = session.services.case
    groups = {name for name, selectors in notices_of(case).groups.items()
              if any(member.role in s.roles for s in selectors)}
    return {group: tuple(code for code in case.workflow.states if case.workflow.notifies(code) == group)
            for group in groups}


def _near(session: Session, member: Staff, group: str) -> list[ColumnElement[bool]]:
    """Where a group's tickets can be for them, roughly (SQL; `in_scope` decides)."""
    clauses: list[ColumnElement[bool]] = []
    for selector in notices_of(session.services.case).groups[group]:
        if member.role not in selector.roles:
            continue
        if selector.where == GRID:
            clauses.append(col(Ticket.area_code) == member.area_code if member.area_code else false())
        elif selector.where == DEPARTMENT:
            clauses.append(col(Ticket.department) == member.department if member.department else false())
        else:
            clauses.append(true())
    return clauses


async def work_of(session: Session, member: Staff, limit: int) -> list[Ticket]:
    case = session.services.case
    workflow = case.workflow
    queues = _queues(session, member)
    waiting = [and_(col(Ticket.status).in_(states), or_(*_near(session, member, group)))
               for group, states in queues.items() if states]
    parts = await _open_parts_of(session, member)
    rows = await session.db.exec(
        select(Ticket).where(col(Ticket.status).in_(workflow.open_states()),
                             or_(col(Ticket.handler_id) == member.id, col(Ticket.id).in_(parts or [-1]), *waiting),
                             rights.visible(case, Actor.of_staff(member)))  # as the console lists them
        .order_by(col(Ticket.created_at).desc(), col(Ticket.id).desc()).limit(FETCHED))
    mine = [t for t in rows.all()
            if t.handler_id == member.id or t.id in parts
            or any(t.status in states and in_scope(case, member, t, group) for group, states in queues.items())]
    return mine[:limit]


async def _open_parts_of(session: Session, member: Staff) -> set[int]:
    """Tickets where the member's department has a joint-dispatch part not yet done."""
    if not member.department:
        return set()
    done = session.services.case.parts.done_states
    rows = await session.db.exec(select(TicketPart.ticket_id).where(TicketPart.department == member.department,
                                                                     col(TicketPart.status).not_in(done)))
    return set(rows.all())
