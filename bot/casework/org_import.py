"""Writing the organisation: records of bot.casework.org_files upserted by area code and
staff login, all checked first, in the caller's transaction.

`import_org` validates every record against the database and the file together (a
staff member's grid may be a new area of the same import) and raises `ImportRejected`
with every problem, naming the line and field, before anything is written. Then it adds
what is new, updates what differs, leaves the rest, disables staff marked 停用 (and,
with `disable_missing`, active staff the file does not list), bumps the organisation
version and records an audit entry. `minyi staff add|disable|enable` use the same code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.casework.org import bump_org_version
from bot.casework.org_files import AREA, STAFF, Record, field_label
from bot.casework.rights import RightsTable
from bot.clock import utcnow
from storage.models import Area, AuditEntry, Staff

DONE = "done"
TRUE_WORDS = {"true", "1", "yes", "y", "是", "在职", "启用", "正常"}
FALSE_WORDS = {"false", "0", "no", "n", "否", "停用", "离职", "禁用"}
AREA_COLUMNS = ("name", "level", "parent_code", "households", "center_lat", "center_lng", "places", "polygon")
STAFF_COLUMNS = ("name", "role", "area_code", "department", "openid", "active")
MAX_LENGTHS = {"code": 32, "name": 100, "login": 32, "openid": 64}


class ImportRejected(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class Tally:
    added: int = 0
    updated: int = 0
    disabled: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return self.added + self.updated + self.disabled


@dataclass
class Summary:
    areas: Tally = field(default_factory=Tally)
    staff: Tally = field(default_factory=Tally)

    @property
    def changed(self) -> bool:
        return bool(self.areas.changed or self.staff.changed)

    def text(self) -> str:
        a, s = self.areas, self.staff
        return (f"网格节点：新增 {a.added}，更新 {a.updated}，未变 {a.unchanged}；"
                f"工作人员：新增 {s.added}，更新 {s.updated}，停用 {s.disabled}，未变 {s.unchanged}")


@dataclass
class Org:
    """What records are checked against: the rights table, the departments, and the
    areas and staff as they will be after the import."""
    rights: RightsTable
    departments: dict[str, str]  # code → Chinese name (config/taxonomy.toml)
    areas: dict[str, Area]  # by code, existing
    staff: dict[str, Staff]  # by login, existing
    others: list[Staff]  # existing staff without a login (their openids count)
    levels: dict[str, str] = field(default_factory=dict)  # area code → level, after the import
    errors: list[str] = field(default_factory=list)

    def error(self, record: Record, name: str, problem: str) -> None:
        self.errors.append(f"{record.where} 字段「{field_label(record.kind, name)}」：{problem}")


Progress = Callable[[str], None]


async def load_org(session: AsyncSession, rights: RightsTable, departments: dict[str, str]) -> Org:
    areas = {a.code: a for a in (await session.exec(select(Area))).all()}
    everyone = list((await session.exec(select(Staff).order_by(col(Staff.id)))).all())
    return Org(rights, departments, areas, {p.login: p for p in everyone if p.login},
               [p for p in everyone if not p.login], {code: a.level for code, a in areas.items()})


async def import_org(session: AsyncSession, records: list[Record], rights: RightsTable,
                     departments: dict[str, str], *, actor: str, target: str, only_new: bool = False,
                     disable_missing: bool = False, progress: Progress | None = None) -> Summary:
    """Check, then write `records` (see the module docstring). `only_new`: leave rows
    that exist alone (the demo data at start). Raises ImportRejected; writes nothing then."""
    say = progress or (lambda message: None)
    org = await load_org(session, rights, departments)
    say(f"校验 {len(records)} 条记录…")
    areas, staff = _check(org, records, only_new)
    if disable_missing and not any(r.kind == STAFF for r in records):
        org.errors.append("文件中没有工作人员记录，不能按名单停用其他人员")
    if org.errors:
        raise ImportRejected(org.errors)
    say("比对现有数据…")
    summary = Summary()
    await _write_areas(session, org, areas, summary.areas)
    _write_staff(session, org, staff, summary.staff)
    if disable_missing:
        _disable_missing(session, org, {s["login"] for s in staff}, summary.staff)
    await finish(session, actor, "org_import", target, summary.text() if summary.changed else None)
    return summary


async def finish(session: AsyncSession, actor: str, action: str, target: str, reason: str | None) -> None:
    """After a change (reason given): bump the version and audit it, in the same transaction."""
    if reason is None:
        return
    await session.flush()
    await bump_org_version(session)
    session.add(AuditEntry(at=utcnow(), actor=actor[:64], action=action, target=target[:64], outcome=DONE,
                           reason=reason[:300]))


def _check(org: Org, records: list[Record], only_new: bool) -> tuple[list[dict], list[dict]]:
    """The checked area and staff rows (column → value) to write."""
    area_records = [r for r in records if r.kind == AREA]
    staff_records = [r for r in records if r.kind == STAFF]
    _no_duplicates(org, area_records, "code")
    _no_duplicates(org, staff_records, "login")
    if only_new:
        area_records = [r for r in area_records if _key(r, "code") not in org.areas]
        staff_records = [r for r in staff_records if _key(r, "login") not in org.staff]
    areas = [row for r in area_records if (row := _area_row(org, r)) is not None]
    for code, row in ((row["code"], row) for row in areas):
        org.levels[code] = row["level"]
    for record, row in zip(area_records, areas):
        _check_parent(org, record, row)
    staff = [row for r in staff_records if (row := _staff_row(org, r)) is not None]
    _unique_openids(org, staff_records, staff)
    return areas, staff


def _key(record: Record, name: str) -> str:
    return str(record.values.get(name) or "").strip()


def _no_duplicates(org: Org, records: list[Record], name: str) -> None:
    seen: dict[str, Record] = {}
    for record in records:
        key = _key(record, name)
        if key and key in seen:
            org.error(record, name, f"{key} 重复（已见于 {seen[key].where}）")
        seen.setdefault(key, record)


# ---------------------------------------------------------------- values

def _text(org: Org, record: Record, name: str, required: bool = False) -> str | None:
    value = record.values.get(name)
    text = None if value is None else str(value).strip() or None
    if text is None and required:
        org.error(record, name, "必须填写")
    elif text is not None and len(text) > MAX_LENGTHS.get(name, 100):
        org.error(record, name, f"太长（最多 {MAX_LENGTHS.get(name, 100)} 个字）")
    return text


def _number(org: Org, record: Record, name: str, kind: type, low: float, high: float) -> Any:
    value = record.values.get(name)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        org.error(record, name, f"应为数字，而不是「{value}」")
        return None
    if not low <= number <= high:
        org.error(record, name, f"{number} 超出范围（{low}–{high}）")
        return None
    return number


def _places(org: Org, record: Record) -> list[str] | None:
    value = record.values.get("places")
    if value is None or value == "":
        return [] if value == "" else None
    if isinstance(value, str):
        return [p.strip() for p in re.split(r"[、,;，；|]", value) if p.strip()]
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return [p.strip() for p in value if p.strip()]
    org.error(record, "places", "应为地名列表（CSV 中用「、」分隔）")
    return None


def _polygon(org: Org, record: Record) -> list | None:
    value = record.values.get("polygon")
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            org.error(record, "polygon", "应为 JSON 坐标串，如 [[114.30, 30.58], …]")
            return None
    if not (isinstance(value, list) and len(value) >= 4 and all(_is_point(p) for p in value)):
        org.error(record, "polygon", "应为至少 4 个 [经度, 纬度] 点的闭合环")
        return None
    return value


def _is_point(point: Any) -> bool:
    return (isinstance(point, list) and len(point) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in point))


def _active(org: Org, record: Record) -> bool | None:
    value = record.values.get("active")
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    org.error(record, "active", f"应为「在职」或「停用」，而不是「{value}」")
    return None


# ---------------------------------------------------------------- areas

def _area_row(org: Org, record: Record) -> dict | None:
    before = len(org.errors)
    code = _text(org, record, "code", required=True)
    name = _text(org, record, "name", required=True)
    level_text = _text(org, record, "level", required=True)
    level = org.rights.level_named(level_text) if level_text else None
    if level_text and level is None:
        known = "、".join(f"{v.label}（{v.code}）" for v in org.rights.levels)
        org.error(record, "level", f"没有层级「{level_text}」（可用：{known}）")
    row = {"code": code, "name": name, "level": level, "parent_code": _text(org, record, "parent"),
           "households": _number(org, record, "households", int, 0, 1_000_000),
           "center_lat": _number(org, record, "center_lat", float, -90, 90),
           "center_lng": _number(org, record, "center_lng", float, -180, 180),
           "places": _places(org, record), "polygon": _polygon(org, record)}
    given = {"code", "name", "level"} | {_column(k) for k, v in record.values.items() if v is not None}
    return {k: v for k, v in row.items() if k in given} if len(org.errors) == before else None


def _column(name: str) -> str:
    return {"parent": "parent_code", "area": "area_code"}.get(name, name)


def _check_parent(org: Org, record: Record, row: dict) -> None:
    parent = row.get("parent_code") if "parent_code" in row else getattr(org.areas.get(row["code"]), "parent_code",
                                                                         None)
    if parent is None:
        return
    if parent not in org.levels:
        org.error(record, "parent", f"没有上级节点 {parent}（既不在数据库中，也不在本次导入中）")
    elif org.rights.level_rank(org.levels[parent]) >= org.rights.level_rank(row["level"]):
        org.error(record, "parent", f"上级 {parent} 是{org.rights.level_label(org.levels[parent])}，"
                                    f"不在{org.rights.level_label(row['level'])}之上")


async def _write_areas(session: AsyncSession, org: Org, rows: list[dict], tally: Tally) -> None:
    """Parents first (by level), flushed level by level for the parent key."""
    for rank in sorted({org.rights.level_rank(row["level"]) for row in rows}):
        for row in (r for r in rows if org.rights.level_rank(r["level"]) == rank):
            existing = org.areas.get(row["code"])
            if existing is None:
                session.add(Area(**row))
                tally.added += 1
            elif _update(existing, row, AREA_COLUMNS):
                session.add(existing)
                tally.updated += 1
            else:
                tally.unchanged += 1
        await session.flush()


def _update(target: Any, row: dict, columns: tuple[str, ...]) -> bool:
    """Set the given columns that differ; whether any did."""
    changed = False
    for column in columns:
        if column in row and getattr(target, column) != row[column]:
            setattr(target, column, row[column])
            changed = True
    return changed


# ---------------------------------------------------------------- staff

def _staff_row(org: Org, record: Record) -> dict | None:
    before = len(org.errors)
    login = _text(org, record, "login", required=True)
    existing = org.staff.get(login or "")
    row: dict[str, Any] = {"login": login}
    if (name := _text(org, record, "name", required=existing is None)) is not None:
        row["name"] = name
    for column in ("area", "department"):
        if column in record.values:  # given empty: cleared
            row[_column(column)] = _text(org, record, column)
    if (openid := _text(org, record, "openid")) is not None:  # empty: the binding is kept
        row["openid"] = openid
    if (active := _active(org, record)) is not None:
        row["active"] = active
    role = _role(org, record, existing)
    if role is not None:
        row["role"] = role
        merged = {**_staff_values(existing), **row}
        _check_area(org, record, role, merged.get("area_code"))
        row.update(_check_department(org, record, role, merged.get("department")))
    return row if len(org.errors) == before else None


def _staff_values(staff: Staff | None) -> dict[str, Any]:
    return {} if staff is None else {c: getattr(staff, c) for c in STAFF_COLUMNS}


def _role(org: Org, record: Record, existing: Staff | None) -> str | None:
    text = _text(org, record, "role", required=existing is None)
    if text is None:
        return existing.role if existing else None
    role = org.rights.role_named(text)
    if role is None:
        known = "、".join(f"{r.label}（{r.code}）" for r in org.rights.roles.values())
        org.error(record, "role", f"没有角色「{text}」（可用：{known}）")
        return None
    return role.code


def _check_area(org: Org, record: Record, role_code: str, area: str | None) -> None:
    role = org.rights.roles[role_code]
    if area is None:
        if role.area_levels:
            org.error(record, "area", f"{role.label}必须填写所属{_levels(org, role.area_levels)}")
        return
    if area not in org.levels:
        org.error(record, "area", f"没有网格或区域 {area}")
    elif role.area_levels and org.levels[area] not in role.area_levels:
        org.error(record, "area", f"{area} 是{org.rights.level_label(org.levels[area])}；"
                                  f"{role.label}的区域应为{_levels(org, role.area_levels)}")


def _levels(org: Org, codes: tuple[str, ...]) -> str:
    return "或".join(org.rights.level_label(code) for code in codes)


def _check_department(org: Org, record: Record, role_code: str, department: str | None) -> dict[str, str]:
    """The department as a code (a file may name it in Chinese)."""
    role = org.rights.roles[role_code]
    if department is None:
        if role.needs_department:
            org.error(record, "department", f"{role.label}必须填写部门")
        return {}
    if department in org.departments:
        return {"department": department}
    by_name = {name: code for code, name in org.departments.items()}
    if department in by_name:
        return {"department": by_name[department]}
    known = "、".join(f"{name}（{code}）" for code, name in org.departments.items())
    org.error(record, "department", f"没有部门「{department}」（可用：{known}）")
    return {}


def _unique_openids(org: Org, records: list[Record], rows: list[dict]) -> None:
    """One WeChat binds one staff member."""
    final = {login: person.openid for login, person in org.staff.items()}
    final.update({row["login"]: row["openid"] for row in rows if "openid" in row})
    owners: dict[str, list[str]] = {}
    for login, openid in final.items():
        if openid:
            owners.setdefault(openid, []).append(login)
    for person in org.others:
        if person.openid:
            owners.setdefault(person.openid, []).append(f"staff:{person.id}")
    by_login = {_key(r, "login"): r for r in records}
    for row in rows:
        others = [o for o in owners.get(row.get("openid") or "", []) if o != row["login"]]
        if "openid" in row and others:
            org.error(by_login[row["login"]], "openid", f"已绑定在 {others[0]} 名下")


def _write_staff(session: AsyncSession, org: Org, rows: list[dict], tally: Tally) -> None:
    for row in rows:
        existing = org.staff.get(row["login"])
        if existing is None:
            session.add(Staff(**row))
            tally.added += 1
            continue
        was_active = existing.active
        if not _update(existing, row, STAFF_COLUMNS):
            tally.unchanged += 1
            continue
        session.add(existing)
        if was_active and not existing.active:
            tally.disabled += 1
        else:
            tally.updated += 1


def _disable_missing(session: AsyncSession, org: Org, listed: set[str], tally: Tally) -> None:
    for login, person in org.staff.items():
        if login not in listed and person.active:
            person.active = False
            session.add(person)
            tally.disabled += 1


# ---------------------------------------------------------------- single changes

async def set_active(session: AsyncSession, login: str, active: bool, *, actor: str) -> Staff | None:
    """Enable or disable one staff member by login; None when there is none."""
    person = (await session.exec(select(Staff).where(Staff.login == login))).first()
    if person is None:
        return None
    if person.active != active:
        person.active = active
        session.add(person)
        await finish(session, actor, "staff_enable" if active else "staff_disable", login,
                     "启用" if active else "停用")
    return person
