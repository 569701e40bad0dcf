"""One-time binding codes: `minyi staff invite NAME` prints one, the staff member sends
「绑定 CODE」 to the account and their openid is bound (bot/dialogs/staff.py)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Staff, StaffInvite

# Letters and digits that cannot be mistaken for each other when read aloud or typed.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
VALID_FOR = timedelta(days=3)


def normalise(code: str) -> str:
    return "".join(code.split()).upper()


def code_hash(code: str) -> str:
    return hashlib.sha256(normalise(code).encode()).hexdigest()


async def create_invite(session: AsyncSession, staff: Staff, now: datetime) -> str:
    """A new code for `staff` (earlier unused codes stay valid until they expire)."""
    assert staff.id is not None
    code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    session.add(StaffInvite(code_hash=code_hash(code), staff_id=staff.id, created_at=now, expires_at=now + VALID_FOR))
    await session.flush()
    return code
