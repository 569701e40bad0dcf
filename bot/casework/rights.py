"""Who may do what to which ticket: the rule table of config/rights.toml.

`refusal` returns None when `actor` may take `action` on `ticket`, else the reason, in
Chinese, shown to them as is; bot.casework.desk audits every refusal. `visible` is the
same table as a SQL filter on Ticket, for lists. The table itself is held by the
organisation (`case.org.rights`), loaded once with it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from sqlalchemy import String, and_, cast, false, or_, true
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select

from bot.casework.actors import RESIDENT_CODE, Actor
from storage.models import Staff, Ticket, TicketPart

if TYPE_CHECKING:
    from bot.casework.context import Casework
    from bot.casework.workflow import Workflow

VIEW = "view"
MANAGE_STAFF = "manage_staff"  # the console's staff admin (extra action, scope "all")
AUDIT = "audit"  # reading the audit log (extra action, scope "all")
WILDCARD = "*"
# Scopes (see config/rights.toml).
ALL, SUBTREE, GRID, DEPARTMENT, CO_DEPARTMENT, PART, OWN = (
    "all", "subtree", "grid", "department", "co_department", "part", "own")
SCOPES = frozenset({ALL, SUBTREE, GRID, DEPARTMENT, CO_DEPARTMENT, PART, OWN})


@dataclass(frozen=True)
class Rule:
    scope: str
    actions: frozenset[str]

    def allows(self, action: str) -> bool:
        return WILDCARD in self.actions or action in self.actions


@dataclass(frozen=True)
class Role:
    code: str
    label: str
    rules: tuple[Rule, ...]
    area_levels: tuple[str, ...] = ()  # what a staff member's area may be (empty: none needed)
    needs_department: bool = False


@dataclass(frozen=True)
class Level:
    code: str
    label: str
    aliases: tuple[str, ...]


class RightsTable:
    def __init__(self, roles: dict[str, Role], actors: dict[str, Role], levels: tuple[Level, ...],
                 handling_actions: frozenset[str], extra_actions: dict[str, str]) -> None:
        self.roles = roles  # staff roles by code
        self.actors = actors  # the resident and system actors by Actor code
        self.levels = levels  # top down
        self.handling_actions = handling_actions  # 采办分离
        self.extra_actions = extra_actions  # action → Chinese name, besides the workflow's

    @classmethod
    def load(cls, path: Path) -> "RightsTable":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        levels = tuple(Level(v["code"], v["label"], tuple(v.get("aliases", ()))) for v in raw.get("level", []))
        table = cls({r["code"]: _role(r) for r in raw.get("role", [])},
                    {a["code"]: _role(a) for a in raw.get("actor", [])},
                    levels, frozenset(raw.get("handling_actions", ())), dict(raw.get("extra_actions", {})))
        table._check_levels()
        return table

    def _check_levels(self) -> None:
        known = {level.code for level in self.levels}
        for role in [*self.roles.values(), *self.actors.values()]:
            if set(role.area_levels) - known:
                raise ValueError(f"role {role.code}: unknown area levels {sorted(set(role.area_levels) - known)}")

    def check(self, workflow: "Workflow", part_actions: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """Every action named is a workflow transition, a part action or an extra action;
        the resident may take the workflow's resident reply action."""
        known = set(workflow.transitions) | set(part_actions) | set(self.extra_actions) | {WILDCARD}
        for role in [*self.roles.values(), *self.actors.values()]:
            for rule in role.rules:
                if rule.scope != PART and rule.actions - known:
                    raise ValueError(f"rights: role {role.code} names unknown actions {sorted(rule.actions - known)}")
        if self.handling_actions - known:
            raise ValueError(f"rights: unknown handling actions {sorted(self.handling_actions - known)}")
        resident = self.actors.get(RESIDENT_CODE)
        reply = workflow.resident_reply_action
        if reply and (resident is None or not any(r.allows(reply) for r in resident.rules)):
            raise ValueError(f"rights: the resident may not take the resident reply action {reply}")

    def role_label(self, code: str) -> str:
        role = self.roles.get(code)
        return role.label if role else code

    def role_named(self, text: str) -> Role | None:
        """A staff role by its code or its Chinese label."""
        text = text.strip()
        return self.roles.get(text) or next((r for r in self.roles.values() if r.label == text), None)

    def level_named(self, text: str) -> str | None:
        """A level code by its code, label or alias."""
        text = text.strip()
        for level in self.levels:
            if text in (level.code, level.label, *level.aliases):
                return level.code
        return None

    def level_rank(self, code: str) -> int:
        return next((i for i, level in enumerate(self.levels) if level.code == code), len(self.levels))

    def level_label(self, code: str) -> str:
        return next((level.label for level in self.levels if level.code == code), code)


