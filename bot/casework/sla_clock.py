"""The SLA clock's bookkeeping as a ticket moves: a pause (a state whose clock is
"paused", e.g. waiting for the resident) stops it, and every deadline and warning point
moves on by the time paused when the ticket leaves it, so the scheduled tick compares
plain columns with the time."""

from __future__ import annotations

from datetime import datetime

from bot.casework.workflow import Workflow
from storage.models import Ticket

PAUSED = "paused"
# The columns a pause moves on.
CLOCK_COLUMNS = ("response_due_at", "closure_due_at", "response_warn_at", "closure_warn_at")


def on_move(workflow: Workflow, ticket: Ticket, after: str, now: datetime) -> None:
    paused = after in workflow.states_with_clock(PAUSED)
    if paused and ticket.paused_since is None:
        ticket.paused_since = now
    elif not paused and ticket.paused_since is not None:
        held = now - ticket.paused_since
        for column in CLOCK_COLUMNS:
            due = getattr(ticket, column)
            if due is not None:
                setattr(ticket, column, due + held)
        ticket.paused_seconds = (ticket.paused_seconds or 0) + int(held.total_seconds())
        ticket.paused_since = None
