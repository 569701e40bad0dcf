"""Scheduled jobs. One APScheduler per worker.

Per-worker jobs run in every worker: each is safe several times at once because rows
are claimed before they are worked on (outbox rows, undone deliveries, drafts) or it
only reads (the model watch). Leader-only jobs (nightly retraining; anything added with
`add_leader_job`) run in every scheduler too, but through `Leadership.guard`: only the
one leader process among all workers and hosts does the work (bot/leader.py), the
others return at once. A job of its own tries to take leadership every
`[scheduler] leader_retry_seconds`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.access.sessions import purge_sessions_job
from bot.casework.org import REFRESH_SECONDS
from bot.casework.ratings import expire_job
from bot.dialogs.drafts import expire_drafts
from bot.inbox import Inbox
from bot.leader import Leadership
from bot.retrain import ModelWatch, retrain_job
from bot.services import Services
from bot.sla_jobs import calendar_check_job, sla_tick_job

OUTBOX_SWEEP_SECONDS = 30
INBOX_SWEEP_JOB = "inbox-sweep"
DRAFT_SWEEP_JOB = "draft-expiry"
DRAFT_SWEEP_SECONDS = 60
RETRAIN_JOB = "router-retrain"
MODEL_WATCH_JOB = "router-model-watch"
MODEL_WATCH_SECONDS = 60
LEADER_ELECTION_JOB = "leader-election"
ORG_REFRESH_JOB = "org-refresh"
SLA_TICK_JOB = "sla-tick"
CALENDAR_CHECK_JOB = "calendar-check"
RATING_EXPIRY_JOB = "rating-expiry"
RATING_EXPIRY_SECONDS = 600
SESSION_PURGE_JOB = "console-session-purge"
SESSION_PURGE_SECONDS = 3600


# Every job: one run at a time; runs missed while the loop was busy (a load peak) become
# one run, late rather than skipped (APScheduler's default skips a run over 1 s late, with
# a warning each time). Daily cron jobs still set their own grace (an hour).
JOB_DEFAULTS: dict[str, Any] = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}


def add_leader_job(scheduler: AsyncIOScheduler, leadership: Leadership, func: Callable[..., Awaitable[Any]],
                   trigger: str, **kw: Any) -> Job:
    """`scheduler.add_job(func, trigger, **kw)`, the job doing its work in the leader only."""
    return scheduler.add_job(leadership.guard(func), trigger, **kw)


def _add_worker_jobs(scheduler: AsyncIOScheduler, services: Services, inbox: Inbox) -> None:
    """Jobs every worker runs."""
    # Deliveries left undone by a crash or an error: at start, then every few seconds.
    scheduler.add_job(inbox.sweep, "interval", seconds=services.settings.intake.sweep_seconds, id=INBOX_SWEEP_JOB,
                      next_run_time=datetime.now(timezone.utc))
    # Drafts past [dialog] timeout_minutes: kept for a day, the resident told at once.
    scheduler.add_job(expire_drafts, "interval", args=[services], seconds=DRAFT_SWEEP_SECONDS, id=DRAFT_SWEEP_JOB)
    scheduler.add_job(services.outbox.deliver_pending, "interval", seconds=OUTBOX_SWEEP_SECONDS, id="outbox-sweep")
    # Every minute: pick up a model saved by the leader, another host or the CLI.
    scheduler.add_job(ModelWatch(services).job, "interval", seconds=MODEL_WATCH_SECONDS, id=MODEL_WATCH_JOB)
    # Staff imported, added, disabled or bound elsewhere: this worker reloads them.
    scheduler.add_job(services.case.org.refresh_if_changed, "interval", args=[services.db], seconds=REFRESH_SECONDS,
                      id=ORG_REFRESH_JOB)


def _add_leader_jobs(scheduler: AsyncIOScheduler, services: Services, leadership: Leadership) -> None:
    """Jobs whose work must happen once: in the leader only."""
    # Nightly: a new learned-router version from closed and re-categorised tickets.
    add_leader_job(scheduler, leadership, retrain_job, "cron", args=[services],
                   hour=services.settings.routing.retrain_cron_hour, minute=0, id=RETRAIN_JOB,
                   misfire_grace_time=3600)
    # Every minute: 80 % warnings, breaches and 督办 escalations (idempotent: marks are unique).
    add_leader_job(scheduler, leadership, sla_tick_job, "interval", args=[services], seconds=services.settings.scheduler.sla_tick_seconds,
                   id=SLA_TICK_JOB)
    # Daily (and at start in every worker, bot/app.py): warn when the working calendar
    # lacks a year of the next 60 days.
    add_leader_job(scheduler, leadership, calendar_check_job, "cron", args=[services], hour=8, minute=0,
                   id=CALENDAR_CHECK_JOB, misfire_grace_time=3600)
    # 回访 unanswered past the window: recorded as 未评价, never as satisfied.
    add_leader_job(scheduler, leadership, expire_job, "interval", args=[services.case],
                   seconds=RATING_EXPIRY_SECONDS, id=RATING_EXPIRY_JOB)
    # Console logins past their absolute expiry (an idle one is deleted when next used).
    add_leader_job(scheduler, leadership, purge_sessions_job, "interval", args=[services.db],
                   seconds=SESSION_PURGE_SECONDS, id=SESSION_PURGE_JOB)


def start_scheduler(services: Services, inbox: Inbox, *, leadership: Leadership | None = None) -> AsyncIOScheduler:
    """Start this worker's scheduler. Pass `leadership` to release it on shutdown
    (`await leadership.release()`); without one, one is made from the settings and the
    process's exit releases it."""
    if leadership is None:
        leadership = Leadership.for_settings(services.settings)
    scheduler = AsyncIOScheduler(timezone="Asia/Shanghai", job_defaults=JOB_DEFAULTS)
    _add_worker_jobs(scheduler, services, inbox)
    # Take leadership at start, then retry (or, as leader, check it) every interval.
    scheduler.add_job(leadership.try_lead, "interval", seconds=leadership.interval, id=LEADER_ELECTION_JOB,
                      next_run_time=datetime.now(timezone.utc))
    _add_leader_jobs(scheduler, services, leadership)
    scheduler.start()
    return scheduler