def _role(raw: dict) -> Role:
    rules = tuple(Rule(r["scope"], frozenset(r.get("actions", ()))) for r in raw.get("rule", []))
    for rule in rules:
        if rule.scope not in SCOPES:
            raise ValueError(f"role {raw['code']}: unknown scope {rule.scope} (known: {sorted(SCOPES)})")
    return Role(raw["code"], raw["label"], rules, tuple(raw.get("area_levels", ())),
                bool(raw.get("needs_department", False)))


# ---------------------------------------------------------------- the check

def refusal(case: "Casework", actor: Actor, ticket: Ticket, action: str, *, part: str | None = None) -> str | None:
    """Why `actor` may not take `action` on `ticket` (None: they may). `part`: the
    department of the joint-dispatch part the action is on (part actions only)."""
    table = case.org.rights
    staff = _current(case, actor)
    if actor.is_staff and (staff is None or not staff.active):
        login = actor.staff.login if actor.staff else ""
        return f"您的账号（{login or actor.code}）已停用，不能办理工单"
    role = table.roles.get(staff.role) if staff else table.actors.get(actor.code)
    if role is None:
        return f"角色 {staff.role} 没有配置权限（config/rights.toml）" if staff else f"不认识的操作人 {actor.code}"
    rules = [r for r in role.rules if part is not None or r.scope != PART]
    allowing = [r for r in rules if r.allows(action)]
    if not allowing:
        who = f"您的角色（{role.label}）" if staff else role.label
        return f"{who}不能执行「{action_label(case, action)}」"
    if staff is not None and _reported_by(staff, ticket) and _is_handling(table, action, part):
        return "采办分离：您是此工单的反映人，不能办理"
    if any(_matches(case, actor, staff, r.scope, ticket, part) for r in allowing):
        return None
    return _out_of_scope(case, actor, staff, allowing[0].scope, ticket, rules, part)


def destination_refusal(case: "Casework", actor: Actor, area_code: str) -> str | None:
    """Why `actor` may not send a ticket to grid `area_code` (None: they may). Staff of a
    node (a street's dispatcher) route only within it; a ticket for elsewhere goes back
    to whoever dispatches above them (退回), not straight into another street's queue."""
    staff = _current(case, actor)
    if staff is None or staff.area_code is None or _in_subtree(case, staff.area_code, area_code):
        return None
    return (f"{case.areas.full_name(area_code) or area_code}不在您的管辖范围"
            f"（{case.areas.full_name(staff.area_code) or staff.area_code}）内：请退回上级重新派单")


def grants(case: "Casework", actor: Actor, action: str) -> bool:
    """Whether `actor` may take `action` on everything (a rule of scope "all"): what the
    console asks before its admin pages, which are about no one ticket."""
    staff = _current(case, actor)
    if actor.is_staff and (staff is None or not staff.active):
        return False
    role = case.org.rights.roles.get(staff.role) if staff else case.org.rights.actors.get(actor.code)
    return role is not None and any(r.scope == ALL and r.allows(action) for r in role.rules)


def may(case: "Casework", actor: Actor, ticket: Ticket, action: str, *, part: str | None = None) -> bool:
    return refusal(case, actor, ticket, action, part=part) is None


def action_label(case: "Casework", action: str) -> str:
    """The Chinese name of a workflow action, a part action (联合派单) or an extra action."""
    transition = case.workflow.transitions.get(action)
    if transition is not None:
        return transition.label
    part = next((t for t in case.parts.transitions.values() if t.action == action), None)
    return part.label if part is not None else case.org.rights.extra_actions.get(action, action)


def _current(case: "Casework", actor: Actor) -> Staff | None:
    """The staff member as the organisation knows them now (role, grid, active), or as
    the actor carries them when added since the organisation was last loaded."""
    if actor.staff is None:
        return None
    return case.org.record(actor.staff.id) or actor.staff


def _reported_by(staff: Staff, ticket: Ticket) -> bool:
    return bool(staff.openid) and staff.openid == ticket.openid


def _is_handling(table: RightsTable, action: str, part: str | None) -> bool:
    return action in table.handling_actions or (part is not None and action != VIEW)


# ---------------------------------------------------------------- scopes

def _in_subtree(case: "Casework", node_code: str | None, area_code: str | None) -> bool:
    if node_code is None:
        return False
    if area_code is None:
        return _is_top(case, node_code)
    return any(node.code == node_code for node in case.areas.ancestors(area_code))


def _is_top(case: "Casework", node_code: str) -> bool:
    node = case.areas.nodes.get(node_code)
    return node is not None and (node.parent_code is None or node.parent_code not in case.areas.nodes)


def _within(case: "Casework", staff: Staff, ticket: Ticket) -> bool:
    return staff.area_code is None or _in_subtree(case, staff.area_code, ticket.area_code)


