"""Scheduled jobs. One APScheduler per worker; every job is safe to run in several
workers at once (rows are claimed before they are worked on; retraining holds a file
lock in the models directory)."""

from __future__ import annotations

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.retrain import ModelWatch, retrain_job
from bot.services import Services

OUTBOX_SWEEP_SECONDS = 30
RETRAIN_JOB = "router-retrain"
MODEL_WATCH_JOB = "router-model-watch"
MODEL_WATCH_SECONDS = 60


def start_scheduler(services: Services) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="Asia/Shanghai")
    scheduler.add_job(services.outbox.deliver_pending, "interval", seconds=OUTBOX_SWEEP_SECONDS,
                      id="outbox-sweep", max_instances=1, coalesce=True)
    # Nightly: a new learned-router version from closed and re-categorised tickets.
    scheduler.add_job(retrain_job, "cron", args=[services], hour=services.settings.routing.retrain_cron_hour,
                      minute=0, id=RETRAIN_JOB, max_instances=1, coalesce=True, misfire_grace_time=3600)
    # Every minute: pick up a model saved by another worker or by the CLI.
    scheduler.add_job(ModelWatch(services).job, "interval", seconds=MODEL_WATCH_SECONDS, id=MODEL_WATCH_JOB,
                      max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler
