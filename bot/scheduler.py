"""Scheduled jobs. One APScheduler per worker; every job is safe to run in several
workers at once (rows are claimed before they are worked on — outbox rows, undone
deliveries — and retraining holds a file lock in the models directory)."""

from __future__ import annotations

from datetime import datetime, timezone

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.dialogs.drafts import expire_drafts
from bot.inbox import Inbox
from bot.retrain import ModelWatch, retrain_job
from bot.services import Services

OUTBOX_SWEEP_SECONDS = 30
INBOX_SWEEP_JOB = "inbox-sweep"
DRAFT_SWEEP_JOB = "draft-expiry"
DRAFT_SWEEP_SECONDS = 60
RETRAIN_JOB = "router-retrain"
MODEL_WATCH_JOB = "router-model-watch"
MODEL_WATCH_SECONDS = 60


def start_scheduler(services: Services, inbox: Inbox) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="Asia/Shanghai")
    # Deliveries left undone by a crash or an error: at start, then every few seconds.
    scheduler.add_job(inbox.sweep, "interval", seconds=services.settings.intake.sweep_seconds, id=INBOX_SWEEP_JOB,
                      max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
    # Drafts past [dialog] timeout_minutes: kept for a day, the resident told at once.
    scheduler.add_job(expire_drafts, "interval", args=[services], seconds=DRAFT_SWEEP_SECONDS, id=DRAFT_SWEEP_JOB,
                      max_instances=1, coalesce=True)
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
