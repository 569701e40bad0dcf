"""Nightly retraining of the learned router from what staff decided.

Labels come from the database: a ticket in one of the workflow's `label_states` (handled:
resolved / rated / archived) gives (description, category); a staff re-categorisation (a
`category` row of ticket_change written by bot.casework.desk, actor a staff member) gives
(description, new category) at once, open or closed (the latest one wins). With at least
`[routing] retrain_min_examples` examples a new model version is trained in a thread,
saved under `<data dir>/models/` and put to use by this worker's router.

The scheduled job runs in the leader process only (bot/leader.py, bot/scheduler.py);
`minyi router retrain` may run beside it, on any host. Training holds a lock for its
duration: on PostgreSQL an advisory lock of its own (no shared filesystem needed across
hosts), on SQLite (one host) a file lock in the models directory. A process that waited
for it finds the model another has just trained (same data digest) when the models
directory is the same, and loads that instead of training again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.casework.actors import STAFF_PREFIX
from bot.casework.workflow import Workflow
from bot.leader import exclusive
from bot.services import Services
from nlp.learned import FORMAT_VERSION, Examples, LearnedModel, current_path, load_current, taxonomy_seed
from nlp.taxonomy import Taxonomy
from storage.db import Database
from storage.models import Ticket, TicketChange

log = logging.getLogger(__name__)

CATEGORY_FIELD = "category"
RETRAIN_LOCK = "minyi.router.retrain"  # the advisory lock's name (PostgreSQL)
RETRAIN_LOCK_FILE = ".retrain.lock"  # in the models directory (SQLite)
CV_FOLDS = 5


@dataclass(frozen=True)
class RetrainResult:
    trained: bool
    n_examples: int
    path: Path | None = None
    reason: str = ""


async def collect_examples(db: Database, workflow: Workflow) -> tuple[list[str], list[str]]:
    """(texts, labels) from handled tickets and from every ticket staff re-categorised."""
    by_staff = (col(TicketChange.field) == CATEGORY_FIELD) & col(TicketChange.actor).startswith(STAFF_PREFIX)
    async with db.session() as s:
        changes = (await s.exec(
            select(TicketChange.ticket_id, TicketChange.new_value).where(by_staff)
            .order_by(col(TicketChange.at), col(TicketChange.id)))).all()
        rerouted = select(TicketChange.ticket_id).where(by_staff)
        tickets = (await s.exec(
            select(Ticket.id, Ticket.description, Ticket.category)
            .where(col(Ticket.status).in_(workflow.label_states) | col(Ticket.id).in_(rerouted))
            .order_by(col(Ticket.id)))).all()
    # What staff chose; in time order, so the latest re-categorisation wins.
    override = {ticket_id: code for ticket_id, code in changes if code}
    texts, labels = [], []
    for ticket_id, description, category in tickets:
        label = override.get(ticket_id, category)
        if description and description.strip() and label:
            texts.append(description.strip())
            labels.append(label)
    return texts, labels


def digest(texts: list[str], labels: list[str], seed: Examples | None = None) -> str:
    """What a model is trained from: the ticket labels, the taxonomy seed (a keyword edit
    must retrain) and the model format (so must a change of features)."""
    h = hashlib.sha256(f"format {FORMAT_VERSION}\n".encode())
    for text, label in sorted(zip(texts, labels)):
        h.update(f"{label}\t{text}\n".encode())
    for text, label in zip(*(seed or ([], []))):
        h.update(f"seed\t{label}\t{text}\n".encode())
    return h.hexdigest()[:16]


def _train_if_changed(models_dir: Path, texts: list[str], labels: list[str], tokenizer: Any,
                      cv_folds: int, taxonomy: Taxonomy) -> tuple[LearnedModel, bool]:
    """Train and save (run under the retrain lock); (model, trained) — not trained when
    the current model already holds exactly these examples."""
    models_dir.mkdir(parents=True, exist_ok=True)
    seed = taxonomy_seed(taxonomy, labels)
    data_digest = digest(texts, labels, seed)
    current = load_current(models_dir, tokenizer) if current_path(models_dir) else None
    if current is not None and current.meta.get("digest") == data_digest:
        return current, False
    model = LearnedModel.train(texts, labels, tokenizer, cv_folds=cv_folds, source="tickets", seed=seed)
    model.meta["digest"] = data_digest
    model.save(models_dir)
    return model, True


async def retrain(services: Services, min_examples: int | None = None,
                  cv_folds: int = CV_FOLDS) -> RetrainResult:
    """Collect labels, train a new version when there are enough, and use it."""
    settings = services.settings
    minimum = settings.routing.retrain_min_examples if min_examples is None else min_examples
    router = services.router
    texts, labels = await collect_examples(services.db, services.workflow)
    if len(texts) < max(minimum, 1):
        return RetrainResult(False, len(texts), None, f"样本不足（{len(texts)} < {minimum}）")
    if len(set(labels)) < 2 and taxonomy_seed(router.taxonomy, labels) is None:
        return RetrainResult(False, len(texts), None, "只有一个类别，无法训练")
    async with exclusive(settings, RETRAIN_LOCK, settings.models_dir / RETRAIN_LOCK_FILE):
        model, trained = await asyncio.to_thread(_train_if_changed, settings.models_dir, texts, labels,
                                                 router.tagger.tokenizer, cv_folds, router.taxonomy)
    router.set_model(model)
    if trained:
        log.info("routing model retrained: %s (%d examples, %d labels, cv macro-F1 %s)", model.path,
                 len(texts), len(set(labels)), model.meta.get("cv_macro_f1"))
    return RetrainResult(trained, len(texts), model.path, "" if trained else "样本未变化，沿用当前模型")


async def retrain_job(services: Services) -> None:
    """The scheduled job: never raises (a failed night leaves the current model in use)."""
    try:
        result = await retrain(services)
    except Exception:
        log.exception("routing model retraining failed")
        return
    if not result.trained:
        log.info("routing model not retrained: %s", result.reason)


class ModelWatch:
    """Use the model `current` names when it is not the one in use: a model another
    worker retrained, or one `minyi router train` / `minyi router retrain` saved. The
    scheduler runs `check` every minute, so every worker follows within a minute."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.unreadable: Path | None = None  # a `current` that failed to load (logged once)

    async def check(self) -> bool:
        router, models_dir = self.services.router, self.services.settings.models_dir
        path = current_path(models_dir)
        in_use = router.model.path if router.model is not None else None
        if path is None or path == in_use or path == self.unreadable:
            return False
        model = await asyncio.to_thread(load_current, models_dir, router.tagger.tokenizer)
        if model is None:
            self.unreadable = path
            return False
        in_use = router.model.path if router.model is not None else None
        if model.path == in_use or model.path != current_path(models_dir):
            return False  # another job set a model meanwhile, or `current` moved on: next minute
        router.set_model(model)
        log.info("routing model now %s", model.path)
        return True

    async def job(self) -> None:
        try:
            await self.check()
        except Exception:
            log.exception("checking for a new routing model failed")
