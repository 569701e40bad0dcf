"""The filtered queue as CSV or XLSX (bot/casework/exports.py): masked, no openids,
exactly the rows of the queue; each export is audited."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from bot.casework.desk import DeskError
from bot.casework.exports import export_rows, to_csv, to_xlsx
from bot.clock import to_local, utcnow
from bot.console.auth import actor_of
from bot.console.forms import queue_query
from bot.console.keys import CONSOLE
from bot.console.queue_views import chosen_queue
from bot.services import SERVICES
from storage.models import AuditEntry

FORMATS = {"csv": "text/csv; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


async def export(request: web.Request) -> web.Response:
    services = request.config_dict[SERVICES]
    case, console, actor = services.case, request.app[CONSOLE], actor_of(request)
    queue = chosen_queue(request)
    kind = request.match_info["format"]
    if kind not in FORMATS:
        raise web.HTTPNotFound(text="只支持 csv 和 xlsx")
    try:
        query = queue_query(case, request.query, console.settings.page_size)
    except DeskError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    now = utcnow()
    async with services.db.transaction() as session:
        rows = await export_rows(case, session, actor, queue, query, now, console.settings.export_max_rows)
        session.add(AuditEntry(at=now, actor=actor.code, action="export", target=queue.code, outcome="allowed",
                               reason=f"导出 {len(rows)} 条（{kind}）"))
    name = f"工单-{queue.label}-{to_local(now):%Y%m%d-%H%M}.{kind}"
    body = to_csv(rows) if kind == "csv" else to_xlsx(rows, queue.label)
    return web.Response(body=body, headers={
        "Content-Type": FORMATS[kind], "Cache-Control": "no-store",
        "Content-Disposition": f"attachment; filename=\"export.{kind}\"; filename*=UTF-8''{quote(name)}"})
