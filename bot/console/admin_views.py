"""Admin pages (staff of a role granted manage_staff / audit on everything, config/rights.toml):
staff (add, change role and node, disable, enable, reset password), read-only taxonomy
and SLA classes, and the audit log. Staff changes go through the organisation import
(bot/casework/org_import.py), as `minyi org import` and `minyi staff …` do."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web
from sqlmodel import col, select

from bot.access import passwords, sessions
from bot.access.accounts import set_account_active
from bot.casework import rights
from bot.casework.org_files import STAFF, Record
from bot.casework.org_import import DONE, ImportRejected, import_org
from bot.clock import utcnow
from bot.console.auth import actor_of, forbidden
from bot.console.forms import text_field
from bot.console.queue_views import _frame
from bot.services import SERVICES
from storage.models import AuditEntry, Staff

CONSOLE_SOURCE = "控制台"
AUDIT_PAGE = 100
# Audit actions that are not ticket actions (those are named by rights.action_label), and
# outcomes, as an admin reads them.
AUDIT_ACTIONS = {"login": "登录", "export": "导出", "org_import": "导入组织架构", "staff_enable": "启用人员",
                 "staff_disable": "停用人员", "staff_invite": "生成绑定邀请码", "staff_passwd": "设置密码",
                 "token_create": "创建 API 令牌", "token_revoke": "吊销 API 令牌", "bind": "绑定微信"}
OUTCOMES = {"done": "完成", "allowed": "允许", "refused": "拒绝", "bound": "已绑定"}


def _admin(request: web.Request, action: str = rights.MANAGE_STAFF) -> web.Response | None:
    """None when the staff member may use the admin pages; else the refusal page."""
    if rights.grants(request.config_dict[SERVICES].case, actor_of(request), action):
        return None
    return forbidden(request, f"您的角色不能「{rights.action_label(request.config_dict[SERVICES].case, action)}」")


async def staff_page(request: web.Request, message: str | None = None, error: str | None = None,
                     status: int = 200) -> web.Response:
    refused = _admin(request)
    if refused:
        return refused
    services = request.config_dict[SERVICES]
    case = services.case
    async with services.db.session() as session:
        people = list((await session.exec(select(Staff).order_by(col(Staff.login)))).all())
    table = case.org.rights
    return aiohttp_jinja2.render_template("admin_staff.html", request, {
        **_frame(request), "people": people, "message": message, "error": error,
        "roles": [(r.code, r.label) for r in table.roles.values()],
        "role_labels": {r.code: r.label for r in table.roles.values()},
        "departments": sorted(case.router.taxonomy.departments.items(), key=lambda d: d[1]),
        "nodes": [(n.code, case.areas.full_name(n.code) or n.name) for n in case.areas.nodes.values()],
        "area_name": case.areas.full_name, "department_name": case.router.taxonomy.department_name},
        status=status)


async def staff_save(request: web.Request) -> web.Response:
    """Add a staff member, or change one's name, role, node and department (by 工号)."""
    refused = _admin(request)
    if refused:
        return refused
    services = request.config_dict[SERVICES]
    case, actor = services.case, actor_of(request)
    form = await request.post()
    values = {"login": text_field(form, "login", 32), "name": text_field(form, "name", 50),
              "role": text_field(form, "role", 24), "area": text_field(form, "area", 32),
              "department": text_field(form, "department", 32)}
    if not values["login"]:
        return await staff_page(request, error="请填写工号", status=400)
    record = Record(STAFF, CONSOLE_SOURCE, 0, 1, {k: v for k, v in values.items() if v is not None})
    try:
        async with services.db.transaction() as session:
            summary = await import_org(session, [record], case.org.rights, case.router.taxonomy.departments,
                                       actor=actor.code, target=values["login"] or "")
    except ImportRejected as exc:
        return await staff_page(request, error="；".join(exc.errors), status=400)
    await case.org.refresh_if_changed(case.db)
    said = "已添加" if summary.staff.added else "已保存"
    return await staff_page(request, message=f"{said}：{values['login']} {values['name'] or ''}")


