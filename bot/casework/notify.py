"""Who is told what when a ticket moves: the staff who must act, and the residents.

Staff notices are the kinds of config/notices.toml: each is a template message when the
account has a template for it, else a plain text. `notice_rows` builds the outbox rows
of one notice for whoever must get it; `members` says who a recipient group is for a
ticket (grid workers of its grid, liaisons of its department, duty staff above it …).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from sqlmodel import col, select

from bot.clock import format_local
from bot.casework.context import Casework
from storage.models import Staff, Ticket
from storage.outbox_rows import template_row

NOTICES_FILE = "notices.toml"
SUMMARY_CHARS = 60
# Where a selector's staff sit relative to the ticket (config/notices.toml [[group.*]] where).
GRID, DEPARTMENT, ABOVE = "grid", "department", "above"
WHERE = frozenset({GRID, DEPARTMENT, ABOVE})


class _Blank(dict):
    """Notice values for str.format_map: a name the sender did not give is left empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _fill(pattern: str, values: dict[str, Any]) -> str:
    return pattern.format_map(_Blank(values))


@dataclass(frozen=True)
class Selector:
    """Staff of `roles` sitting `where` relative to a ticket (config/notices.toml [[group.*]])."""

    roles: frozenset[str]
    where: str
    label: str
    levels: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NoticeKind:
    code: str
    template_id: str
    title: str
    text: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Notices:
    kinds: dict[str, NoticeKind]
    groups: dict[str, tuple[Selector, ...]]
    arrival: dict[str, str]  # group a state notifies → the notice kind
    arrival_otherwise: str  # the group told of a ticket whose state notifies nobody
    red_urgencies: frozenset[str]
    red_notice: str
    red_group: str
    field_max_chars: int

    @classmethod
    def load(cls, path: Path, templates: str = "") -> "Notices":
        """config/notices.toml; `templates` ("kind=ID,kind=ID", [wechat] notice_templates)
        gives the account's template ids, over those of the file."""
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        ids = parse_templates(templates)
        kinds = {code: NoticeKind(code, ids.get(code, k.get("template_id", "")), k.get("title", ""), k["text"],
                                  dict(k.get("fields", {})))
                 for code, k in raw["notice"].items()}
        groups = {name: tuple(Selector(frozenset(s["roles"]), s["where"], s.get("label", ""),
                                       frozenset(s.get("levels", ()))) for s in selectors)
                  for name, selectors in raw["group"].items()}
        arrival = dict(raw["arrival"])
        otherwise = arrival.pop("otherwise")
        red = raw["red_warning"]
        notices = cls(kinds, groups, arrival, otherwise, frozenset(red["urgencies"]), red["notice"], red["group"],
                      int(raw.get("field_max_chars", 200)))
        notices.check(set(ids))
        return notices

    def check(self, templated: set[str]) -> None:
        """Refuse a file that names a kind, group or place that does not exist."""
        unknown = (templated | set(self.arrival.values()) | {self.red_notice}) - self.kinds.keys()
        if unknown:
            raise ValueError(f"notices.toml: unknown notice kinds {sorted(unknown)}")
        groups = set(self.arrival) | {self.arrival_otherwise, self.red_group}
        if groups - self.groups.keys():
            raise ValueError(f"notices.toml: unknown recipient groups {sorted(groups - self.groups.keys())}")
        bad = {s.where for selectors in self.groups.values() for s in selectors} - WHERE
        if bad:
            raise ValueError(f"notices.toml: unknown where {sorted(bad)} (one of {sorted(WHERE)})")
        for kind in self.kinds.values():  # a broken {…} fails here, not on a ticket
            for pattern in (kind.title, kind.text, *kind.fields.values()):
                _fill(pattern, {})

    def kind(self, code: str) -> NoticeKind:
        try:
            return self.kinds[code]
        except KeyError:
            raise ValueError(f"no notice kind {code} in config/notices.toml") from None


def parse_templates(spec: str) -> dict[str, str]:
    """ "new_ticket=ID, red_warning=ID" → {kind: template id}."""
    pairs = (item.split("=", 1) for item in spec.split(",") if "=" in item)
    return {kind.strip(): template.strip() for kind, template in pairs if kind.strip()}


def notices_of(case: Casework) -> Notices:
    return case.notices


# ------------------------------------------------------------ who

def _sits(case: Casework, selector: Selector, person: Staff, ticket: Ticket) -> bool:
    if selector.where == GRID:
        return ticket.area_code is not None and person.area_code == ticket.area_code
    if selector.where == DEPARTMENT:
        return bool(ticket.department) and person.department == ticket.department
    above = {n.code for n in case.areas.ancestors(ticket.area_code)
             if not selector.levels or n.level in selector.levels}
    return not above or person.area_code in above


