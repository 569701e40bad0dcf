"""合并重复: a ticket that reports the same problem as another open ticket is closed
into it (the workflow's merge action) and linked as its duplicate, so the resident is
told, and hears again when the other ticket moves (notify.resident_updates)."""

from __future__ import annotations

from sqlmodel import select

from bot.casework import desk
from bot.casework.actors import Actor
from bot.casework.context import Casework
from bot.casework.desk import DeskError, Done, Refused
from storage.models import Ticket

MERGE_ACTION = "merge"  # a transition of config/workflow.toml


def check_plain_action(action: str) -> None:
    """The merge action needs the other ticket: taken through `merge` only, never as a
    plain action (the console's and the API's action forms ask this)."""
    if action == MERGE_ACTION:
        raise DeskError("合并重复请填写要合并到的工单编号（用合并功能）")


async def merge(case: Casework, number: str, into: str, actor: Actor, note: str | None = None) -> Done:
    into = (into or "").strip()
    if not into:
        raise DeskError("请填写要合并到的工单编号")
    if into == number:
        raise DeskError("不能合并到工单自身")
    desk.check_request(case, MERGE_ACTION, None, None)
    try:
        async with case.db.transaction() as session:
            target = (await session.exec(select(Ticket).where(Ticket.number == into))).first()
            if target is None:
                raise DeskError(f"没有工单 {into}")
            if not case.workflow.is_open(target.status) or target.duplicate_of_id is not None:
                raise DeskError(f"工单 {into} 已办结或已合并，不能作为合并目标")
            # The resident reads this note: never the other resident's ticket number.
            said = "与其他群众反映的同一问题合并办理" + (f"：{note}" if note else "")
            done = await desk.act_in(case, session, number, MERGE_ACTION, actor, said)
            ticket = (await session.exec(select(Ticket).where(Ticket.number == number))).one()
            ticket.duplicate_of_id = target.id
            session.add(ticket)
    except Refused as exc:
        await desk.audit_refusal(case, actor, MERGE_ACTION, number, str(exc))
        raise
    case.outbox.kick()
    return done
