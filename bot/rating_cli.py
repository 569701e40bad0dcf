"""`minyi rating expire [--at ISO]`: record the ratings nobody answered in time (回访;
bot.casework.ratings.expire_ratings, also a leader-only scheduled job)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bot.settings import Settings


def cmd_rating_expire(args: argparse.Namespace, settings: Settings) -> int:
    from bot.casework.ratings import expire_ratings
    from bot.clock import parse_instant
    from bot.ticket_cli import with_services

    try:
        now = parse_instant(args.at)
    except ValueError:
        print(f"时间格式不对：{args.at}（例如 2026-11-22T10:30 或 2026-11-22T02:30+00:00）", file=sys.stderr)
        return 1

    async def run(services: Any) -> int:
        done = await expire_ratings(services.case, now)
        print(f"已处理到期回访 {done} 条")
        return 0

    return asyncio.run(with_services(settings, run))


def add_rating_commands(sub: Any) -> None:
    rating = sub.add_parser("rating", help="回访评价：处理到期未评价的回访")
    rating_sub = rating.add_subparsers(dest="rating_command", required=True, metavar="子命令")
    expire = rating_sub.add_parser(
        "expire", help="到期未评价的记为「未评价」并归档；只答了题没写意见的按已答记录",
        description="回访发出后 config/rating.toml answer_days 天内未评价的：记为未评价（channel default，"
                    "不计入满意），工单按 config/workflow.toml [rating] unanswered_action 处理（默认归档）。"
                    "在聊天中答完题目、comment_wait_minutes 分钟内没有回复意见的：按已答记录。")
    expire.add_argument("--at", metavar="时间", help="按这个时间处理（ISO 8601；无时区时为北京时间；默认现在）")
    expire.set_defaults(func=cmd_rating_expire)
