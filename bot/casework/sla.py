"""SLA policies as records (config/sla.toml) and the one clock that evaluates them.

A duration is '30m', '2h', '1d' (wall clock) or '5wd' (working days on the Chinese
calendar). The calendar is the `holidays` library's China — statutory holidays, and for
each year whose State Council arrangement the library knows, the 调休 days off and the
make-up working days — with the local overrides of config/holidays_cn.toml on top.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import holidays

from bot.clock import from_local, to_local

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+)\s*(m|h|d|wd)\s*$")
_WALL_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
# A suffix the library adds to a holiday's name: （补假） observed, （推定） estimated.
_NAME_SUFFIX = re.compile(r"（[^）]*）")
# How far from a swapped day off its festival is looked for (the longest break is 9 days).
_FESTIVAL_REACH = 10


@dataclass(frozen=True)
class SlaClass:
    code: str
    label: str
    respond: str
    close: str


@dataclass(frozen=True)
class DayInfo:
    """Whether a day is a working day, why (Chinese), and whether its year's official
    arrangement is known (else only the statutory rules apply and 调休 is missing)."""

    day: date
    working: bool
    reason: str
    covered: bool


@dataclass(frozen=True)
class Overrides:
    """config/holidays_cn.toml: extra days off and working days per year, with optional
    names, and the years it declares complete."""

    holidays: dict[date, str]
    workdays: dict[date, str]
    complete_years: frozenset[int]

    @classmethod
    def empty(cls) -> "Overrides":
        return cls({}, {}, frozenset())

    @classmethod
    def load(cls, path: Path) -> "Overrides":
        if not path.exists():
            return cls.empty()
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        days_off: dict[date, str] = {}
        workdays: dict[date, str] = {}
        complete: set[int] = set()
        for key, section in raw.items():
            year = _year_of(key, path)
            names = {date.fromisoformat(d): str(n) for d, n in section.get("names", {}).items()}
            days_off |= _days_of(section.get("holidays", []), year, names, "本地配置的节假日", path)
            workdays |= _days_of(section.get("workdays", []), year, names, "本地配置的调休补班", path)
            if section.get("complete", False):
                complete.add(year)
        both = days_off.keys() & workdays.keys()
        if both:
            raise ValueError(f"{path}: {sorted(both)[0]} is both a holiday and a workday")
        return cls(days_off, workdays, frozenset(complete))


def _year_of(key: str, path: Path) -> int:
    if not re.fullmatch(r"\d{4}", key):
        raise ValueError(f"{path}: section [{key}] must be a year, e.g. [2027]")
    return int(key)


def _days_of(values: list[str], year: int, names: dict[date, str], default: str, path: Path) -> dict[date, str]:
    days = {date.fromisoformat(value): "" for value in values}
    stray = [d for d in days if d.year != year]
    if stray:
        raise ValueError(f"{path}: {stray[0]} is listed under [{year}]")
    return {d: names.get(d, default) for d in days}


class WorkingCalendar:
    """The Chinese working calendar: `holidays.China` with `Overrides` on top."""

    def __init__(self, overrides: Overrides | None = None) -> None:
        self.overrides = overrides or Overrides.empty()
        self._china = holidays.China(language="zh_CN")
        self._working: dict[date, bool] = {}  # add_working_days runs for every new ticket

    @classmethod
    def load(cls, path: Path) -> "WorkingCalendar":
        return cls(Overrides.load(path))

    def is_working_day(self, day: date) -> bool:
        known = self._working.get(day)
        if known is None:
            known = self._working[day] = self._is_working_day(day)
        return known

    def _is_working_day(self, day: date) -> bool:
        if day in self.overrides.workdays:
            return True
        if day in self.overrides.holidays:
            return False
        return self._china.is_working_day(day)

    def covered(self, year: int) -> bool:
        """The year's official arrangement (调休) is known: the library has its substituted
        days, or the overrides file declares the year complete."""
        return year in self.overrides.complete_years or bool(self._special().get(year))

    def uncovered(self, start: date, days: int) -> list[int]:
        """The years of start … start + days whose official arrangement is not known."""
        years = range(start.year, (start + timedelta(days=days)).year + 1)
        return [year for year in years if not self.covered(year)]

    def explain(self, day: date) -> DayInfo:
        working = self.is_working_day(day)
        return DayInfo(day, working, self._reason(day, working), self.covered(day.year))

    def _reason(self, day: date, working: bool) -> str:
        if day in self.overrides.workdays:
            return self.overrides.workdays[day]
        if day in self.overrides.holidays:
            return self.overrides.holidays[day]
        swaps = self._swaps(day.year)
        if working and day.weekday() >= 5:
            day_off = next((off for off, work in swaps.items() if work == day), None)
            festival = self._festival(day_off, swaps) if day_off else ""
            return f"{festival}调休补班"
        if day in swaps:
            return f"{self._festival(day, swaps)}调休放假（{swaps[day].isoformat()} 补班）"
        name = self._china.get(day)
        if name:
            return str(name).split(";")[0].strip()
        return _WEEKDAYS[day.weekday()]

    def _special(self) -> dict[int, Any]:
        """The library's table of each year's arrangement: year → (month, day, from month,
        from day[, from year]) for a day off swapped with a working day, or (month, day, name)."""
        return getattr(self._china, "special_public_holidays", {}) or {}

    def _swaps(self, year: int) -> dict[date, date]:
        """Days off of `year` (and of early next year) → the working day they were swapped with."""
        swaps: dict[date, date] = {}
        for table_year in (year, year + 1):
            entries = self._special().get(table_year, ())
            if entries and isinstance(entries[0], int):  # a single entry, not a tuple of them
                entries = (entries,)
            for entry in entries:
                if len(entry) >= 4 and all(isinstance(v, int) for v in entry):
                    month, day_, from_month, from_day = entry[:4]
                    from_year = entry[4] if len(entry) > 4 else table_year
                    swaps[date(table_year, month, day_)] = date(from_year, from_month, from_day)
        return swaps

    def _festival(self, day_off: date, swaps: dict[date, date]) -> str:
        """The festival a swapped day off belongs to: the holiday named most often in the
        break around it (2025-10-01 … 08 is 国庆节 with 中秋节 inside it)."""
        names: Counter[str] = Counter()
        for step in (-1, 1):
            near = day_off + timedelta(days=step)
            while abs((near - day_off).days) < _FESTIVAL_REACH and not self.is_working_day(near):
                name = self._china.get(near)
                if name and near not in swaps:
                    names[_NAME_SUFFIX.sub("", str(name).split(";")[0]).strip()] += 1
                near += timedelta(days=step)
        return names.most_common(1)[0][0] if names else ""

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


@dataclass(frozen=True)
class Escalation:
    """督办 up the grid tree: level k (1 = the first of `levels`) fires at the deadline
    plus (k - 1) × `interval`, to the `role` staff of the ticket's nearest ancestor of
    that area level."""

    levels: tuple[str, ...]
    labels: dict[str, str]
    interval: timedelta
    role: str
    action: str
    action_label: str

    def label(self, level: int) -> str:
        area_level = self.levels[level - 1]
        return self.labels.get(area_level, area_level)


class SlaPolicy:
    def __init__(self, classes: dict[str, SlaClass], urgency_class: dict[str, str], calendar: WorkingCalendar,
                 warn_ratio: float, escalation: Escalation, horizon_days: int = 60) -> None:
        self.warn_ratio = warn_ratio
        self.classes = classes
        self.urgency_class = urgency_class
        self.calendar = calendar
        self.escalation = escalation
        self.horizon_days = horizon_days

    @classmethod
    def load(cls, config_dir: Path) -> "SlaPolicy":
        with open(config_dir / "sla.toml", "rb") as fh:
            raw = tomllib.load(fh)
        classes = {code: SlaClass(code, c["label"], c["respond"], c["close"]) for code, c in raw["class"].items()}
        calendar = WorkingCalendar.load(config_dir / "holidays_cn.toml")
        return cls(classes, dict(raw["urgency_class"]), calendar, float(raw.get("warn_ratio", 0.8)),
                   _escalation(raw["escalation"]),
                   int(raw.get("calendar_horizon_days", 60)))

    def class_for(self, urgency: str, category_class: str | None = None) -> SlaClass:
        """The stricter of the category's class and the class the urgency demands."""
        by_urgency = self.classes[self.urgency_class.get(urgency, "normal")]
        by_category = self.classes.get(category_class or "", by_urgency)
        order = list(self.classes)  # file order: strictest first
        return min(by_urgency, by_category, key=lambda c: order.index(c.code))

    def add(self, start: datetime, duration: str) -> datetime:
        amount, unit = _parse(duration)
        if unit == "wd":
            return self.calendar.add_working_days(start, amount)
        return start + timedelta(**{_WALL_UNITS[unit]: amount})

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

    def uncovered_ahead(self, today: date) -> list[int]:
        """Years within `calendar_horizon_days` of `today` the calendar does not cover."""
        return self.calendar.uncovered(today, self.horizon_days)


def _parse(duration: str) -> tuple[int, str]:
    match = _DURATION.match(duration)
    if not match:
        raise ValueError(f"bad SLA duration {duration!r}")
    return int(match.group(1)), match.group(2)


def wall_duration(duration: str) -> timedelta:
    """A wall-clock duration ('4h'); working days are refused (the tick compares instants)."""
    amount, unit = _parse(duration)
    if unit == "wd":
        raise ValueError(f"{duration!r}: use m, h or d here, not working days")
    return timedelta(**{_WALL_UNITS[unit]: amount})


def _escalation(raw: dict[str, Any]) -> Escalation:
    """sla.toml [escalation]; every key is required (roles and levels are config codes)."""
    levels = tuple(raw["levels"])
    if not levels:
        raise ValueError("sla.toml [escalation] levels must name at least one area level")
    return Escalation(levels, dict(raw.get("labels", {})), wall_duration(raw["interval"]), raw["role"],
                      raw["action"], raw["action_label"])


