"""Open311 GeoReport v2 (read side): categories as services, tickets as requests.

Public data only: no openid, no description text (residents write names and phone
numbers into it), and coordinates at grid-centre precision.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from aiohttp import web

from bot.jsonhttp import json_response

from bot.casework.queries import TicketFilter, find_ticket, find_tickets
from bot.clock import from_local, to_local, utcnow
from bot.services import SERVICES, Services
from storage.models import Ticket

DEFAULT_WINDOW = timedelta(days=90)
MAX_RESULTS = 1000
# Dates outside this range are clamped to it: no ticket is older or newer, and the
# arithmetic near datetime's limits (year 1, year 9999 in another zone) cannot overflow.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
MAX_DATE_CHARS = 64
TICKET_NUMBER = re.compile(r"[0-9]{8}-[0-9]{4,9}")


class BadParameter(ValueError):
    """A request parameter the GeoReport v2 API refuses (400)."""


def error_response(status: int, description: str) -> web.Response:
    """The GeoReport v2 error format: a JSON array of {code, description}."""
    return json_response([{"code": status, "description": description}], status=status)


def _iso(moment: datetime | None) -> str | None:
    return to_local(moment).isoformat(timespec="seconds") if moment else None


def _parse_time(name: str, value: str | None) -> datetime | None:
    """ISO 8601; a time without an offset is China time; clamped to EARLIEST … LATEST."""
    if not value:
        return None
    try:
        if len(value) > MAX_DATE_CHARS:
            raise ValueError(value)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(f"{name} is not an ISO 8601 date") from None
    # Years well inside datetime's range convert without overflow; the rest is clamped.
    if moment.year < EARLIEST.year:
        return EARLIEST
    if moment.year >= LATEST.year:
        return LATEST
    return min(max(from_local(moment), EARLIEST), LATEST)


def services_list(services: Services) -> list[dict]:
    taxonomy = services.router.taxonomy
    return [
        {
            "service_code": c.code,
            "service_name": c.name,
            "description": f"{c.group_name}›{c.name}，主办部门：{taxonomy.department_name(c.department)}",
            "metadata": False,
            "type": "realtime",
            "keywords": ",".join(list(c.keywords)[:10]),
            "group": c.group_name,
        }
        for c in taxonomy.categories.values()
    ]


def request_view(services: Services, ticket: Ticket) -> dict:
    node = services.areas.nodes.get(ticket.area_code or "")
    center = node.center if node else None
    category = services.router.taxonomy.categories.get(ticket.category)
    return {
        "service_request_id": ticket.number,
        "status": "open" if services.workflow.is_open(ticket.status) else "closed",
        "status_notes": services.workflow.label(ticket.status),
        "service_name": category.name if category else ticket.category,
        "service_code": ticket.category,
        "agency_responsible": services.router.taxonomy.department_name(ticket.department),
        "requested_datetime": _iso(ticket.created_at),
        "updated_datetime": _iso(ticket.updated_at),
        "expected_datetime": _iso(ticket.closure_due_at),
        "address": services.areas.full_name(ticket.area_code) or None,
        "zipcode": None,
        "lat": round(center[0], 3) if center else None,
        "long": round(center[1], 3) if center else None,
    }


async def services_endpoint(request: web.Request) -> web.Response:
    return json_response(services_list(request.app[SERVICES]))


async def requests_endpoint(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    q = request.query
    try:
        end = _parse_time("end_date", q.get("end_date")) or utcnow()
        start = _parse_time("start_date", q.get("start_date")) or max(end - DEFAULT_WINDOW, EARLIEST)
    except BadParameter as exc:
        return error_response(400, str(exc))
    wanted_status = q.get("status", "")
    if wanted_status and wanted_status not in ("open", "closed"):
        return error_response(400, "status must be open or closed")
    wanted = None
    if q.get("service_code"):
        # Only codes that exist reach the database (an unknown one matches nothing anyway).
        categories = services.router.taxonomy.categories
        wanted = tuple(sorted({code for code in q["service_code"].split(",") if code in categories}))
    where = TicketFilter(start, end, wanted, (wanted_status == "open") if wanted_status else None, MAX_RESULTS)
    async with services.db.session() as s:
        rows = await find_tickets(s, services.workflow, where)
    return json_response([request_view(services, t) for t in rows])


async def request_endpoint(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    number = request.match_info["request_id"]
    if not TICKET_NUMBER.fullmatch(number):
        return error_response(404, "service request not found")
    async with services.db.session() as s:
        ticket = await find_ticket(s, number)
    if ticket is None:
        return error_response(404, "service request not found")
    return json_response([request_view(services, ticket)])
