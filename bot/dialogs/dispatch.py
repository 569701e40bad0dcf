"""Runs one inbound message through the registry inside the caller's transaction:
load the resident and their dialog state, expire stale dialogs, call the handler,
save the state."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import utcnow
from bot.dialogs import drafts
from bot.dialogs.registry import EXPIRING_STATES, SHORT_STATES, find_handler
from bot.dialogs.session import IDLE, Session
from bot.services import Services
from bot.wechat.inbound import Inbound
from storage import conversation


def _expire(session: Session) -> None:
    if session.state == IDLE:
        return
    age = session.now - session.dialog.updated_at
    timeout = session.settings.dialog.timeout_minutes
    if session.state in EXPIRING_STATES and age > timedelta(minutes=timeout):
        session.notices.append(drafts.expire_now(session, timeout))  # a draft is kept for a day
    elif session.state in SHORT_STATES and age > timedelta(minutes=SHORT_STATES[session.state]):
        session.reset()


async def dispatch(services: Services, db: AsyncSession, msg: Inbound, message_key: str) -> tuple[str | None, Session]:
    now = utcnow()
    connection = await db.connection()
    resident, dialog = await conversation.load(connection, msg.openid, now, IDLE)
    if msg.msg_type != "event" or msg.event not in ("unsubscribe", "templatesendjobfinish"):
        resident.last_seen_at = now
    session = Session(services=services, db=db, resident=resident, dialog=dialog, now=now, message_key=message_key)
    _expire(session)
    handler = find_handler(msg, session.state)
    reply = await handler(msg, session) if handler else None
    if dialog.state != IDLE or dialog.changes():  # an idle dialog left as it was is not written
        dialog.updated_at = now
    await conversation.save(connection, resident, dialog)
    if session.notices:
        reply = "\n".join([*session.notices, reply] if reply else session.notices)
    return reply, session
