"""The queue pages: tabs of the staff member's queues with counts, the filter bar,
tickets with their deadline countdown, pages, bulk dispatch for dispatchers, exports."""

from __future__ import annotations

from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from bot.casework import rights
from bot.casework.countdown import countdown
from bot.casework.desk import DeskError
from bot.casework.queues import Queue, find_queue, queue_counts, queues_for
from bot.clock import utcnow
from bot.console.auth import actor_of
from bot.console.forms import kept_filters, queue_query
from bot.console.keys import CONSOLE, CSRF
from bot.services import SERVICES


def my_queues(request: web.Request) -> tuple[Queue, ...]:
    actor = actor_of(request)
    assert actor.staff is not None
    return queues_for(request.app[CONSOLE].queues, actor.staff)


def chosen_queue(request: web.Request) -> Queue:
    code = request.match_info.get("queue", "")
    queue = next((q for q in my_queues(request) if q.code == code), None)
    if queue is None:
        raise web.HTTPNotFound(text="没有这个队列")
    return queue


async def home(request: web.Request) -> web.StreamResponse:
    """The first of their queues that holds tickets (a grid worker's new ticket waits in
    本网格 until accepted, not in 我的工单), or the first queue when all are empty."""
    queues = my_queues(request)
    if not queues:
        raise web.HTTPNotFound(text="没有可用的队列")
    case = request.config_dict[SERVICES].case
    async with case.db.session() as session:
        counts = await queue_counts(case, session, actor_of(request), queues)
    first = next((q for q in queues if counts.get(q.code)), queues[0])
    raise web.HTTPSeeOther(request.app.router["queue"].url_for(queue=first.code))


def pickers(request: web.Request) -> dict:
    """Choices of the filter bar and the re-route form."""
    case = request.config_dict[SERVICES].case
    taxonomy = case.router.taxonomy
    return {
        "states": [(code, s.label) for code, s in case.workflow.states.items()],
        "categories": sorted(((c.code, f"{c.group_name} · {c.name}") for c in taxonomy.categories.values()),
                             key=lambda item: item[1]),
        "urgencies": list(case.router.urgency.order),
        "areas": [(n.code, case.areas.full_name(n.code) or n.name, n.level) for n in case.areas.nodes.values()],
        "grids": [(n.code, case.areas.full_name(n.code) or n.name) for n in case.areas.nodes.values()
                  if n.level == "grid"],
    }


async def queue_page(request: web.Request) -> web.Response:
    services = request.config_dict[SERVICES]
    case, console, actor = services.case, request.app[CONSOLE], actor_of(request)
    queue = chosen_queue(request)
    error = None
    try:
        query = queue_query(case, request.query, console.settings.page_size)
    except DeskError as exc:
        error, query = str(exc), queue_query(case, _empty(), console.settings.page_size)
    async with services.db.session() as session:
        page = await find_queue(case, session, actor, queue, query)
        counts = await queue_counts(case, session, actor, my_queues(request))
    now = utcnow()
    kept = kept_filters(request.query)
    reroute = case.workflow.reroute_action
    rows = [{"ticket": t, "countdown": countdown(case.workflow, t, now), "area": case.areas.full_name(t.area_code),
             "category": case.router.taxonomy.label(t.category), "status": case.workflow.label(t.status),
             "can_dispatch": t.status in case.workflow.transitions[reroute].sources and rights.may(case, actor, t, reroute)}
            for t in page.tickets]
    return aiohttp_jinja2.render_template("queue.html", request, {
        **_frame(request), "queue": queue, "page": page, "rows": rows, "counts": counts, "error": error,
        "filters": kept, "query_string": urlencode(kept), "bulk": any(r["can_dispatch"] for r in rows),
        **pickers(request)}, status=400 if error else 200)


def _empty():  # type: ignore[no-untyped-def]
    from multidict import MultiDict, MultiDictProxy

    return MultiDictProxy(MultiDict())


def _frame(request: web.Request) -> dict:
    """What every page's frame shows: who is logged in, their queues, the CSRF token."""
    case, actor = request.config_dict[SERVICES].case, actor_of(request)
    assert actor.staff is not None
    staff = actor.staff
    return {"me": staff, "me_label": actor.label, "role_label": case.org.rights.role_label(staff.role),
            "me_area": case.areas.full_name(staff.area_code), "queues": my_queues(request), "csrf": request[CSRF],
            "is_admin": rights.grants(case, actor, rights.MANAGE_STAFF)}
