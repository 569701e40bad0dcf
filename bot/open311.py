"""Open311 GeoReport v2 (read side): categories as services, tickets as requests.

Public data only: no openid, no description text (residents write names and phone
numbers into it), and coordinates at grid-centre precision.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp import web

from bot.jsonhttp import json_response
from sqlmodel import col, select

from bot.clock import from_local, to_local, utcnow
from bot.services import SERVICES, Services
from storage.models import Ticket

DEFAULT_WINDOW = timedelta(days=90)
MAX_RESULTS = 1000


def _iso(moment: datetime | None) -> str | None:
    return to_local(moment).isoformat(timespec="seconds") if moment else None


def _parse_time(value: str | None) -> datetime | None:
    """ISO 8601; a time without an offset is China time."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad date: {value}") from None
    return from_local(moment)


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
    end = _parse_time(q.get("end_date")) or utcnow()
    start = _parse_time(q.get("start_date")) or end - DEFAULT_WINDOW
    statement = select(Ticket).where(Ticket.created_at >= start, Ticket.created_at <= end)
    if q.get("service_code"):
        statement = statement.where(col(Ticket.category).in_(q["service_code"].split(",")))
    wanted_status = q.get("status", "")
    if wanted_status and wanted_status not in ("open", "closed"):
        raise web.HTTPBadRequest(text="status must be open or closed")
    if wanted_status:
        codes = [code for code in services.workflow.states if
                 services.workflow.is_open(code) == (wanted_status == "open")]
        statement = statement.where(col(Ticket.status).in_(codes))
    statement = statement.order_by(col(Ticket.created_at).desc()).limit(MAX_RESULTS)
    async with services.db.session() as s:
        rows = (await s.exec(statement)).all()
    return json_response([request_view(services, t) for t in rows])


async def request_endpoint(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    number = request.match_info["request_id"]
    async with services.db.session() as s:
        ticket = (await s.exec(select(Ticket).where(Ticket.number == number))).first()
    if ticket is None:
        return json_response([{"code": 404, "description": "service request not found"}], status=404)
    return json_response([request_view(services, ticket)])
