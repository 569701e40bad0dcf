"""`minyi sla …`: run the SLA tick for an instant, and ask the working calendar about a day."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date
from typing import Any

from bot.settings import Settings


def cmd_sla_tick(args: argparse.Namespace, settings: Settings) -> int:
    from bot.casework.sla_clock import tick
    from bot.clock import parse_instant, to_local
    from bot.ticket_cli import with_services

    try:
        at = parse_instant(args.at)
    except ValueError:
        print(f"时间格式不对：{args.at}（例如 2026-10-10T09:00 或 2026-10-10T01:00:00+00:00）", file=sys.stderr)
        return 2

    async def run(services: Any) -> Any:
        return await tick(services.case, at)

    result = asyncio.run(with_services(settings, run))
    print(f"SLA 检查（{to_local(at):%Y-%m-%d %H:%M} 北京时间）：预警 {result.warnings} 条，超时 {result.breaches} 条，"
          f"督办升级 {result.escalations} 条；已发出通知 {result.notices} 条")
    return 0


def calendar_lines(sla: Any, day: date) -> list[str]:
    """「2026-10-10 是工作日：国庆节调休补班」, and a warning when the year's official
    arrangement is not known."""
    info = sla.calendar.explain(day)
    lines = [f"{day.isoformat()} {'是' if info.working else '不是'}工作日：{info.reason}"]
    if not info.covered:
        lines.append(f"注意：日历中没有 {day.year} 年的国务院放假调休安排，只按法定节日和周末计算（缺少调休补班）；"
                     f"请升级 holidays 库或在 config/holidays_cn.toml 中补充该年。")
    return lines


def cmd_sla_calendar(args: argparse.Namespace, settings: Settings) -> int:
    from bot.casework.sla import SlaPolicy
    from bot.clock import to_local, utcnow

    sla = SlaPolicy.load(settings.config_dir)
    try:
        day = date.fromisoformat(args.date) if args.date else to_local(utcnow()).date()
    except ValueError:
        print(f"日期格式不对：{args.date}（例如 2026-10-10）", file=sys.stderr)
        return 2
    for line in calendar_lines(sla, day):
        print(line)
    if not args.date:
        missing = sla.uncovered_ahead(day)
        years = "、".join(str(y) for y in missing)
        print(f"未来 {sla.horizon_days} 天：" + (f"缺少 {years} 年的放假调休安排" if missing else "放假调休安排齐全"))
    return 0


def add_sla_commands(sub: Any) -> None:
    """`minyi sla tick|calendar`."""
    sla = sub.add_parser("sla", help="办理时限：超时预警与督办（SLA 检查）、工作日历")
    sla_sub = sla.add_subparsers(dest="sla_command", required=True, metavar="子命令")

    run = sla_sub.add_parser(
        "tick", help="执行一次 SLA 检查：超时预警、超时标记、逐级督办（服务每分钟自动执行）",
        description="对计时中的工单（暂停状态如「待补充材料」不计时）：到预警点（config/sla.toml warn_ratio）"
                    "向处理人发超时预警；到时限标记超时，并按 [escalation] 逐级督办（街道 → 区 → 市）。"
                    "每张工单每个时限、每一级只做一次，重复执行不会重复通知。")
    run.add_argument("--at", metavar="时间",
                     help="按这个时刻检查（ISO 格式，如 2026-10-10T09:00；不带时区按北京时间），默认现在")
    run.set_defaults(func=cmd_sla_tick)

    calendar = sla_sub.add_parser(
        "calendar", help="某天是否工作日及原因（节假日、调休补班、周末）",
        description="工作日历 = holidays 库的中国法定节假日和国务院调休安排，加上 config/holidays_cn.toml 的本地补充。"
                    "某年的调休安排不在日历中时给出提示。不带日期：今天，并检查未来几天的日历是否齐全。")
    calendar.add_argument("date", nargs="?", metavar="日期", help="日期，如 2026-10-10（默认今天）")
    calendar.set_defaults(func=cmd_sla_calendar)
