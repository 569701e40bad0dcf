"""SLA policies as records (config/sla.toml) and the one clock that evaluates them.

A duration is '30m', '2h' (wall clock) or '5wd' (working days on the Chinese calendar,
holidays and make-up days from config/holidays_cn.toml).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from bot.clock import from_local, to_local

_DURATION = re.compile(r"^\s*(\d+)\s*(m|h|d|wd)\s*$")


@dataclass(frozen=True)
class SlaClass:
    code: str
    label: str
    respond: str
    close: str


class WorkingCalendar:
    def __init__(self, holidays: set[date], workdays: set[date]) -> None:
        self.holidays = holidays
        self.workdays = workdays

    @classmethod
    def load(cls, path: Path) -> "WorkingCalendar":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        holidays: set[date] = set()
        workdays: set[date] = set()
        for year in raw.values():
            holidays |= {date.fromisoformat(d) for d in year.get("holidays", [])}
            workdays |= {date.fromisoformat(d) for d in year.get("workdays", [])}
        return cls(holidays, workdays)

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The same local time `days` working days later."""
        local = to_local(start)
        day = local.date()
        added = 0
        while added < days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                added += 1
        return from_local(datetime.combine(day, local.timetz().replace(tzinfo=None)))


class SlaPolicy:
    def __init__(self, classes: dict[str, SlaClass], urgency_class: dict[str, str], calendar: WorkingCalendar,
                 pause_states: frozenset[str], warn_ratio: float = 0.8) -> None:
        self.warn_ratio = warn_ratio
        self.classes = classes
        self.urgency_class = urgency_class
        self.calendar = calendar
        self.pause_states = pause_states

    @classmethod
    def load(cls, config_dir: Path) -> "SlaPolicy":
        with open(config_dir / "sla.toml", "rb") as fh:
            raw = tomllib.load(fh)
        classes = {code: SlaClass(code, c["label"], c["respond"], c["close"]) for code, c in raw["class"].items()}
        calendar = WorkingCalendar.load(config_dir / "holidays_cn.toml")
        return cls(classes, dict(raw["urgency_class"]), calendar, frozenset(raw.get("pause_states", [])),
                   float(raw.get("warn_ratio", 0.8)))

    def class_for(self, urgency: str, category_class: str | None = None) -> SlaClass:
        """The stricter of the category's class and the class the urgency demands."""
        by_urgency = self.classes[self.urgency_class.get(urgency, "normal")]
        by_category = self.classes.get(category_class or "", by_urgency)
        order = list(self.classes)  # file order: strictest first
        return min(by_urgency, by_category, key=lambda c: order.index(c.code))

    def add(self, start: datetime, duration: str) -> datetime:
        match = _DURATION.match(duration)
        if not match:
            raise ValueError(f"bad SLA duration {duration!r}")
        amount, unit = int(match.group(1)), match.group(2)
        if unit == "m":
            return start + timedelta(minutes=amount)
        if unit == "h":
            return start + timedelta(hours=amount)
        if unit == "d":
            return start + timedelta(days=amount)
        return self.calendar.add_working_days(start, amount)

    def deadlines(self, start: datetime, urgency: str, category_class: str | None = None) -> tuple[datetime, datetime]:
        sla = self.class_for(urgency, category_class)
        return self.add(start, sla.respond), self.add(start, sla.close)

    def schedule(self, start: datetime, urgency: str, category_class: str | None = None) -> dict[str, datetime]:
        """The ticket's SLA columns: both deadlines and their warning points (`warn_ratio`
        of the way from `start`), for the SLA clock's plain comparisons."""
        respond, close = self.deadlines(start, urgency, category_class)
        return {"response_due_at": respond, "closure_due_at": close,
                "response_warn_at": start + (respond - start) * self.warn_ratio,
                "closure_warn_at": start + (close - start) * self.warn_ratio}
