"""Structured ticket changes (field, old value, new value), written beside the event
that made them: what the console's history, the indices and retraining read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.models import Ticket

# The ticket fields whose changes are recorded.
TRACKED = ("status", "category", "department", "area_code", "urgency", "handler_id")


def snapshot(ticket: Ticket) -> dict[str, Any]:
    return {name: getattr(ticket, name) for name in TRACKED}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:200]


def rows(ticket: Ticket, before: dict[str, Any], actor: str, at: datetime, event_id: int | None) -> list[dict]:
    """One row per tracked field that differs from `before`."""
    out = []
    for name in TRACKED:
        old, new = before[name], getattr(ticket, name)
        if old != new:
            out.append({"ticket_id": ticket.id, "event_id": event_id, "field": name, "old_value": _text(old),
                        "new_value": _text(new), "actor": actor, "at": at})
    return out
