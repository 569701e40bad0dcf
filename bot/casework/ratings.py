"""回访: the resident rates the handling of a resolved ticket."""

from __future__ import annotations

from datetime import datetime

from bot.casework.actors import Actor
from bot.casework.context import Casework
from storage.models import Ticket


async def on_move(case: Casework, session, ticket: Ticket, before: str, after: str,  # type: ignore[no-untyped-def]
                  actor: Actor, now: datetime) -> list[dict]:
    """The rating request when a ticket is resolved; the outbox rows it queues."""
    return []
