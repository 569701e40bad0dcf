"""Runs one inbound message through the registry inside the caller's transaction:
load the resident and their dialog state, expire stale dialogs, call the handler,
save the state."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import utcnow
from bot.dialogs import texts
from bot.dialogs.registry import EXPIRING_STATES, SHORT_STATES, find_handler
from bot.dialogs.session import IDLE, Session
from bot.services import Services
from bot.wechat.inbound import Inbound
from storage.models import DialogState, Resident


# The resident and their dialog state in one query (built once; the openid is a
# parameter): every message needs both, and a query costs more than the join.
_RESIDENT_AND_DIALOG = (select(Resident, DialogState)
                        .outerjoin(DialogState, col(DialogState.openid) == col(Resident.openid))
                        .where(col(Resident.openid) == bindparam("openid")))


async def _load(db: AsyncSession, openid: str, now) -> tuple[Resident, DialogState]:  # type: ignore[no-untyped-def]
    row = (await db.exec(_RESIDENT_AND_DIALOG, params={"openid": openid})).first()
    resident, dialog = row if row is not None else (None, None)
    if resident is None:
        resident = Resident(openid=openid, created_at=now, subscribed=True)
        db.add(resident)
        dialog = await db.get(DialogState, openid)
    if dialog is None:
        dialog = DialogState(openid=openid, state=IDLE, data={}, updated_at=now)
        db.add(dialog)
    return resident, dialog


def _expire(session: Session) -> None:
    if session.state == IDLE:
        return
    age = session.now - session.dialog.updated_at
    timeout = session.settings.dialog.timeout_minutes
    if session.state in EXPIRING_STATES and age > timedelta(minutes=timeout):
        session.notices.append(texts.DRAFT_EXPIRED.format(minutes=timeout))
        session.reset()
    elif session.state in SHORT_STATES and age > timedelta(minutes=SHORT_STATES[session.state]):
        session.reset()


async def dispatch(services: Services, db: AsyncSession, msg: Inbound, message_key: str) -> tuple[str | None, Session]:
    now = utcnow()
    resident, dialog = await _load(db, msg.openid, now)
    if msg.msg_type != "event" or msg.event not in ("unsubscribe", "templatesendjobfinish"):
        resident.last_seen_at = now
    session = Session(services=services, db=db, resident=resident, dialog=dialog, now=now, message_key=message_key)
    _expire(session)
    handler = find_handler(msg, session.state)
    reply = await handler(msg, session) if handler else None
    dialog.updated_at = now
    db.add(dialog)
    db.add(resident)
    if session.notices:
        reply = "\n".join([*session.notices, reply] if reply else session.notices)
    return reply, session
