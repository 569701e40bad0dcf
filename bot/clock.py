"""Time in one place: timezone-aware UTC in code and database, China time for people."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def to_local(moment: datetime) -> datetime:
    """China time; a naive value is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(CHINA)


def from_local(local: datetime) -> datetime:
    """Aware UTC; a naive value is taken as China time."""
    if local.tzinfo is None:
        local = local.replace(tzinfo=CHINA)
    return local.astimezone(timezone.utc)


def format_local(moment: datetime | None) -> str:
    """'11月22日 10:30' as residents read it."""
    if moment is None:
        return ""
    local = to_local(moment)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def parse_instant(value: str | None) -> datetime:
    """An ISO time given on the command line (`--at`); without an offset it is China time
    (2026-10-10T09:00 = 09:00 北京时间); empty: now. Raises ValueError."""
    return from_local(datetime.fromisoformat(value)) if value else utcnow()
