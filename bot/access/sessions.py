"""Console login sessions, stored in the database: a fresh id at every login (the old
one, if any, is ended), idle and absolute expiry, a CSRF token per session, logout."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.access.tokens import digest, new_secret
from bot.clock import utcnow
from bot.settings import ConsoleSettings
from storage.db import Database
from storage.models import ConsoleSession

TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often


@dataclass(frozen=True)
class LiveSession:
    staff_id: int
    csrf_token: str
    expires_at: datetime


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and secrets.compare_digest(expected.encode(), (given or "").encode())


async def start(session: AsyncSession, policy: ConsoleSettings, staff_id: int, *, previous: str | None = None) -> str:
    """A new session for `staff_id`; returns the id for the cookie (never stored)."""
    if previous:
        await end(session, previous)
    now = utcnow()
    session_id = new_secret()
    session.add(ConsoleSession(id_hash=digest(session_id), staff_id=staff_id, csrf_token=new_secret(),
                               created_at=now, last_seen_at=now,
                               expires_at=now + timedelta(hours=policy.session_max_hours)))
    return session_id


async def resume(session: AsyncSession, policy: ConsoleSettings, session_id: str | None) -> LiveSession | None:
    """The live session behind a cookie, else None (an expired one is deleted)."""
    if not session_id or len(session_id) > 100:
        return None
    row = await session.get(ConsoleSession, digest(session_id))
    if row is None:
        return None
    now = utcnow()
    if now >= row.expires_at or now - row.last_seen_at >= timedelta(minutes=policy.session_idle_minutes):
        await session.delete(row)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        session.add(row)
    return LiveSession(row.staff_id, row.csrf_token, row.expires_at)


async def end(session: AsyncSession, session_id: str) -> None:
    await session.exec(delete(ConsoleSession).where(ConsoleSession.id_hash == digest(session_id)))  # type: ignore[call-overload, arg-type]


async def end_all(session: AsyncSession, staff_id: int) -> None:
    """Every login of a staff member (password reset, account disabled)."""
    await session.exec(delete(ConsoleSession).where(ConsoleSession.staff_id == staff_id))  # type: ignore[call-overload, arg-type]


async def purge_expired(session: AsyncSession, now: datetime | None = None) -> int:
    result = await session.exec(delete(ConsoleSession).where(ConsoleSession.expires_at <= (now or utcnow())))  # type: ignore[call-overload, arg-type]
    return int(result.rowcount or 0)


async def purge_sessions_job(db: Database) -> int:
    """The scheduled purge (bot/scheduler.py, leader only)."""
    async with db.transaction() as session:
        return await purge_expired(session)
