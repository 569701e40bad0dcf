"""Time in one place: naive UTC in the database, China time for people."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def to_local(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc).astimezone(CHINA)


def from_local(local: datetime) -> datetime:
    if local.tzinfo is None:
        local = local.replace(tzinfo=CHINA)
    return local.astimezone(timezone.utc).replace(tzinfo=None)


def format_local(moment: datetime | None) -> str:
    """'11月22日 10:30' as residents read it."""
    if moment is None:
        return ""
    local = to_local(moment)
    return f"{local.month}月{local.day}日 {local:%H:%M}"
