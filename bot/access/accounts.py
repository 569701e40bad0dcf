"""Enabling and disabling a staff account, the same from `minyi staff enable|disable` and
the console's staff admin: the change itself (bot.casework.org_import.set_active, audited),
the member's console logins ended in the same transaction, and what the operator should
know next — the open tickets and joint-dispatch parts the member still holds as handler."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.access import sessions
from bot.casework.org_import import set_active
from bot.casework.parts import PartPolicy
from bot.casework.workflow import Workflow
from storage.models import Staff, Ticket, TicketPart


@dataclass(frozen=True)
class AccountChange:
    person: Staff
    active: bool
    held: int  # open tickets with the member as handler (counted when disabled)
    held_parts: int  # their joint-dispatch parts not done

    def summary(self) -> str:
        """What the operator is told, in one line."""
        said = f"已{'启用' if self.active else '停用'}：{self.person.login} {self.person.name}"
        held = [f"{self.held} 件未办结工单"] if self.held else []
        held += [f"{self.held_parts} 项未完成的协办任务"] if self.held_parts else []
        if held:
            said += (f"。此人仍经办 {'、'.join(held)}：同网格或同部门的人员可继续办理；"
                     "尚未开始处置的工单，调度员也可退回重新派单")
        return said


async def set_account_active(session: AsyncSession, workflow: Workflow, parts: PartPolicy, login: str,
                             active: bool, *, actor: str) -> AccountChange | None:
    """Enable or disable `login`; None when there is no such staff member."""
    person = await set_active(session, login, active, actor=actor)
    if person is None or person.id is None:
        return None
    if active:
        return AccountChange(person, active, 0, 0)
    await sessions.end_all(session, person.id)  # logged out of the console at once
    return AccountChange(person, active, await _open_tickets_held(session, workflow, person.id),
                         await _open_parts_held(session, parts, person.id))


async def _open_tickets_held(session: AsyncSession, workflow: Workflow, staff_id: int) -> int:
    found = await session.exec(select(func.count()).select_from(Ticket)
                               .where(Ticket.handler_id == staff_id, col(Ticket.status).in_(workflow.open_states())))
    return int(found.one())


async def _open_parts_held(session: AsyncSession, parts: PartPolicy, staff_id: int) -> int:
    not_done = [code for code, state in parts.states.items() if not state.done]
    found = await session.exec(select(func.count()).select_from(TicketPart)
                               .where(TicketPart.handler_id == staff_id, col(TicketPart.status).in_(not_done)))
    return int(found.one())
