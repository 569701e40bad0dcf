"""`minyi ticket part N DEPT accept|done --by LOGIN`: a co-department's liaison works
their department's part of a joint ticket (联合派单; bot.casework.parts)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bot.settings import CONFIG_DIR, Settings


def cmd_ticket_part(args: argparse.Namespace, settings: Settings) -> int:
    from bot.casework import parts
    from bot.casework.actors import Actor
    from bot.casework.desk import DeskError, audit_refusal
    from bot.ticket_cli import with_services

    async def run(services: Any) -> int:
        case = services.case
        staff = case.org.find(args.by)
        policy = parts.policy_of(case)
        action = policy.transitions[args.word].action if args.word in policy.transitions else args.word
        if staff is None:
            reason = f"没有在职的工作人员 {args.by}（见 minyi staff list）"
            await audit_refusal(case, Actor(f"unknown:{args.by}"[:64]), action, args.number, reason)
            print(reason, file=sys.stderr)
            return 1
        try:
            done = await parts.act_on_part(case, args.number, args.department, args.word, Actor.of_staff(staff),
                                           args.note)
        except DeskError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        name = services.router.taxonomy.department_name(done.department)
        print(f"工单 {done.number} {name}协办：{policy.label(done.from_status)} → {policy.label(done.to_status)}")
        if done.all_done:
            print("  协办部门均已办结" + ("，已通知牵头部门" if done.notices else ""))
        return 0

    return asyncio.run(with_services(settings, run))


def _part_words() -> dict[str, str]:
    from bot.casework.parts import PartPolicy

    try:
        return {word: t.label for word, t in PartPolicy.load(CONFIG_DIR / "workflow.toml").transitions.items()}
    except (OSError, ValueError, KeyError):
        return {}


def add_part_commands(ticket_sub: Any) -> None:
    """`minyi ticket part …`, among the `ticket` subcommands (bot.ticket_cli.add_ticket_commands)."""
    words = _part_words()
    part = ticket_sub.add_parser(
        "part", help="联合派单：协办部门接单、办结本部门的协办任务",
        description="协办动作（config/workflow.toml [part]）：" + "；".join(f"{w} = {label}" for w, label in words.items())
                    + "。由该部门的联络员操作，调度员可代为登记办结（config/rights.toml）；被拒绝的操作记入审计。"
                      "牵头部门须等所有协办任务办结后才能办结工单。")
    part.add_argument("number", help="工单编号")
    part.add_argument("department", metavar="部门", help="协办部门代码或名称，如 urban_mgmt 或 城管")
    part.add_argument("word", metavar="动作", choices=sorted(words) or None, help="、".join(words) or "accept、done")
    part.add_argument("--by", required=True, metavar="工作人员", help="操作人：在职工作人员的工号或姓名")
    part.add_argument("--note", help="办理说明")
    part.set_defaults(func=cmd_ticket_part)
