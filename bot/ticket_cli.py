"""`minyi ticket …`: list, show and act on tickets from a shell (dispatchers and
supervisors on the server; the web console calls the same bot.casework.desk.act)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Awaitable, Callable, TypeVar

from bot.settings import Settings

T = TypeVar("T")
# Audit events that are not workflow transitions, by their Chinese names.



async def with_services(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the database and build the services a request handler gets, run `work`."""
    import aiohttp

    from bot.app import build_services, open_database

    db = await open_database(settings)
    try:
        async with aiohttp.ClientSession() as http:
            services = await build_services(settings, db, http)
            try:
                return await work(services)
            finally:
                await services.tasks.close()
                await services.outbox.close()
    finally:
        await db.close()


def cmd_ticket_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlmodel import col, select

    from bot.clock import format_local
    from storage.models import Ticket

    async def run(services: Any) -> int:
        statement = select(Ticket).order_by(col(Ticket.id).desc()).limit(args.limit)
        if args.status:
            statement = statement.where(Ticket.status == args.status)
        if args.viewer:
            seen = await _visible_to(services.case, args.viewer)
            if seen is None:
                return 1
            statement = statement.where(seen)
        async with services.db.session() as s:
            rows = list((await s.exec(statement)).all())
        if not rows:
            print("没有符合条件的工单。")
        taxonomy, workflow, areas = services.router.taxonomy, services.workflow, services.areas
        for t in reversed(rows):
            summary = t.description.replace("\n", " ")
            print(f"{t.number}  {format_local(t.created_at)}  [{workflow.label(t.status)}] {t.urgency}  "
                  f"{taxonomy.label(t.category)}  {areas.name(t.area_code) or '未定位'}  "
                  f"{summary[:40]}{'…' if len(summary) > 40 else ''}")
        return 0

    return asyncio.run(with_services(settings, run))


async def _visible_to(case: Any, who: str) -> Any:
    """The where-clause of the tickets staff member `who` may see; None (refused, audited) when
    there is no such active staff member."""
    from bot.casework import rights
    from bot.casework.actors import Actor
    from bot.casework.desk import audit_refusal

    staff = case.org.find_any(who)
    actor = Actor.of_staff(staff) if staff else Actor(f"unknown:{who}"[:64])
    if staff is not None and staff.active:
        return rights.visible(case, actor)
    reason = f"没有在职的工作人员 {who}（见 minyi staff list）"
    await audit_refusal(case, actor, rights.VIEW, None, reason)
    print(reason, file=sys.stderr)
    return None


def cmd_ticket_show(args: argparse.Namespace, settings: Settings) -> int:
    from sqlmodel import col, select

    from bot.casework.countdown import countdown
    from bot.casework.queries import events_of, find_ticket
    from bot.casework.ticket_view import actor_label, event_label
    from bot.clock import format_local, utcnow
    from storage.models import Attachment

    async def run(services: Any) -> int:
        async with services.db.session() as s:
            ticket = await find_ticket(s, args.number)
            events = await events_of(s, ticket.id) if ticket and ticket.id is not None else []
            attachments = list((await s.exec(select(Attachment).where(Attachment.ticket_id == ticket.id)
                                             .order_by(col(Attachment.id))))) if ticket else []
        if ticket is None:
            print(f"没有工单 {args.number}", file=sys.stderr)
            return 1
        case, taxonomy, workflow = services.case, services.router.taxonomy, services.workflow
        print(f"工单 {ticket.number}（{workflow.label(ticket.status)}）")
        print(f"  类别：{taxonomy.label(ticket.category)}；紧急程度：{ticket.urgency}；"
              f"诉求类型：{ticket.appeal_type}")
        print(f"  部门：{taxonomy.department_name(ticket.department) or '-'}；"
              f"网格：{services.areas.full_name(ticket.area_code) or '未定位'}")
        handler = actor_label(case, f"staff:{ticket.handler_id}") if ticket.handler_id else "未接单"
        print(f"  时限：接单 {format_local(ticket.response_due_at) or '-'}，办结 {format_local(ticket.closure_due_at) or '-'}"
              f"（{countdown(workflow, ticket, utcnow()).text}）；处理人：{handler}")
        if ticket.address or ticket.lat is not None:
            point = f"（{ticket.lat:.5f}, {ticket.lng:.5f}）" if ticket.lat is not None and ticket.lng is not None else ""
            print(f"  位置：{ticket.address or ''}{point}")
        print(f"  内容：{ticket.description}")
        for item in attachments:
            stored = f"，已保存 {item.local_path}" if item.local_path else ""
            who = actor_label(case, item.added_by) if item.added_by else "群众"
            print(f"  附件：{item.kind} {item.label or ''}（{who}{stored}）")
        for e in events:
            move = f"{workflow.label(e.from_status) if e.from_status else ''}→{workflow.label(e.to_status)}" \
                if e.to_status and e.to_status != e.from_status else ""
            print(f"  {format_local(e.at)}  {event_label(case, e.action)} {move}  {actor_label(case, e.actor)}  "
                  f"{e.note or ''}")
        return 0

    return asyncio.run(with_services(settings, run))


