"""Reading tickets: a queue's page, one ticket (every view of its personal fields
audited), a photo of it, and the queue as CSV or XLSX (audited). The same casework
functions as the console: queues.find_queue, ticket_view.ticket_view, exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bot.api.auth import actor_of
from bot.api.errors import ApiError, bad_parameter, not_found
from bot.api.inputs import MAX_ROW_ID, parse_query
from bot.api.keys import API
from bot.api.serialize import queue_page_json, ticket_detail
from bot.casework import rights
from bot.casework.actors import Actor
from bot.casework.context import Casework
from bot.casework.desk import audit_refusal
from bot.casework.exports import export_rows, to_csv, to_xlsx
from bot.casework.queries import find_ticket
from bot.casework.queues import Queue, QueueQuery, find_queue, queues_for
from bot.casework.ticket_view import ticket_view
from bot.clock import to_local, utcnow
from bot.jsonhttp import json_response
from bot.services import SERVICES
from storage.models import Attachment, AuditEntry, Ticket

VIEWED = "allowed"
PHOTO_KIND = "image"  # Attachment.kind of a photo (a resident's or staff's)
VIEW_NOTE = "查看工单（API）"
PHOTO_NOTE = "查看照片（API）"
EXPORT_ACTION = "export"
EXPORT_TYPES = {"csv": "text/csv; charset=utf-8",
                "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
PHOTO_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif"}


def reply(value: Any, status: int = 200) -> web.Response:
    """A JSON answer that no cache keeps (it is one staff member's view)."""
    response = json_response(value, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def casework(request: web.Request) -> Casework:
    return request.config_dict[SERVICES].case


def forbidden(reason: str) -> ApiError:
    return ApiError("forbidden", reason)


def chosen_queue(request: web.Request, actor: Actor, code: str | None) -> Queue:
    assert actor.staff is not None
    mine = queues_for(request.app[API].queues, actor.staff)
    if not mine:
        raise not_found("您的角色没有可用的队列")
    if code is None:
        return mine[0]
    queue = next((q for q in mine if q.code == code), None)
    if queue is None:
        raise bad_parameter(f"队列 {code} 不对您的角色开放；可用：{'、'.join(q.code for q in mine)}")
    return queue


def queue_query(values: dict[str, Any]) -> QueueQuery:
    return QueueQuery(status=values["status"], category=values["category"], urgency=values["urgency"],
                      area_code=values["area_code"], created_from=values["created_from"],
                      created_to=values["created_to"], search=values["search"] or None,
                      page=values.get("page") or 1, page_size=values.get("page_size") or 30)


async def visible_ticket(case: Casework, actor: Actor, number: str, action: str = rights.VIEW) -> Ticket:
    """The ticket, when it exists (404) and `actor` may view it (403, the refusal audited
    under `action`, the thing they tried)."""
    async with case.db.session() as session:
        ticket = await find_ticket(session, number)
    if ticket is None:
        raise not_found(f"没有工单 {number}")
    reason = rights.refusal(case, actor, ticket, rights.VIEW)
    if reason:
        await audit_refusal(case, actor, action, number, reason)
        raise forbidden(reason)
    return ticket


async def list_tickets(request: web.Request) -> web.Response:
    case, actor, state = casework(request), actor_of(request), request.app[API]
    values = parse_query(request, state.list_params, case)
    queue = chosen_queue(request, actor, values["queue"])
    async with case.db.session() as session:
        page = await find_queue(case, session, actor, queue, queue_query(values))
    return reply(queue_page_json(case, queue, page, utcnow()))


async def get_ticket(request: web.Request) -> web.Response:
    case, actor = casework(request), actor_of(request)
    number = request.match_info["number"]
    now = utcnow()
    reason = None
    async with case.db.transaction() as session:
        ticket = await find_ticket(session, number)
        if ticket is None:
            raise not_found(f"没有工单 {number}")
        reason = rights.refusal(case, actor, ticket, rights.VIEW)
        if reason is None:
            view = await ticket_view(case, session, actor, ticket, now)
            session.add(AuditEntry(at=now, actor=actor.code, action=rights.VIEW, target=number, outcome=VIEWED,
                                   reason=VIEW_NOTE))
    if reason:
        await audit_refusal(case, actor, rights.VIEW, number, reason)
        raise forbidden(reason)

    def photo_url(item: Attachment) -> str | None:
        if item.kind != PHOTO_KIND or not item.local_path or item.id is None:
            return None
        return str(request.app.router["photo"].url_for(number=number, attachment_id=str(item.id)))

    return reply(ticket_detail(case, view, actor, now, photo_url))


async def get_photo(request: web.Request) -> web.StreamResponse:
    case, actor = casework(request), actor_of(request)
    number, wanted = request.match_info["number"], int(request.match_info["attachment_id"])
    ticket = await visible_ticket(case, actor, number)
    if wanted > MAX_ROW_ID:
        raise not_found(f"工单 {number} 没有这张照片")
    async with case.db.transaction() as session:
        item = await session.get(Attachment, wanted)
        if item is None or item.ticket_id != ticket.id or item.kind != PHOTO_KIND or not item.local_path:
            raise not_found(f"工单 {number} 没有这张照片")
        session.add(AuditEntry(at=utcnow(), actor=actor.code, action=rights.VIEW, target=number, outcome=VIEWED,
                               reason=f"{PHOTO_NOTE} {wanted}"))
    root = case.data_dir.resolve()
    path = (root / item.local_path).resolve()
    kind = PHOTO_TYPES.get(Path(path).suffix.lower())
    if root not in path.parents or not path.is_file() or kind is None:
        raise not_found(f"工单 {number} 的这张照片文件不存在")
    return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "private, no-store",
                                           "X-Content-Type-Options": "nosniff"})


async def export_tickets(request: web.Request) -> web.Response:
    services = request.config_dict[SERVICES]
    case, actor, state = services.case, actor_of(request), request.app[API]
    values = parse_query(request, state.export_params, case)
    queue = chosen_queue(request, actor, values["queue"])
    kind = values["format"]
    now = utcnow()
    async with case.db.transaction() as session:
        rows = await export_rows(case, session, actor, queue, queue_query(values), now,
                                 services.settings.console.export_max_rows)
        session.add(AuditEntry(at=now, actor=actor.code, action=EXPORT_ACTION, target=queue.code, outcome=VIEWED,
                               reason=f"导出 {len(rows)} 条（{kind}，API）"))
    name = f"工单-{queue.label}-{to_local(now):%Y%m%d-%H%M}.{kind}"
    body = to_csv(rows) if kind == "csv" else to_xlsx(rows, queue.label)
    return web.Response(body=body, headers={
        "Content-Type": EXPORT_TYPES[kind], "Cache-Control": "no-store", "X-Export-Rows": str(len(rows)),
        "Content-Disposition": f"attachment; filename=\"export.{kind}\"; filename*=UTF-8''{quote(name)}"})
