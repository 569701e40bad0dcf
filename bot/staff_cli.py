"""`minyi org import` and `minyi staff …`: the organisation from a shell (admins on the
server). Every change bumps the organisation version, so running workers pick it up
within bot.casework.org.REFRESH_SECONDS; grid-tree changes need a restart."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import unicodedata
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from bot.settings import Settings

T = TypeVar("T")
CLI_SOURCE = "命令行"
STAFF_HEADERS = ("工号", "姓名", "角色", "网格/部门", "微信绑定", "状态")


class _DryRun(Exception):
    """Raised to roll an import back after showing what it would do."""


def _operator() -> str:
    """Who ran the command, for the audit trail."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


async def _with_db(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from bot.app import open_database

    db = await open_database(settings)
    try:
        return await work(db)
    finally:
        await db.close()


def _departments(settings: Settings) -> dict[str, str]:
    from nlp.taxonomy import Taxonomy

    return Taxonomy.load(settings.config_dir / "taxonomy.toml").departments


def pad(text: str, width: int) -> str:
    """Pad to a display width (a CJK character takes two columns)."""
    shown = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(width - shown, 0)


# ---------------------------------------------------------------- org import

def cmd_org_import(args: argparse.Namespace, settings: Settings) -> int:
    from bot.casework.org import default_rights
    from bot.casework.org_files import KIND_NAMES, OrgFileError, read_file
    from bot.casework.org_import import ImportRejected, import_org

    try:
        records = []
        for name in args.files:
            found = read_file(Path(name))
            counts = "，".join(f"{KIND_NAMES[k]} {sum(r.kind == k for r in found)} 条" for k in KIND_NAMES
                              if any(r.kind == k for r in found))
            print(f"读取 {name}：{counts or '没有记录'}", flush=True)
            records += found
    except OrgFileError as exc:
        print(f"导入失败，未写入任何数据：{exc}", file=sys.stderr)
        return 1
    rights, departments = default_rights(settings.config_dir), _departments(settings)
    target = ",".join(Path(n).name for n in args.files)

    async def run(db: Any) -> Any:
        try:
            async with db.transaction() as session:
                summary = await import_org(session, records, rights, departments, actor=_operator(), target=target,
                                           disable_missing=args.disable_missing,
                                           progress=lambda m: print(m, flush=True))
                if args.dry_run:
                    raise _DryRun(summary)
        except _DryRun as dry:
            return dry.args[0]
        return summary

    from sqlalchemy.exc import IntegrityError

    try:
        summary = asyncio.run(_with_db(settings, run))
    except ImportRejected as exc:
        print(f"导入失败，未写入任何数据（{len(exc.errors)} 处错误）：", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    except IntegrityError:  # another change wrote the same key meanwhile
        print("导入失败，未写入任何数据：与同时进行的修改冲突，请重新导入", file=sys.stderr)
        return 1
    print(f"{'试运行（未写入）' if args.dry_run else '导入完成'}。{summary.text()}")
    if summary.areas.changed and not args.dry_run:
        print("网格变更在服务重启后生效；工作人员变更在运行中的服务里自动生效。")
    return 0


# ---------------------------------------------------------------- staff

def cmd_staff_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlmodel import col, select

    from bot.casework.org import default_rights
    from storage.models import Area, Staff

    async def run(db: Any) -> tuple[list[Staff], dict[str, str]]:
        async with db.session() as s:
            statement = select(Staff).order_by(col(Staff.login), col(Staff.id))
            if args.role:
                statement = statement.where(Staff.role == args.role)
            staff = list((await s.exec(statement)).all())
            names = {a.code: a.name for a in (await s.exec(select(Area))).all()}
        return staff, names

    staff, area_names = asyncio.run(_with_db(settings, run))
    if not staff:
        print("没有工作人员。")
        return 0
    rights, departments = default_rights(settings.config_dir), _departments(settings)
    rows = [(p.login or f"#{p.id}", p.name, rights.role_label(p.role), _post(p, area_names, departments),
             "已绑定" if p.openid else "未绑定", "在职" if p.active else "停用") for p in staff]
    widths = [max(_width(v) for v in column) for column in zip(STAFF_HEADERS, *rows)]
    for row in [STAFF_HEADERS, *rows]:
        print("  ".join(pad(value, width) for value, width in zip(row, widths)).rstrip())
    active = sum(p.active for p in staff)
    print(f"共 {len(staff)} 名（在职 {active}，停用 {len(staff) - active}）")
    return 0


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _post(person: Any, area_names: dict[str, str], departments: dict[str, str]) -> str:
    """网格/部门: the department (if any), then the area."""
    parts = [departments.get(person.department, person.department)] if person.department else []
    if person.area_code:
        parts.append(area_names.get(person.area_code, person.area_code))
    return " · ".join(parts) or "-"


def cmd_staff_add(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.exc import IntegrityError
    from sqlmodel import select

    from bot.casework.org import default_rights
    from bot.casework.org_files import STAFF, Record
    from bot.casework.org_import import ImportRejected, import_org
    from storage.models import Staff

    values = {"login": args.login, "name": args.name, "role": args.role, "area": args.area,
              "department": args.department, "openid": args.openid}
    record = Record(STAFF, CLI_SOURCE, 0, 1, {k: v for k, v in values.items() if v is not None})
    rights, departments = default_rights(settings.config_dir), _departments(settings)

    async def run(db: Any) -> str | None:
        async with db.transaction() as session:
            if (await session.exec(select(Staff).where(Staff.login == args.login))).first() is not None:
                return f"工号 {args.login} 已存在（修改请用 minyi org import，停用请用 minyi staff disable）"
            await import_org(session, [record], rights, departments, actor=_operator(), target=args.login)
        return None

    try:
        problem = asyncio.run(_with_db(settings, run))
    except ImportRejected as exc:
        problem = "\n".join(exc.errors)
    except IntegrityError:  # added by someone else at the same moment
        problem = f"工号 {args.login} 已存在（修改请用 minyi org import，停用请用 minyi staff disable）"
    if problem:
        print(problem, file=sys.stderr)
        return 1
    role = rights.role_named(args.role)
    print(f"已添加：{args.login} {args.name}（{role.label if role else args.role}）")
    print(f"绑定微信：minyi staff invite {args.login}")
    return 0


def _set_active(active: bool) -> Callable[[argparse.Namespace, Settings], int]:
    def command(args: argparse.Namespace, settings: Settings) -> int:
        from bot.access.accounts import set_account_active
        from bot.casework.parts import PartPolicy
        from bot.casework.workflow import Workflow

        workflow_file = settings.config_dir / "workflow.toml"
        workflow, parts = Workflow.load(workflow_file), PartPolicy.load(workflow_file)

        async def run(db: Any) -> Any:
            async with db.transaction() as session:
                return await set_account_active(session, workflow, parts, args.login, active, actor=_operator())

        change = asyncio.run(_with_db(settings, run))
        if change is None:
            print(f"没有工号 {args.login}（见 minyi staff list）", file=sys.stderr)
            return 1
        print(change.summary())
        return 0

    return command


def cmd_staff_invite(args: argparse.Namespace, settings: Settings) -> int:
    from sqlmodel import select

    from bot.casework.invites import VALID_FOR, create_invite
    from bot.casework.org_import import DONE
    from bot.clock import utcnow
    from storage.models import AuditEntry, Staff

    async def run(db: Any) -> tuple[Staff | None, str | None]:
        async with db.transaction() as session:
            person = (await session.exec(select(Staff).where(Staff.login == args.login))).first()
            if person is None or not person.active:
                return person, None
            now = utcnow()
            code = await create_invite(session, person, now)
            session.add(AuditEntry(at=now, actor=_operator(), action="staff_invite", target=args.login, outcome=DONE))
            return person, code

    person, code = asyncio.run(_with_db(settings, run))
    if person is None or code is None:
        why = "没有工号" if person is None else "已停用的工号"
        print(f"{why} {args.login}，不能生成邀请码（见 minyi staff list）", file=sys.stderr)
        return 1
    print(f"{person.login} {person.name} 的一次性邀请码：{code}")
    if person.openid:
        print("（此人已绑定微信；用新微信兑换后改绑到新微信）")
    print(f"请在公众号发送：绑定 {code}（{VALID_FOR.days} 天内有效）")
    return 0


# ---------------------------------------------------------------- the parser

def add_org_commands(sub: Any) -> None:
    """`minyi org import` and `minyi staff list|add|disable|enable|invite`."""
    org = sub.add_parser("org", help="组织架构：导入网格和工作人员（CSV 或 TOML）")
    org_sub = org.add_subparsers(dest="org_command", required=True, metavar="子命令")
    imp = org_sub.add_parser("import", help="导入网格节点和工作人员（按网格编码、工号新增或更新）",
                             description="读取 CSV 或 TOML 文件（格式见 docs/org.md），先全部校验：有任何错误则指出行号和字段，"
                                         "什么也不写入；没有错误则在一个事务中按网格编码、工号新增或更新，可重复导入。"
                                         "状态为「停用」的人员被停用。")
    imp.add_argument("files", nargs="+", metavar="文件", help="CSV 或 TOML 文件（可多个，一并导入）")
    imp.add_argument("--disable-missing", action="store_true",
                     help="文件是完整名单：停用文件中没有列出的在职人员")
    imp.add_argument("--dry-run", action="store_true", help="只校验并显示将会新增、更新、停用多少，不写入")
    imp.set_defaults(func=cmd_org_import)

    staff = sub.add_parser("staff", help="工作人员：列表、添加、停用、启用、微信绑定邀请码")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True, metavar="子命令")
    listing = staff_sub.add_parser("list", help="全部工作人员：工号、姓名、角色、网格/部门、微信绑定、状态")
    listing.add_argument("--role", help="只看某个角色（角色代码，如 grid_worker）")
    listing.set_defaults(func=cmd_staff_list)

    add = staff_sub.add_parser("add", help="添加一名工作人员",
                               description="角色见 config/rights.toml：网格员要填所属网格（--area），"
                                           "部门联络员要填部门（--department，部门代码或中文名）。")
    add.add_argument("--login", required=True, help="工号（唯一）")
    add.add_argument("--name", required=True, help="姓名")
    add.add_argument("--role", required=True, help="角色代码或中文名，如 grid_worker 或 网格员")
    add.add_argument("--area", help="所属网格或区域编码")
    add.add_argument("--department", help="部门代码或中文名（部门联络员）")
    add.add_argument("--openid", help="已知的微信 openid（一般用 minyi staff invite 让本人绑定）")
    add.set_defaults(func=cmd_staff_add)

    for name, active, text in (("disable", False, "停用一名工作人员（不再接收通知、不能办理工单，工作台登录随即失效）"),
                               ("enable", True, "重新启用一名工作人员")):
        command = staff_sub.add_parser(name, help=text)
        command.add_argument("login", metavar="工号")
        command.set_defaults(func=_set_active(active))

    invite = staff_sub.add_parser("invite", help="生成一次性邀请码，本人在公众号发送「绑定 邀请码」绑定微信",
                                  description="邀请码只显示这一次（数据库中只存散列值），3 天内有效。")
    invite.add_argument("login", metavar="工号")
    invite.set_defaults(func=cmd_staff_invite)

    from bot.account_cli import add_passwd_command, add_token_commands

    add_passwd_command(staff_sub)
    add_token_commands(sub)