async def staff_active(request: web.Request) -> web.Response:
    refused = _admin(request)
    if refused:
        return refused
    services = request.config_dict[SERVICES]
    case, actor = services.case, actor_of(request)
    login, active = request.match_info["login"], request.match_info["change"] == "enable"
    async with services.db.transaction() as session:
        change = await set_account_active(session, case.workflow, case.parts, login, active, actor=actor.code)
    if change is None:
        return await staff_page(request, error=f"没有工号 {login[:32]}", status=404)
    await case.org.refresh_if_changed(case.db)
    return await staff_page(request, message=change.summary())


async def staff_password(request: web.Request) -> web.Response:
    refused = _admin(request)
    if refused:
        return refused
    services = request.config_dict[SERVICES]
    actor = actor_of(request)
    login = request.match_info["login"]
    form = await request.post()
    password = str(form.get("password") or "")
    try:
        passwords.check_strength(password)
    except passwords.WeakPassword as exc:
        return await staff_page(request, error=f"密码不符合要求：{exc}", status=400)
    async with services.db.transaction() as session:
        person = (await session.exec(select(Staff).where(Staff.login == login))).first()
        if person is not None and person.id is not None:
            await passwords.set_password(session, person.id, password)
            await sessions.end_all(session, person.id)
            session.add(AuditEntry(at=utcnow(), actor=actor.code, action="staff_passwd", target=login, outcome=DONE))
    if person is None:
        return await staff_page(request, error=f"没有工号 {login[:32]}", status=404)
    return await staff_page(request, message=f"已重置 {person.login} {person.name} 的密码，其登录已全部退出")


async def taxonomy_page(request: web.Request) -> web.Response:
    services = request.config_dict[SERVICES]
    case = services.case
    taxonomy = case.router.taxonomy
    groups: dict[str, list] = {}
    for category in taxonomy.categories.values():
        groups.setdefault(category.group_name, []).append(category)
    return aiohttp_jinja2.render_template("admin_taxonomy.html", request, {
        **_frame(request), "groups": groups, "department_name": taxonomy.department_name,
        "sla_labels": {code: c.label for code, c in case.sla.classes.items()}})


async def sla_page(request: web.Request) -> web.Response:
    case = request.config_dict[SERVICES].case
    return aiohttp_jinja2.render_template("admin_sla.html", request, {
        **_frame(request), "classes": list(case.sla.classes.values()), "urgency_class": case.sla.urgency_class,
        "warn_ratio": case.sla.warn_ratio,
        "paused": [case.workflow.label(code) for code in case.workflow.states_with_clock("paused")]})


async def audit_page(request: web.Request) -> web.Response:
    refused = _admin(request, rights.AUDIT)
    if refused:
        return refused
    services = request.config_dict[SERVICES]
    case = services.case
    target = (request.query.get("target") or "").strip()[:64] or None
    who = (request.query.get("actor") or "").strip()[:64] or None
    person = case.org.find_any(who) if who else None  # a 工号 or name is taken for its actor code
    code = f"staff:{person.id}" if person is not None else who
    statement = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(AUDIT_PAGE)
    if target:
        statement = statement.where(AuditEntry.target == target)
    if code:
        statement = statement.where(AuditEntry.actor == code)
    async with services.db.session() as session:
        entries = list((await session.exec(statement)).all())
    from bot.casework.ticket_view import actor_label

    return aiohttp_jinja2.render_template("admin_audit.html", request, {
        **_frame(request), "entries": entries, "target": target or "", "actor": who or "",
        "actor_label": lambda code: actor_label(services.case, code),
        "action_label": lambda action: AUDIT_ACTIONS.get(action) or rights.action_label(case, action),
        "outcome_label": lambda outcome: OUTCOMES.get(outcome, outcome)})
