"""Console passwords: argon2id hashes (argon2-cffi), one row per staff member."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import utcnow
from storage.models import StaffCredential

MIN_LENGTH = 8
MAX_LENGTH = 128  # argon2 takes any length; a bound keeps a hostile form cheap to refuse
_hasher = PasswordHasher()
# Verifying against this when the account has no password costs as much as a real check,
# so timing does not tell which logins exist.
_DUMMY_HASH = _hasher.hash("minyi-no-such-account")


class WeakPassword(ValueError):
    """The message says what a password needs (Chinese)."""


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"密码至少 {MIN_LENGTH} 位")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"密码最多 {MAX_LENGTH} 位")
    if password.isdigit() or password.isalpha():
        raise WeakPassword("密码需同时包含字母和数字（或符号）")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def set_password(session: AsyncSession, staff_id: int, password: str, *, check: bool = True) -> None:
    """Set (or reset) a staff member's password, in the caller's transaction."""
    if check:
        check_strength(password)
    row = await session.get(StaffCredential, staff_id)
    if row is None:
        row = StaffCredential(staff_id=staff_id, password_hash=hash_password(password), changed_at=utcnow())
    else:
        row.password_hash, row.changed_at = hash_password(password), utcnow()
    session.add(row)


async def password_hash_of(session: AsyncSession, staff_id: int) -> str | None:
    row = await session.get(StaffCredential, staff_id)
    return row.password_hash if row else None
