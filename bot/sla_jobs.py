"""The SLA clock's scheduled work, registered by bot/scheduler.py: the tick (every minute,
leader only) and the working calendar's coverage check (at start and daily)."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from bot.casework.sla import SlaPolicy
from bot.casework.sla_clock import tick
from bot.clock import to_local, utcnow

log = logging.getLogger(__name__)


async def sla_tick_job(services: Any) -> None:
    """Warnings and escalations due now (bot.casework.sla_clock.tick); idempotent, so a
    late or repeated run only makes what is still missing."""
    await tick(services.case, utcnow())


def check_calendar(sla: SlaPolicy, today: date | None = None) -> list[int]:
    """Log a WARNING for each year within `calendar_horizon_days` whose official holiday
    arrangement (调休) the calendar does not know; returns those years."""
    today = today or to_local(utcnow()).date()
    years = sla.uncovered_ahead(today)
    for year in years:
        log.warning("工作日历缺少 %d 年的国务院放假调休安排（未来 %d 天内用到）：该年只按法定节日计算，"
                    "没有调休补班；请升级 holidays 库（pip install -U holidays）或在 config/holidays_cn.toml 中补充。"
                    " / The working calendar lacks the official %d holiday arrangement (make-up workdays); "
                    "upgrade the holidays package or add the year to config/holidays_cn.toml.",
                    year, sla.horizon_days, year)
    return years


async def calendar_check_job(services: Any) -> None:
    """`check_calendar` as a scheduler job (at start and once a day)."""
    check_calendar(services.sla)
