"""Drafts that time out are kept, not lost: for a day the resident can say 「继续」 to
resume one (report.resume), and they are told so — by the scheduled job as soon as the
draft times out (a customer-service message, inside WeChat's 48-hour window), or, if
they write first, in the reply to that message."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update

from bot.clock import utcnow
from bot.dialogs import texts
from bot.dialogs.report import DRAFTING, SUMMARY_CHARS
from bot.dialogs.session import IDLE, Session
from bot.services import Services
from storage.models import DialogState

_D = DialogState.__table__.c  # type: ignore[attr-defined]
BATCH = 200


def saved(data: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """The dialog data an expired draft leaves: the draft kept under saved_draft."""
    if not (data.get("texts") or data.get("evidence")):
        return None
    draft = {k: v for k, v in data.items() if k in ("texts", "evidence", "emergency")}
    return {"saved_draft": {**draft, "saved_at": now.isoformat()}}


def notice(data: dict[str, Any]) -> str:
    summary = "，".join(t for t in data.get("texts", []) if t) or "（照片等附件）"
    if len(summary) > SUMMARY_CHARS:
        summary = summary[:SUMMARY_CHARS] + "…"
    return texts.DRAFT_EXPIRED_KEPT.format(summary=summary)


def expire_now(session: Session, timeout_minutes: int) -> str:
    """A message arrived after the draft timed out (the job had not run yet)."""
    kept = saved(session.data, session.now) if session.state == DRAFTING else None
    if kept is None:
        session.reset()
        return texts.DRAFT_EXPIRED.format(minutes=timeout_minutes)
    told = notice(session.data)
    session.reset(**kept)
    return told


async def expire_drafts(services: Services) -> int:
    """The scheduled job: drafts past the timeout are kept for a day and the resident told.
    Each row is moved with a compare-and-set on updated_at, so workers never tell twice."""
    now = utcnow()
    cutoff = now - timedelta(minutes=services.settings.dialog.timeout_minutes)
    async with services.db.engine.connect() as connection:
        rows = (await connection.execute(select(_D.openid, _D.data, _D.updated_at).where(
            _D.state == DRAFTING, _D.updated_at < cutoff).limit(BATCH))).all()
    told = 0
    for openid, data, updated_at in rows:
        kept = saved(data or {}, now)
        async with services.db.transaction() as s:
            result = await (await s.connection()).execute(
                update(DialogState.__table__).where(and_(  # type: ignore[arg-type]
                    _D.openid == openid, _D.state == DRAFTING, _D.updated_at == updated_at))
                .values(state=IDLE, data=kept or {}, updated_at=now))
            if result.rowcount == 1 and kept:  # type: ignore[attr-defined]
                services.outbox.queue_text(s, openid, notice(data or {}), title="未提交的反映")
                told += 1
    if told:
        services.outbox.kick()
    return told
