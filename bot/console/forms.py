"""Reading the console's query strings and forms: bad values become a Chinese message
(DeskError), never an exception page."""

from __future__ import annotations

from datetime import datetime, time

from multidict import MultiDictProxy, MultiMapping

from bot.casework.context import Casework
from bot.casework.desk import DeskError
from bot.casework.queues import MAX_SEARCH_CHARS, QueueQuery
from bot.clock import from_local

FILTER_FIELDS = ("status", "category", "urgency", "area", "from", "to", "q")
MAX_PAGE = 100_000


def _date(value: str, end: bool) -> datetime:
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d")
    except ValueError:
        raise DeskError(f"日期格式应为 2026-12-01：{value[:20]}") from None
    if not 2000 <= day.year <= 2100:
        raise DeskError(f"日期超出范围：{value[:20]}")
    moment = datetime.combine(day.date(), time.max if end else time.min)
    return from_local(moment)


def queue_query(case: Casework, query: MultiMapping[str], page_size: int) -> QueueQuery:
    status = query.get("status") or None
    if status and status not in case.workflow.states:
        raise DeskError(f"没有状态 {status[:30]}")
    category = query.get("category") or None
    if category and category not in case.router.taxonomy.categories:
        raise DeskError(f"没有分类 {category[:30]}")
    urgency = query.get("urgency") or None
    if urgency and urgency not in case.router.urgency.order:
        raise DeskError(f"没有紧急程度 {urgency[:10]}")
    area = query.get("area") or None
    if area and area not in case.areas.nodes:
        raise DeskError(f"没有网格或区域 {area[:30]}")
    page_text = query.get("page") or "1"
    if not page_text.isascii() or not page_text.isdigit() or not 1 <= int(page_text) <= MAX_PAGE:
        raise DeskError("页码不正确")
    created_from = _date(query["from"], end=False) if query.get("from") else None
    created_to = _date(query["to"], end=True) if query.get("to") else None
    return QueueQuery(status=status, category=category, urgency=urgency, area_code=area,
                      created_from=created_from, created_to=created_to,
                      search=(query.get("q") or "").strip()[:MAX_SEARCH_CHARS] or None,
                      page=int(page_text), page_size=page_size)


def kept_filters(query: MultiMapping[str]) -> dict[str, str]:
    """The filters to keep in page links and exports."""
    return {k: query[k] for k in FILTER_FIELDS if query.get(k)}


def text_field(form: MultiDictProxy, name: str, limit: int = 2000) -> str | None:
    value = form.get(name)
    if value is None or not isinstance(value, str):
        return None
    value = value.strip()
    if len(value) > limit:
        raise DeskError(f"内容最多 {limit} 字")
    return value or None