Matcher = Callable[["Casework", Actor, Staff, Ticket, "str | None"], bool]
MATCHERS: dict[str, Matcher] = {
    SUBTREE: lambda case, actor, staff, ticket, part: _in_subtree(case, staff.area_code, ticket.area_code),
    GRID: lambda case, actor, staff, ticket, part: staff.area_code is not None and ticket.area_code == staff.area_code,
    DEPARTMENT: lambda case, actor, staff, ticket, part: (
        bool(staff.department) and ticket.department == staff.department and _within(case, staff, ticket)),
    CO_DEPARTMENT: lambda case, actor, staff, ticket, part: (
        bool(staff.department) and staff.department in (ticket.co_departments or []) and _within(case, staff, ticket)),
    PART: lambda case, actor, staff, ticket, part: (
        part is not None and part == staff.department and _within(case, staff, ticket)),
}


def _matches(case: "Casework", actor: Actor, staff: Staff | None, scope: str, ticket: Ticket,
             part: str | None) -> bool:
    if scope == ALL:
        return True
    if scope == OWN:
        return bool(actor.openid) and ticket.openid == actor.openid
    return staff is not None and MATCHERS[scope](case, actor, staff, ticket, part)


def _out_of_scope(case: "Casework", actor: Actor, staff: Staff | None, scope: str, ticket: Ticket,
                  rules: list[Rule], part: str | None) -> str:
    """Why the ticket is not theirs; and what they may do on it, if anything."""
    reason = _scope_reason(case, staff, scope, ticket)
    granted = sorted({a for r in rules if _matches(case, actor, staff, r.scope, ticket, part) for a in r.actions})
    if granted and WILDCARD not in granted:
        reason += f"；您对此工单只能：{'、'.join(action_label(case, a) for a in granted)}"
    return reason


def _scope_reason(case: "Casework", staff: Staff | None, scope: str, ticket: Ticket) -> str:
    number = ticket.number
    if staff is None:
        return f"工单 {number} 不是您反映的"
    area = case.areas.name(staff.area_code) or staff.area_code or "未设置"
    department = case.router.taxonomy.department_name(staff.department) or "未设置"
    if scope == GRID:
        return f"工单 {number} 不在您负责的网格（{area}）"
    if scope == SUBTREE:
        return f"工单 {number} 不在您管辖的区域（{area}）"
    if staff.area_code and not _within(case, staff, ticket):
        return f"工单 {number} 不在您部门管辖的区域（{area}）"
    if scope == DEPARTMENT:
        return f"工单 {number} 不属于您的部门（{department}）"
    if scope == CO_DEPARTMENT:
        return f"工单 {number} 没有请您的部门（{department}）协办"
    return f"这不是您部门（{department}）在工单 {number} 中的协办任务"


# ---------------------------------------------------------------- lists

def visible(case: "Casework", actor: Actor) -> ColumnElement[bool]:
    """A where-clause on Ticket: the tickets `actor` may view."""
    staff = _current(case, actor)
    if actor.is_staff and (staff is None or not staff.active):
        return false()
    role = case.org.rights.roles.get(staff.role) if staff else case.org.rights.actors.get(actor.code)
    if role is None:
        return false()
    clauses = [_scope_clause(case, actor, staff, r.scope) for r in role.rules if r.allows(VIEW)]
    return or_(*clauses) if clauses else false()


def _scope_clause(case: "Casework", actor: Actor, staff: Staff | None, scope: str) -> ColumnElement[bool]:
    if scope == ALL:
        return true()
    if scope == OWN:
        return col(Ticket.openid) == actor.openid if actor.openid else false()
    if staff is None:
        return false()
    if scope == GRID:
        return col(Ticket.area_code) == staff.area_code if staff.area_code else false()
    if scope == SUBTREE:
        return _subtree_clause(case, staff.area_code)
    if not staff.department:
        return false()
    within = _subtree_clause(case, staff.area_code) if staff.area_code else true()
    return and_(_department_clause(scope, staff.department), within)


def _department_clause(scope: str, department: str) -> ColumnElement[bool]:
    if scope == DEPARTMENT:
        return col(Ticket.department) == department
    if scope == CO_DEPARTMENT:  # a JSON list of codes: match the quoted code in its text
        escaped = department.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return cast(Ticket.co_departments, String).like(f'%"{escaped}"%', escape="\\")
    parts = select(TicketPart.ticket_id).where(col(TicketPart.department) == department)
    return col(Ticket.id).in_(parts)


def _subtree_clause(case: "Casework", node_code: str | None) -> ColumnElement[bool]:
    if node_code is None:
        return false()
    codes = [code for code in case.areas.nodes if _in_subtree(case, node_code, code)]
    clause = col(Ticket.area_code).in_(codes) if codes else false()
    return or_(clause, col(Ticket.area_code).is_(None)) if _is_top(case, node_code) else clause
