"""Scheduled jobs. One APScheduler per worker; every job is safe to run in several
workers at once (rows are claimed before they are worked on)."""

from __future__ import annotations

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.services import Services

OUTBOX_SWEEP_SECONDS = 30


def start_scheduler(services: Services) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="Asia/Shanghai")
    scheduler.add_job(services.outbox.deliver_pending, "interval", seconds=OUTBOX_SWEEP_SECONDS,
                      id="outbox-sweep", max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler
