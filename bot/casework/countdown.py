"""How a ticket stands against its deadline, as staff see it: which clock (response
until accepted, then closure), time left or over, and a level for the colour:
on time, past the warning point (80 %), breached, paused, or stopped (closed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.casework.sla_clock import PAUSED, RUNNING
from bot.casework.workflow import Workflow

ON_TIME, WARNING, BREACHED, HELD, STOPPED = "on_time", "warning", "breached", "paused", "stopped"
LEVEL_LABELS = {ON_TIME: "按时", WARNING: "临期", BREACHED: "已超时", HELD: "已暂停", STOPPED: "已结束"}
CLOCK_LABELS = {"response": "接单", "closure": "办结"}


@dataclass(frozen=True)
class Countdown:
    level: str
    clock: str | None  # response / closure
    due_at: datetime | None
    seconds_left: int | None  # negative: over

    @property
    def label(self) -> str:
        return LEVEL_LABELS[self.level]

    @property
    def text(self) -> str:
        """「接单剩余 3小时20分」「办结超时 1天2小时」「已暂停」"""
        if self.level in (HELD, STOPPED) or self.seconds_left is None or self.clock is None:
            return self.label
        word = "剩余" if self.seconds_left >= 0 else "超时"
        return f"{CLOCK_LABELS[self.clock]}{word} {span(abs(self.seconds_left))}"


def span(seconds: int) -> str:
    length = timedelta(seconds=seconds)
    days, hours, minutes = length.days, length.seconds // 3600, length.seconds % 3600 // 60
    if days:
        return f"{days}天{hours}小时"
    if hours:
        return f"{hours}小时{minutes}分"
    return f"{minutes}分"


def countdown(workflow: Workflow, ticket: Any, now: datetime) -> Countdown:
    """`ticket`: a Ticket or a row with its status, accepted_at and deadline columns."""
    state = workflow.states.get(ticket.status)
    if state is None or state.sla_clock not in (RUNNING, PAUSED):
        return Countdown(STOPPED, None, None, None)
    if ticket.accepted_at is None and ticket.response_due_at is not None:
        clock, due, warn = "response", ticket.response_due_at, ticket.response_warn_at
    else:
        clock, due, warn = "closure", ticket.closure_due_at, ticket.closure_warn_at
    if state.sla_clock == PAUSED:
        return Countdown(HELD, clock, due, None)
    if due is None:
        return Countdown(ON_TIME, None, None, None)
    left = int((due - now).total_seconds())
    if left < 0:
        level = BREACHED
    elif warn is not None and now >= warn:
        level = WARNING
    else:
        level = ON_TIME
    return Countdown(level, clock, due, left)
