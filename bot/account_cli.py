"""`minyi staff passwd` and `minyi token create|list|revoke`: console passwords and JSON
API tokens from a shell (admins on the server)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from bot.settings import Settings
from bot.staff_cli import _operator, _with_db


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("新密码：")
    if getpass.getpass("再输入一次：") != first:
        print("两次输入的密码不一致，未修改", file=sys.stderr)
        return None
    return first


def cmd_staff_passwd(args: argparse.Namespace, settings: Settings) -> int:
    from sqlmodel import select

    from bot.access import passwords, sessions
    from bot.casework.org_import import DONE
    from bot.clock import utcnow
    from storage.models import AuditEntry, Staff

    password = _read_password(args)
    if password is None:
        return 1
    try:
        passwords.check_strength(password)
    except passwords.WeakPassword as exc:
        print(f"密码不符合要求：{exc}", file=sys.stderr)
        return 1

    async def run(db: Any) -> Staff | None:
        async with db.transaction() as session:
            person = (await session.exec(select(Staff).where(Staff.login == args.login))).first()
            if person is None or person.id is None:
                return None
            await passwords.set_password(session, person.id, password)
            await sessions.end_all(session, person.id)  # a reset ends every login
            session.add(AuditEntry(at=utcnow(), actor=_operator(), action="staff_passwd", target=args.login,
                                   outcome=DONE))
            return person

    person = asyncio.run(_with_db(settings, run))
    if person is None:
        print(f"没有工号 {args.login}（见 minyi staff list）", file=sys.stderr)
        return 1
    print(f"已设置 {person.login} {person.name} 的控制台密码；此前的登录已全部退出")
    if not person.active:
        print("（此人已停用，启用后才能登录）")
    return 0


def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    from sqlmodel import select

    from bot.access.tokens import create_api_token
    from bot.casework.org_import import DONE
    from bot.clock import utcnow
    from storage.models import AuditEntry, Staff

    async def run(db: Any) -> tuple[Staff | None, str | None]:
        async with db.transaction() as session:
            person = (await session.exec(select(Staff).where(Staff.login == args.staff))).first()
            if person is None or person.id is None or not person.active:
                return person, None
            row, token = await create_api_token(session, person.id, args.label)
            session.add(AuditEntry(at=utcnow(), actor=_operator(), action="token_create", target=args.staff,
                                   outcome=DONE, reason=f"令牌 {row.id}"))
            return person, token

    person, token = asyncio.run(_with_db(settings, run))
    if token is None:
        why = "没有工号" if person is None else "已停用的工号"
        print(f"{why} {args.staff}，不能创建令牌（见 minyi staff list）", file=sys.stderr)
        return 1
    assert person is not None
    print(token)
    print(f"以上是 {person.login} {person.name} 的 API 令牌，只显示这一次；权限与本人相同。"
          f"请求时加请求头 Authorization: Bearer <令牌>", file=sys.stderr)
    return 0


def cmd_token_list(args: argparse.Namespace, settings: Settings) -> int:
    from bot.access.tokens import api_tokens
    from bot.clock import format_local

    from sqlmodel import select

    from storage.models import Staff

    async def run(db: Any) -> tuple[list[Any], dict[int, str]]:
        async with db.session() as session:
            logins = {p.id: f"{p.login} {p.name}" for p in (await session.exec(select(Staff))).all()}
            return await api_tokens(session), logins

    rows, logins = asyncio.run(_with_db(settings, run))
    if not rows:
        print("还没有 API 令牌（minyi token create --staff 工号）")
        return 0
    for row in rows:
        state = f"已吊销 {format_local(row.revoked_at)}" if row.revoked_at else "有效"
        used = format_local(row.last_used_at) if row.last_used_at else "未使用"
        print(f"{row.id}\t{row.prefix}…\t{logins.get(row.staff_id, row.staff_id)}\t{row.label or ''}\t创建 {format_local(row.created_at)}"
              f"\t最近使用 {used}\t{state}")
    return 0


def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from bot.access.tokens import revoke_api_token
    from bot.casework.org_import import DONE
    from bot.clock import utcnow
    from storage.models import AuditEntry

    async def run(db: Any) -> bool:
        async with db.transaction() as session:
            row = await revoke_api_token(session, args.id)
            if row is None:
                return False
            session.add(AuditEntry(at=utcnow(), actor=_operator(), action="token_revoke", target=str(args.id),
                                   outcome=DONE))
            return True

    if not asyncio.run(_with_db(settings, run)):
        print(f"没有编号为 {args.id} 的令牌（见 minyi token list）", file=sys.stderr)
        return 1
    print(f"令牌 {args.id} 已吊销")
    return 0


def add_passwd_command(staff_sub: Any) -> None:
    passwd = staff_sub.add_parser("passwd", help="设置或重置工作人员的控制台密码（此前的登录全部退出）",
                                  description="交互输入两次新密码；脚本中用 --password-stdin 从标准输入读一行。"
                                              "密码至少 8 位，需同时包含字母和数字（或符号）。")
    passwd.add_argument("login", metavar="工号")
    passwd.add_argument("--password-stdin", action="store_true", help="从标准输入读取密码（一行）")
    passwd.set_defaults(func=cmd_staff_passwd)


def add_token_commands(sub: Any) -> None:
    token = sub.add_parser("token", help="JSON API 令牌：创建、列表、吊销（权限与所属工作人员相同）")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="子命令")
    create = token_sub.add_parser("create", help="为一名工作人员创建 API 令牌（只显示一次）")
    create.add_argument("--staff", required=True, metavar="工号", help="令牌所属的工作人员")
    create.add_argument("--label", help="用途说明，如「区平台对接」")
    create.set_defaults(func=cmd_token_create)
    token_sub.add_parser("list", help="列出全部令牌（不含令牌本身）").set_defaults(func=cmd_token_list)
    revoke = token_sub.add_parser("revoke", help="吊销一个令牌")
    revoke.add_argument("id", type=int, metavar="编号", help="minyi token list 中的编号")
    revoke.set_defaults(func=cmd_token_revoke)
