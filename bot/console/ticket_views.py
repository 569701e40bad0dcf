"""The ticket page (every view of its personal fields audited) and its photos."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
from aiohttp import web

from bot.casework import rights
from bot.casework.desk import audit_refusal
from bot.casework.merge import MERGE_ACTION
from bot.casework.queries import find_ticket
from bot.casework.ticket_view import EVENT_LABELS, FIELD_LABELS, change_value, event_label, ticket_view
from bot.clock import utcnow
from bot.console.auth import actor_of, forbidden
from bot.console.keys import CONSOLE
from bot.console.queue_views import _frame, pickers
from bot.services import SERVICES
from storage.models import Attachment, AuditEntry, Ticket

VIEWED = "allowed"
VIEW_NOTE = "查看工单（控制台）"
PHOTO_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif"}


async def _visible_ticket(request: web.Request, number: str) -> Ticket | web.Response:
    """The ticket if the staff member may view it; else the refusal page (audited)."""
    services = request.config_dict[SERVICES]
    case, actor = services.case, actor_of(request)
    async with services.db.session() as session:
        ticket = await find_ticket(session, number[:32])
    if ticket is None:
        return aiohttp_jinja2.render_template("error.html", request, {"title": "没有这张工单",
                                                                       "message": f"没有工单 {number[:32]}"}, status=404)
    reason = rights.refusal(case, actor, ticket, rights.VIEW)
    if reason:
        await audit_refusal(case, actor, rights.VIEW, ticket.number, reason)
        return forbidden(request, reason)
    return ticket


async def ticket_page(request: web.Request) -> web.Response:
    services = request.config_dict[SERVICES]
    case, actor = services.case, actor_of(request)
    found = await _visible_ticket(request, request.match_info["number"])
    if isinstance(found, web.Response):
        return found
    async with services.db.transaction() as session:
        view = await ticket_view(case, session, actor, found, utcnow())
        session.add(AuditEntry(at=utcnow(), actor=actor.code, action=rights.VIEW, target=found.number,
                               outcome=VIEWED, reason=VIEW_NOTE))
    ticket = view.ticket
    return aiohttp_jinja2.render_template("ticket.html", request, {
        **_frame(request), "view": view, "t": ticket, "area": case.areas.full_name(ticket.area_code) or "未定位",
        "category": case.router.taxonomy.label(ticket.category), "status": case.workflow.label(ticket.status),
        "department": case.router.taxonomy.department_name(ticket.department),
        "co_departments": [case.router.taxonomy.department_name(d) for d in ticket.co_departments or []],
        "part_labels": {code: s.label for code, s in case.parts.states.items()},
        "state_labels": {code: s.label for code, s in case.workflow.states.items()},
        "reroute": case.workflow.reroute_action,
        "may_comment": rights.may(case, actor, ticket, "comment"),
        "may_supervise": rights.may(case, actor, ticket, "supervise"),
        "may_merge": any(a == MERGE_ACTION for a, _ in view.actions),
        # Merge has its own form; turning a ticket away comes after moving it on.
        "actions": sorted(((a, label) for a, label in view.actions if a != MERGE_ACTION),
                          key=lambda item: item[0] in request.app[CONSOLE].secondary_actions),
        "secondary_actions": request.app[CONSOLE].secondary_actions,
        "may_attach": rights.may(case, actor, ticket, "attach"),
        "point": (ticket.lat, ticket.lng) if ticket.lat is not None and ticket.lng is not None else None,
        "notice": _done_label(case, request.query.get("done")),
        "field_label": lambda name: FIELD_LABELS.get(name, name),
        "change_value": lambda name, value: change_value(case, name, value), "photo_actions": request.app[CONSOLE].photo_actions,
        "department_name": case.router.taxonomy.department_name,
        **pickers(request)})


def _done_label(case, code: str | None) -> str | None:  # type: ignore[no-untyped-def]
    """What the redirect after an action says was done; only a known action (the query
    string is anyone's to write)."""
    if not code or len(code) > 32:
        return None
    part_actions = {t.action for t in case.parts.transitions.values()}
    known = (code in case.workflow.transitions or code in case.org.rights.extra_actions or code in EVENT_LABELS
             or code in part_actions)
    return event_label(case, code) if known else None


async def photo(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    text = request.match_info["attachment"]
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise web.HTTPNotFound(text="没有这张照片")
    async with services.db.session() as session:
        item = await session.get(Attachment, int(text))
        ticket = await session.get(Ticket, item.ticket_id) if item else None
    if item is None or ticket is None or not item.local_path:
        raise web.HTTPNotFound(text="没有这张照片")
    found = await _visible_ticket(request, ticket.number)
    if isinstance(found, web.Response):
        return found
    root = services.settings.data_dir.resolve()
    path = (root / item.local_path).resolve()
    if root not in path.parents or not path.is_file():
        raise web.HTTPNotFound(text="照片文件不存在")
    kind = PHOTO_TYPES.get(Path(path).suffix.lower())
    if kind is None:
        raise web.HTTPNotFound(text="不是照片")
    return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "private, max-age=3600",
                                           "X-Content-Type-Options": "nosniff"})