def cmd_ticket_act(args: argparse.Namespace, settings: Settings) -> int:
    from bot.casework import merge
    from bot.casework.actors import Actor
    from bot.casework.desk import DeskError, act, audit_refusal

    async def run(services: Any) -> int:
        case = services.case
        staff = case.org.find_any(args.by)  # a disabled account is refused (and audited) by the rights check
        if staff is None:
            reason = f"没有在职的工作人员 {args.by}（见 minyi staff list）"
            await audit_refusal(case, Actor(f"unknown:{args.by}"[:64]), args.action, args.number, reason)
            print(reason, file=sys.stderr)
            return 1
        try:
            if args.action == merge.MERGE_ACTION:  # it needs the other ticket, to link it
                done = await merge.merge(case, args.number, args.into or "", Actor.of_staff(staff), args.note)
            else:
                if args.into:
                    raise DeskError("--into 只用于合并重复（merge）")
                done = await act(case, args.number, args.action, Actor.of_staff(staff), args.note, args.category,
                                 args.grid)
        except DeskError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        workflow = services.workflow
        print(f"工单 {done.number}：{workflow.label(done.from_status)} → {workflow.label(done.to_status)}")
        if done.recategorized:
            print(f"  分类改为 {services.router.taxonomy.label(done.category)}（记为路由模型的训练标签）")
        print(f"  已发出通知 {done.notices} 条")
        return 0

    return asyncio.run(with_services(settings, run))


def add_ticket_commands(sub: Any, workflow_actions: dict[str, str]) -> Any:
    """`minyi ticket list|show|act`; `workflow_actions`: action → Chinese label. Returns
    the ticket command's subparsers, for commands registered beside these (`ticket part`)."""
    ticket = sub.add_parser("ticket", help="工单：列表、详情、处理动作（派单/改派、接单、办结……）")
    ticket_sub = ticket.add_subparsers(dest="ticket_command", required=True, metavar="子命令")

    listing = ticket_sub.add_parser("list", help="最近的工单（最新在下）")
    listing.add_argument("--status", help="只看某个状态，如 triage（待分拨）、dispatched（已派单）")
    listing.add_argument("--limit", type=int, default=20, help="条数（默认 20）")
    listing.add_argument("--as", dest="viewer", metavar="工作人员",
                         help="只列出此工作人员（工号或姓名）有权查看的工单（config/rights.toml）")
    listing.set_defaults(func=cmd_ticket_list)

    show = ticket_sub.add_parser("show", help="一张工单的详情和处理记录")
    show.add_argument("number", help="工单编号，如 20261122-0007")
    show.set_defaults(func=cmd_ticket_show)

    actions = "；".join(f"{a} = {label}" for a, label in workflow_actions.items())
    act = ticket_sub.add_parser("act", help="对工单执行一个流程动作",
                                description=f"动作（config/workflow.toml）：{actions}。"
                                            "dispatch 可同时改分类（--category）和网格（--grid）：改分类记入审计，"
                                            "并作为路由模型下次训练的标签。群众（及并入此单的重复诉求人）会收到状态更新。")
    act.add_argument("number", help="工单编号")
    act.add_argument("action", metavar="动作", help="见上面的动作列表")
    act.add_argument("--by", required=True, metavar="工作人员",
                     help="操作人：在职工作人员的工号或姓名（不认识的操作人被拒绝，并记入审计）")
    act.add_argument("--note", help="处理说明（会发给群众）")
    act.add_argument("--category", help="改为此分类代码（仅 dispatch）")
    act.add_argument("--grid", help="改为此网格编码（仅 dispatch）")
    act.add_argument("--into", metavar="工单编号", help="合并到此工单（仅 merge：本单作为它的重复诉求一并办理）")
    act.set_defaults(func=cmd_ticket_act)
    return ticket_sub