def members(case: Casework, ticket: Ticket, group: str) -> list[tuple[Staff, str]]:
    """Active staff with a bound WeChat in `group` for this ticket, each once, with the
    label of the selector that found them (why they are told)."""
    found: dict[str, tuple[Staff, str]] = {}
    for selector in notices_of(case).groups.get(group, ()):
        for person in case.org.staff:
            if person.openid and person.openid not in found and person.role in selector.roles \
                    and _sits(case, selector, person, ticket):
                found[person.openid] = (person, selector.label)
    return list(found.values())


def in_scope(case: Casework, person: Staff, ticket: Ticket, group: str) -> bool:
    """Would a notice to `group` about this ticket reach this staff member?"""
    return any(person.role in s.roles and _sits(case, s, person, ticket)
               for s in notices_of(case).groups.get(group, ()))


# ------------------------------------------------------------ what

def ticket_fields(case: Casework, ticket: Ticket) -> dict[str, str]:
    """The values every ticket notice may use: {number} {category} {area} {summary} …"""
    summary = " ".join(ticket.description.split())
    due = ticket.closure_due_at if ticket.accepted_at else ticket.response_due_at
    return {
        "number": ticket.number,
        "appeal_type": ticket.appeal_type,
        "category": case.router.taxonomy.label(ticket.category),
        "urgency": ticket.urgency,
        "area": case.areas.full_name(ticket.area_code) or "未定位",
        "summary": summary if len(summary) <= SUMMARY_CHARS else summary[:SUMMARY_CHARS] + "…",
        "due": format_local(due) or "—",
        "status": case.workflow.label(ticket.status),
        "department": case.router.taxonomy.department_name(ticket.department),
    }


def notice_rows(case: Casework, kind: str, recipients: Iterable[Staff | str],
                fields: dict[str, Any]) -> list[dict]:
    """Outbox rows of one notice: a template message to a staff member when the kind has
    a template id, else (and to a resident, given as an openid) a text message."""
    notice = notices_of(case).kind(kind)
    limit = notices_of(case).field_max_chars
    text, title = _fill(notice.text, fields), _fill(notice.title, fields)
    data = {key: {"value": _fill(pattern, fields)[:limit]} for key, pattern in notice.fields.items()}
    rows = []
    for recipient in recipients:
        openid = recipient.openid if isinstance(recipient, Staff) else recipient
        if not openid:
            continue
        if isinstance(recipient, Staff) and notice.template_id:
            rows.append(template_row(openid, kind, notice.template_id, data, text, title=title,
                                     url=fields.get("url"), status=case.outbox.new_status))
        else:
            rows.append(case.outbox.text_row(openid, text, title=title, url=fields.get("url")))
    return rows


def notify_staff(case: Casework, ticket: Ticket) -> list[dict]:
    """The notice of a ticket arriving in a queue, to the group its state notifies
    (config/workflow.toml: the grid and department, or the dispatchers); a red-warning
    urgency also goes straight to the district duty staff (红色预警, 直报).
    Returns the outbox rows, for the caller to insert in its transaction."""
    notices = notices_of(case)
    fields = ticket_fields(case, ticket)
    group = case.workflow.notifies(ticket.status) or notices.arrival_otherwise
    kind = notices.arrival.get(group, notices.arrival[notices.arrival_otherwise])
    rows: list[dict] = []
    for person, why in members(case, ticket, group):
        rows += notice_rows(case, kind, [person], {**fields, "why": why})
    if ticket.urgency in notices.red_urgencies:
        for person, why in members(case, ticket, notices.red_group):
            rows += notice_rows(case, notices.red_notice, [person], {**fields, "why": why})
    return rows


async def resident_updates(case: Casework, session, ticket: Ticket, status: str,  # type: ignore[no-untyped-def]
                            note: str | None) -> list[dict]:
    """A status message to the resident, and to the residents whose reports were linked
    to this ticket as duplicates (they were told it covers theirs)."""
    label = case.workflow.label(status)
    if ticket.department:
        label += f"（{case.router.taxonomy.department_name(ticket.department)}）"
    linked = (await session.exec(select(Ticket.openid, Ticket.number)
                                 .where(col(Ticket.duplicate_of_id) == ticket.id))).all()
    said = f"\n处理说明：{note}" if note else ""
    rows = [case.outbox.text_row(ticket.openid, f"您的诉求 {ticket.number} 状态更新：{label}。{said}",
                                     title=f"工单 {ticket.number} {label}")]
    for openid, own_number in linked:
        if openid != ticket.openid:
            rows.append(case.outbox.text_row(
                openid, f"您反映的问题（{own_number}）与其他群众反映的同一问题一并办理，状态更新：{label}。{said}",
                title=f"工单 {own_number} {label}"))  # never the other resident's number
    return rows
