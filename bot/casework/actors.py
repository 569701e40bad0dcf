"""Who takes an action: a staff member, the resident, or the system. Audit rows store
`Actor.code`; nothing acts under a free-typed name."""

from __future__ import annotations

from dataclasses import dataclass

from storage.models import Staff

STAFF_PREFIX = "staff:"
RESIDENT_CODE = "resident"
SYSTEM_CODE = "system"


@dataclass(frozen=True)
class Actor:
    code: str  # staff:<id> / resident / system
    staff: Staff | None = None
    openid: str | None = None  # the resident's, or the staff member's bound WeChat

    @classmethod
    def of_staff(cls, staff: Staff) -> "Actor":
        return cls(f"{STAFF_PREFIX}{staff.id}", staff, staff.openid)

    @classmethod
    def resident(cls, openid: str) -> "Actor":
        return cls(RESIDENT_CODE, None, openid)

    @property
    def is_staff(self) -> bool:
        return self.staff is not None

    @property
    def is_resident(self) -> bool:
        return self.code == RESIDENT_CODE

    @property
    def label(self) -> str:
        """How people see the actor (Chinese)."""
        if self.staff is not None:
            return f"{self.staff.name}（{self.staff.login or self.staff.id}）"
        return "群众" if self.is_resident else "系统"


SYSTEM = Actor(SYSTEM_CODE)
