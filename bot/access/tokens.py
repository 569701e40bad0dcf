"""Random secrets handed out once (session ids, API tokens), stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import utcnow
from storage.models import ApiToken, Staff

API_TOKEN_PREFIX = "my_"  # so a leaked token is recognisable in logs and scanners


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


async def create_api_token(session: AsyncSession, staff_id: int, label: str | None = None) -> tuple[ApiToken, str]:
    """A new bearer token for `staff_id`: the row, and the token (shown this once)."""
    token = API_TOKEN_PREFIX + new_secret()
    row = ApiToken(token_hash=digest(token), prefix=token[:10], staff_id=staff_id, label=label,
                   created_at=utcnow())
    session.add(row)
    await session.flush()
    return row, token


async def api_token_staff(session: AsyncSession, token: str) -> int | None:
    """The staff id of a live token of an active staff member (and note its use), else None.

    The account's `active` flag is read here, from the database, not from the worker's
    staff cache: a member disabled on another worker or by the CLI is refused at once,
    not after the next cache refresh."""
    if not token.startswith(API_TOKEN_PREFIX) or len(token) > 100:
        return None
    row = (await session.exec(select(ApiToken)
                              .join(Staff, col(Staff.id) == col(ApiToken.staff_id))
                              .where(ApiToken.token_hash == digest(token),
                                     col(ApiToken.revoked_at).is_(None),
                                     col(Staff.active).is_(True)))).first()
    if row is None:
        return None
    row.last_used_at = utcnow()
    session.add(row)
    return row.staff_id


async def api_tokens(session: AsyncSession, staff_id: int | None = None) -> list[ApiToken]:
    statement = select(ApiToken).order_by(col(ApiToken.id))
    if staff_id is not None:
        statement = statement.where(ApiToken.staff_id == staff_id)
    return list((await session.exec(statement)).all())


async def revoke_api_token(session: AsyncSession, token_id: int) -> ApiToken | None:
    row = await session.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
    return row
