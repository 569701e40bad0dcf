"""The filtered queue as CSV or XLSX (openpyxl): personal numbers in any text masked
(bot.casework.masking), openids never exported. The caller checks nothing more: the
rows are exactly the queue's, within what the staff member may view."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import datetime
from typing import Iterable

from openpyxl import Workbook
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.casework.actors import Actor
from bot.casework.context import Casework
from bot.casework.countdown import countdown
from bot.casework.masking import mask
from bot.casework.queues import Queue, QueueQuery, find_queue
from bot.clock import to_local
from storage.models import Ticket

HEADERS = ("工单编号", "诉求类型", "分类", "紧急程度", "网格", "承办部门", "状态", "时限状态", "接单时限", "办结时限",
           "反映时间", "地址", "反映内容", "处理人")
CHUNK = 500


def _time(moment: datetime | None) -> str:
    return to_local(moment).strftime("%Y-%m-%d %H:%M") if moment else ""


def row_of(case: Casework, ticket: Ticket, now: datetime) -> list[str]:
    handler = case.org.record(ticket.handler_id) if ticket.handler_id else None
    return [ticket.number, ticket.appeal_type, case.router.taxonomy.label(ticket.category), ticket.urgency,
            case.areas.full_name(ticket.area_code) or "未定位", case.router.taxonomy.department_name(ticket.department),
            case.workflow.label(ticket.status), countdown(case.workflow, ticket, now).text,
            _time(ticket.response_due_at), _time(ticket.closure_due_at), _time(ticket.created_at),
            mask(ticket.address), mask(ticket.description), handler.name if handler else ""]


async def export_rows(case: Casework, session: AsyncSession, actor: Actor, queue: Queue, query: QueueQuery,
                      now: datetime, limit: int) -> list[list[str]]:
    rows: list[list[str]] = []
    page = 1
    while len(rows) < limit:
        found = await find_queue(case, session, actor, queue, replace(query, page=page, page_size=min(CHUNK, limit)))
        rows += [row_of(case, t, now) for t in found.tickets]
        if page >= found.pages:
            break
        page += 1
    return rows[:limit]


def to_csv(rows: Iterable[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADERS)
    writer.writerows([_cell(value) for value in row] for row in rows)
    return out.getvalue().encode("utf-8-sig")  # Excel opens UTF-8 with a BOM as Chinese


def to_xlsx(rows: Iterable[list[str]], title: str) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31] or "工单")
    sheet.append(list(HEADERS))
    for row in rows:
        sheet.append([_cell(value) for value in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cell(value: str) -> str:
    """A cell that starts like a formula is kept as text (CSV/XLSX formula injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
