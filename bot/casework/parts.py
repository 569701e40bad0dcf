"""Joint dispatch (联合派单): each co-department's part of a ticket."""

from __future__ import annotations

from datetime import datetime

from bot.casework.actors import Actor
from bot.casework.context import Casework
from storage.models import Ticket


async def refusal(case: Casework, session, ticket: Ticket, action: str) -> str | None:  # type: ignore[no-untyped-def]
    """Why the lead department cannot take `action` yet (parts not done), else None."""
    return None


async def on_move(case: Casework, session, ticket: Ticket, before: str, after: str,  # type: ignore[no-untyped-def]
                  actor: Actor, now: datetime) -> list[dict]:
    """Parts opened or closed as the ticket moves; the outbox rows of their notices."""
    return []
