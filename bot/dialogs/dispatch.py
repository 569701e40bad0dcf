"""Runs one inbound message through the registry inside the caller's transaction:
load the resident and their dialog state, expire stale dialogs, call the handler,
save the state."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from sqlalchemy import Insert, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import utcnow
from bot.dialogs import drafts
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


@functools.cache
def _insert_if_absent(dialect: str, model: type) -> Insert:  # type: ignore[type-arg]
    """INSERT … ON CONFLICT (openid) DO NOTHING, built once per dialect and table."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_(model).on_conflict_do_nothing(index_elements=["openid"])


async def _load(db: AsyncSession, openid: str, now: datetime) -> tuple[Resident, DialogState]:
    row = (await db.exec(_RESIDENT_AND_DIALOG, params={"openid": openid})).first()
    if row is not None and row[1] is not None:
        return row[0], row[1]
    # A first message (or a resident without a dialog row). Two first messages of one
    # resident may run at once: each inserts only if the row is absent (PostgreSQL makes
    # the second wait for the first's commit, then do nothing), then both read the row.
    dialect = db.bind.dialect.name if db.bind else "sqlite"
    connection = await db.connection()
    if row is None:
        await connection.execute(_insert_if_absent(dialect, Resident),
                                 {"openid": openid, "subscribed": True, "created_at": now})
    await connection.execute(_insert_if_absent(dialect, DialogState),
                             {"openid": openid, "state": IDLE, "data": {}, "updated_at": now})
    resident, dialog = (await db.exec(_RESIDENT_AND_DIALOG, params={"openid": openid})).one()
    return resident, dialog


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
