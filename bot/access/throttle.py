"""Failed-login throttling: too many failures for an account, or from one client
address, within the window lock further attempts for a while (whatever the password)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import utcnow
from bot.settings import ConsoleSettings
from storage.models import LoginThrottle


def keys(login: str, address: str | None) -> list[str]:
    found = [f"login:{login.strip().lower()[:80]}"]
    if address:
        found.append(f"ip:{address[:80]}")
    return found


async def locked_until(session: AsyncSession, login: str, address: str | None) -> datetime | None:
    now = utcnow()
    latest = None
    for key in keys(login, address):
        row = await session.get(LoginThrottle, key)
        if row is not None and row.locked_until is not None and row.locked_until > now:
            latest = max(latest or row.locked_until, row.locked_until)
    return latest


async def failed(session: AsyncSession, policy: ConsoleSettings, login: str, address: str | None) -> None:
    now = utcnow()
    window = timedelta(minutes=policy.failed_login_window_minutes)
    for key in keys(login, address):
        row = await session.get(LoginThrottle, key)
        if row is None or now - row.window_start >= window:
            row = row or LoginThrottle(key=key, window_start=now)
            row.failures, row.window_start, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= policy.max_failed_logins:
            row.locked_until = now + timedelta(minutes=policy.lockout_minutes)
        session.add(row)


async def succeeded(session: AsyncSession, login: str) -> None:
    """A good login clears its account's count (not the address's: one good account
    does not let an address keep guessing others)."""
    await session.exec(delete(LoginThrottle).where(LoginThrottle.key == keys(login, None)[0]))  # type: ignore[call-overload, arg-type]
