"""From a login (session or token) to the Actor casework functions take."""

from __future__ import annotations

from bot.casework.actors import Actor
from bot.casework.org import Organisation


def staff_actor(org: Organisation, staff_id: int) -> Actor | None:
    """The active staff member as an Actor, else None (disabled, or unknown)."""
    person = org.record(staff_id)
    if person is None or not person.active:
        return None
    return Actor.of_staff(person)
