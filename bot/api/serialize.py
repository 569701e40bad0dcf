"""Tickets, queues and reference data as JSON. Times are ISO 8601 in China time with their
offset (2026-01-05T09:30:00+08:00). Openids never leave; lists carry a masked excerpt of
the report, and only the (audited) ticket view carries its full text and address."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Callable

from bot.casework import remarks, rights
from bot.casework.actors import Actor
from bot.casework.context import Casework
from bot.casework.countdown import Countdown, countdown
from bot.casework.desk import Done
from bot.casework.masking import mask
from bot.casework.parts import PartDone
from bot.casework.queues import Queue, QueuePage
from bot.casework.ticket_view import TicketView, actor_label
from bot.clock import to_local
from storage.models import Attachment, Rating, Staff, Ticket, TicketPart

EXCERPT_CHARS = 80
# What staff add to a ticket besides the workflow's actions (bot/casework/remarks.py).
REMARKS = (remarks.COMMENT, remarks.SUPERVISE, remarks.ATTACH)


def iso(moment: datetime | None) -> str | None:
    return to_local(moment).isoformat(timespec="seconds") if moment else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def countdown_json(clock: Countdown) -> dict[str, Any]:
    return {"level": clock.level, "label": clock.label, "clock": clock.clock, "due_at": iso(clock.due_at),
            "seconds_left": clock.seconds_left, "text": clock.text}


def staff_ref(case: Casework, staff_id: int | None) -> dict[str, Any] | None:
    person = case.org.record(staff_id) if staff_id else None
    if person is None:
        return None
    return {"id": person.id, "login": person.login, "name": person.name, "label": Actor.of_staff(person).label}


def _status(case: Casework, status: str) -> dict[str, Any]:
    state = case.workflow.states.get(status)
    return {"status": status, "status_label": case.workflow.label(status),
            "status_kind": state.kind if state else None, "open": case.workflow.is_open(status)}


def ticket_ref(case: Casework, ticket: Ticket | None) -> dict[str, Any] | None:
    """Another ticket named by this one (its duplicate, a repeat): number and state only."""
    if ticket is None:
        return None
    return {"number": ticket.number, "status": ticket.status, "status_label": case.workflow.label(ticket.status)}


def ticket_summary(case: Casework, ticket: Ticket, now: datetime) -> dict[str, Any]:
    taxonomy = case.router.taxonomy
    excerpt = mask(ticket.description)
    return {
        "number": ticket.number,
        "appeal_type": ticket.appeal_type,
        "category": ticket.category,
        "category_label": taxonomy.label(ticket.category),
        "urgency": ticket.urgency,
        **_status(case, ticket.status),
        "area_code": ticket.area_code,
        "area_name": case.areas.full_name(ticket.area_code) or None,
        "department": ticket.department,
        "department_name": taxonomy.department_name(ticket.department) or None,
        "co_departments": [{"code": str(code), "name": taxonomy.department_name(str(code))}
                           for code in ticket.co_departments or []],
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "response_due_at": iso(ticket.response_due_at),
        "closure_due_at": iso(ticket.closure_due_at),
        "accepted_at": iso(ticket.accepted_at),
        "resolved_at": iso(ticket.resolved_at),
        "closed_at": iso(ticket.closed_at),
        "overdue": bool(ticket.overdue),
        "escalation_level": ticket.escalation_level or 0,
        "reopen_count": ticket.reopen_count or 0,
        "handler": staff_ref(case, ticket.handler_id),
        "countdown": countdown_json(countdown(case.workflow, ticket, now)),
        "excerpt": excerpt[:EXCERPT_CHARS] + ("…" if len(excerpt) > EXCERPT_CHARS else ""),
    }


def queue_page_json(case: Casework, queue: Queue, page: QueuePage, now: datetime) -> dict[str, Any]:
    return {"queue": queue.code, "queue_label": queue.label, "total": page.total, "page": page.page,
            "page_size": page.page_size, "pages": page.pages,
            "tickets": [ticket_summary(case, t, now) for t in page.tickets]}


PhotoUrl = Callable[[Attachment], "str | None"]  # the API path of an attachment's photo file, if any


def _attachment(case: Casework, item: Attachment, photo_url: PhotoUrl) -> dict[str, Any]:
    return {"id": item.id, "kind": item.kind, "label": item.label, "created_at": iso(item.created_at),
            "added_by": item.added_by, "added_by_label": actor_label(case, item.added_by) if item.added_by else "群众",
            "lat": _number(item.lat), "lng": _number(item.lng), "photo": photo_url(item)}


def _part(case: Casework, part: TicketPart) -> dict[str, Any]:
    state = case.parts.states.get(part.status)
    return {"department": part.department, "department_name": case.router.taxonomy.department_name(part.department),
            "status": part.status, "status_label": state.label if state else part.status,
            "handler": staff_ref(case, part.handler_id), "note": part.note, "created_at": iso(part.created_at),
            "accepted_at": iso(part.accepted_at), "done_at": iso(part.done_at)}


def _rating(rating: Rating) -> dict[str, Any]:
    return {"round": rating.round, "channel": rating.channel, "satisfaction": rating.satisfaction,
            "resolution": rating.resolution, "comment": rating.comment, "asked_at": iso(rating.asked_at),
            "answered_at": iso(rating.answered_at)}


def _polygon(raw: Any) -> list[list[float]] | None:
    if not isinstance(raw, list):
        return None
    points = []
    for point in raw:
        if isinstance(point, (list, tuple)) and len(point) >= 2:
            lng, lat = _number(point[0]), _number(point[1])
            if lng is not None and lat is not None:
                points.append([lng, lat])
    return points or None


def ticket_detail(case: Casework, view: TicketView, actor: Actor, now: datetime,
                  photo_url: PhotoUrl) -> dict[str, Any]:
    ticket = view.ticket
    timeline = [{
        "id": entry.event.id, "at": iso(entry.event.at), "action": entry.event.action,
        "action_label": entry.action_label, "from_status": entry.event.from_status,
        "to_status": entry.event.to_status, "actor": entry.event.actor, "actor_label": entry.actor_label,
        "note": entry.event.note, "internal": entry.internal,
        "changes": [{"field": c.field, "old_value": c.old_value, "new_value": c.new_value} for c in entry.changes],
    } for entry in view.timeline]
    return {
        **ticket_summary(case, ticket, now),
        "description": ticket.description,
        "address": ticket.address,
        "lat": _number(ticket.lat),
        "lng": _number(ticket.lng),
        "confidence": _number(ticket.confidence),
        "keywords": [str(k) for k in ticket.keywords or []],
        "handler_label": view.handler_label,
        "timeline": timeline,
        "attachments": [_attachment(case, a, photo_url) for a in view.attachments],
        "parts": [_part(case, p) for p in view.parts],
        "ratings": [_rating(r) for r in view.ratings],
        "related": {"duplicate_of": ticket_ref(case, view.original),
                    "duplicates": [ticket_ref(case, t) for t in view.duplicates],
                    "repeat_of": ticket_ref(case, view.repeat_of),
                    "repeats": [ticket_ref(case, t) for t in view.repeats]},
        "polygon": _polygon(view.polygon),
        "actions": [{"action": action, "label": label} for action, label in view.actions],
        "part_actions": [{"department": p.department, "department_name": p.department_name, "word": p.word,
                          "label": p.label} for p in view.part_actions],
        "remarks": [{"action": action, "label": rights.action_label(case, action)}
                    for action in REMARKS if rights.may(case, actor, ticket, action)],
    }


def done_json(case: Casework, done: Done) -> dict[str, Any]:
    return {"number": done.number, "from_status": done.from_status,
            "to_status": done.to_status, "to_status_label": case.workflow.label(done.to_status),
            "category": done.category, "area_code": done.area_code, "recategorized": done.recategorized,
            "notices": done.notices}


def part_done_json(case: Casework, done: PartDone) -> dict[str, Any]:
    return {"number": done.number, "department": done.department,
            "department_name": case.router.taxonomy.department_name(done.department),
            "from_status": done.from_status, "from_status_label": case.parts.label(done.from_status),
            "to_status": done.to_status, "to_status_label": case.parts.label(done.to_status),
            "all_done": done.all_done, "notices": done.notices}


def staff_json(case: Casework, staff: Staff) -> dict[str, Any]:
    return {"id": staff.id, "login": staff.login, "name": staff.name, "role": staff.role,
            "role_label": case.org.rights.role_label(staff.role), "area_code": staff.area_code,
            "area_name": case.areas.full_name(staff.area_code) or case.areas.name(staff.area_code) or None,
            "department": staff.department,
            "department_name": case.router.taxonomy.department_name(staff.department) or None,
            "wechat_bound": bool(staff.openid)}


def queues_json(queues: tuple[Queue, ...], counts: dict[str, int]) -> list[dict[str, Any]]:
    return [{"code": q.code, "label": q.label, "open_only": q.open_only, "count": counts.get(q.code, 0)}
            for q in queues]


def categories_json(case: Casework) -> dict[str, Any]:
    taxonomy = case.router.taxonomy
    return {
        "categories": [{"code": c.code, "name": c.name, "label": taxonomy.label(c.code), "group": c.group,
                        "group_name": c.group_name, "department": c.department,
                        "department_name": taxonomy.department_name(c.department),
                        "co_departments": list(c.co_departments), "urgency": c.urgency, "sla_class": c.sla_class}
                       for c in taxonomy.categories.values()],
        "departments": [{"code": code, "name": name} for code, name in taxonomy.departments.items()],
        "groups": [{"code": code, "name": name} for code, name in taxonomy.groups.items()],
        "urgencies": list(case.router.urgency.order),
    }


def areas_json(case: Casework) -> dict[str, Any]:
    rights_table = case.org.rights
    return {"areas": [{"code": node.code, "name": node.name, "full_name": case.areas.full_name(node.code) or node.name,
                       "level": node.level, "level_label": rights_table.level_label(node.level),
                       "parent_code": node.parent_code,
                       "center": ({"lat": _number(node.center[0]), "lng": _number(node.center[1])}
                                  if node.center else None)}
                      for node in case.areas.nodes.values()]}


def workflow_json(case: Casework) -> dict[str, Any]:
    workflow = case.workflow
    return {
        "initial": workflow.initial,
        "reroute_action": workflow.reroute_action,
        "states": [{"code": s.code, "label": s.label, "kind": s.kind, "open": workflow.is_open(s.code),
                    "sla_clock": s.sla_clock} for s in workflow.states.values()],
        "transitions": [{"action": t.action, "label": t.label, "from": sorted(t.sources), "to": t.target,
                         "restarts_clock": t.restarts_clock} for t in workflow.transitions.values()],
        "part_states": [{"code": s.code, "label": s.label, "done": s.done} for s in case.parts.states.values()],
    }
