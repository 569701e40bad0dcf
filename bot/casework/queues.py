"""Staff queues (config/console.toml): named filters on tickets, always within what the
staff member may view (rights.visible), with the console's filters, search and pages.
The console and the JSON API list tickets through `find_queue` only."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from sqlalchemy import String, and_, case as when, cast, false, func, or_, true
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.casework import rights
from bot.casework.actors import Actor
from bot.casework.context import Casework
from storage.models import Staff, Ticket

CONFIG_FILE = "console.toml"
MAX_PAGE_SIZE = 200
MAX_SEARCH_CHARS = 100


@dataclass(frozen=True)
class Queue:
    code: str
    label: str
    filter: str
    kind: str | None = None
    open_only: bool = True
    roles: tuple[str, ...] = ()

    def shown_to(self, staff: Staff) -> bool:
        return not self.roles or staff.role in self.roles


def _department(case: Casework, staff: Staff, queue: Queue) -> ColumnElement[bool]:
    if not staff.department:
        return false()
    escaped = staff.department.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(col(Ticket.department) == staff.department,
               cast(Ticket.co_departments, String).like(f'%"{escaped}"%', escape="\\"))


Filter = Callable[[Casework, Staff, Queue], ColumnElement[bool]]
FILTERS: dict[str, Filter] = {
    "handler": lambda case, staff, queue: col(Ticket.handler_id) == staff.id,
    "grid": lambda case, staff, queue: col(Ticket.area_code) == staff.area_code if staff.area_code else false(),
    "department": _department,
    "kind": lambda case, staff, queue: col(Ticket.status).in_(case.workflow.states_of_kind(queue.kind or "")),
    "overdue": lambda case, staff, queue: col(Ticket.overdue).is_(True),
    "escalated": lambda case, staff, queue: col(Ticket.escalation_level) > 0,
    "visible": lambda case, staff, queue: true(),
}


def _read(config_dir: Path) -> dict:
    with open(config_dir / CONFIG_FILE, "rb") as fh:
        return tomllib.load(fh)


def photo_actions(config_dir: Path) -> frozenset[str]:
    """Actions whose console form takes a photo ([ticket] photo_actions)."""
    return frozenset(_read(config_dir).get("ticket", {}).get("photo_actions", ()))


def secondary_actions(config_dir: Path) -> frozenset[str]:
    """Actions the ticket page shows last, as plain buttons ([ticket] secondary_actions)."""
    return frozenset(_read(config_dir).get("ticket", {}).get("secondary_actions", ()))


def load_queues(config_dir: Path) -> tuple[Queue, ...]:
    raw = _read(config_dir)
    queues = tuple(Queue(q["code"], q["label"], q["filter"], q.get("kind"), bool(q.get("open", True)),
                         tuple(q.get("roles", ()))) for q in raw.get("queue", []))
    for queue in queues:
        if queue.filter not in FILTERS:
            raise ValueError(f"{CONFIG_FILE}: queue {queue.code}: unknown filter {queue.filter} (known: {sorted(FILTERS)})")
    if len({q.code for q in queues}) != len(queues) or not queues:
        raise ValueError(f"{CONFIG_FILE}: queue codes must be unique, and there must be one at least")
    return queues


@dataclass(frozen=True)
class QueueQuery:
    """What the console's filter bar asks for; every field optional."""

    status: str | None = None
    category: str | None = None
    urgency: str | None = None
    area_code: str | None = None  # this node and everything under it
    created_from: datetime | None = None
    created_to: datetime | None = None
    search: str | None = None  # a ticket number, or words of the text / address
    page: int = 1
    page_size: int = 30


@dataclass
class QueuePage:
    tickets: list[Ticket]
    total: int
    page: int
    page_size: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def conditions(case: Casework, actor: Actor, queue: Queue, query: QueueQuery) -> list[ColumnElement[bool]]:
    staff = actor.staff
    if staff is None:
        return [false()]
    where: list[ColumnElement[bool]] = [rights.visible(case, actor), FILTERS[queue.filter](case, staff, queue)]
    if queue.open_only and not query.status:
        where.append(col(Ticket.status).in_(case.workflow.open_states()))
    if query.status:
        where.append(col(Ticket.status) == query.status)
    if query.category:
        where.append(col(Ticket.category) == query.category)
    if query.urgency:
        where.append(col(Ticket.urgency) == query.urgency)
    if query.area_code:
        under = [code for code in case.areas.nodes
                 if any(node.code == query.area_code for node in case.areas.ancestors(code))]
        where.append(col(Ticket.area_code).in_(under) if under else false())
    if query.created_from:
        where.append(col(Ticket.created_at) >= query.created_from)
    if query.created_to:
        where.append(col(Ticket.created_at) <= query.created_to)
    if query.search:
        text = query.search.strip()[:MAX_SEARCH_CHARS]
        if text:
            where.append(or_(col(Ticket.number) == text,
                             and_(col(Ticket.description).like(_like(text), escape="\\")),
                             col(Ticket.address).like(_like(text), escape="\\")))
    return where


async def find_queue(case: Casework, session: AsyncSession, actor: Actor, queue: Queue,
                     query: QueueQuery) -> QueuePage:
    """One page of `queue` for `actor`: most urgent deadline first (breached at the top),
    then newest."""
    where = conditions(case, actor, queue, query)
    size = max(1, min(query.page_size, MAX_PAGE_SIZE))
    page = max(1, query.page)
    total = (await session.exec(select(func.count()).select_from(Ticket).where(*where))).one()  # type: ignore[call-overload]
    due = when((col(Ticket.accepted_at).is_(None), col(Ticket.response_due_at)), else_=col(Ticket.closure_due_at))
    statement = (select(Ticket).where(*where)
                 .order_by(col(Ticket.closed_at).is_not(None), due.is_(None), due, col(Ticket.id).desc())
                 .offset((page - 1) * size).limit(size))
    tickets = list((await session.exec(statement)).all())
    return QueuePage(tickets, int(total), page, size)


async def queue_counts(case: Casework, session: AsyncSession, actor: Actor, queues: tuple[Queue, ...]) -> dict[str, int]:
    """How many tickets each queue holds (the tab badges)."""
    counts = {}
    for queue in queues:
        where = conditions(case, actor, queue, QueueQuery())
        counts[queue.code] = int((await session.exec(select(func.count()).select_from(Ticket).where(*where))).one())  # type: ignore[call-overload]
    return counts


def queues_for(queues: tuple[Queue, ...], staff: Staff) -> tuple[Queue, ...]:
    return tuple(q for q in queues if q.shown_to(staff))
