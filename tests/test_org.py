"""The organisation from a shell: `minyi org import` (CSV and TOML, idempotent, all or
nothing), `minyi staff list|add|disable|enable|invite`, and a change reaching the running
app without a restart (bot.casework.org.Organisation.refresh_if_changed)."""

from __future__ import annotations

import re
from pathlib import Path

from sqlmodel import col, func, select

from bot.casework import rights
from bot.casework.actors import Actor
from bot.casework.invites import code_hash
from bot.casework.notify import notify_staff
from bot.casework.org import org_version
from storage.models import Area, AuditEntry, Staff, StaffInvite
from tests.conftest import services_of
from tests.steps import audit_entries, follow, messages_to, minyi, report, staff_member, ticket_by_number

AREAS_CSV = """编码,名称,层级,上级编码,户数,地名
420199001003,新城社区,社区,420199001,,
420199001003001,新城第一网格,网格,420199001003,450,新城花园、新城路
"""
STAFF_CSV = """工号,姓名,角色,网格,部门,状态
G21,孙一,网格员,420199001003001,,在职
L21,钱二,部门联络员,,住建,
"""
ORG_TOML = """# one file, both kinds
[[area]]
code = "420199002003"
name = "湖滨社区"
level = "community"
parent = "420199002"

[[area]]
code = "420199002003001"
name = "湖滨第一网格"
level = "grid"
parent = "420199002003"
places = ["湖滨花园"]
polygon = [[114.36, 30.56], [114.38, 30.56], [114.38, 30.58], [114.36, 30.58], [114.36, 30.56]]

[[staff]]
login = "G31"
name = "周三"
role = "grid_worker"
area = "420199002003001"

[[staff]]
login = "D31"
name = "吴四"
role = "调度员"
area = "420199002"
"""
GARBAGE = "枫林小区垃圾桶满了好几天没人清运，臭气熏天"  # 枫林第一网格 (G01)


async def run(capsys, *argv: str) -> str:  # type: ignore[no-untyped-def]
    code, out, err = await minyi(capsys, *argv)
    assert code == 0, (argv, err)
    return out


async def counts(client) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """Areas, staff, and the organisation version."""
    async with services_of(client).db.session() as s:
        areas = (await s.exec(select(func.count()).select_from(Area))).one()
        staff = (await s.exec(select(func.count()).select_from(Staff))).one()
        return areas, staff, await org_version(s)


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return str(path)


# ------------------------------------------------------------ import

async def test_a_csv_import_adds_then_updates_then_changes_nothing(client, cli_env, capsys, tmp_path):
    areas = write(tmp_path, "areas.csv", AREAS_CSV, "utf-8-sig")  # Excel's UTF-8
    staff = write(tmp_path, "staff.csv", STAFF_CSV, "gb18030")  # Excel's 中文 CSV
    _, _, version = await counts(client)
    out = await run(capsys, "org", "import", areas, staff)
    assert f"读取 {areas}：网格节点 2 条" in out and f"读取 {staff}：工作人员 2 条" in out and "校验 4 条记录…" in out
    assert "导入完成。网格节点：新增 2，更新 0，未变 0；工作人员：新增 2，更新 0，停用 0，未变 0" in out
    assert "网格变更在服务重启后生效" in out
    grid = await area_row(client, "420199001003001")
    assert (grid.name, grid.level, grid.parent_code, grid.households, grid.places) == (
        "新城第一网格", "grid", "420199001003", 450, ["新城花园", "新城路"])
    g21, l21 = await staff_member(client, "G21"), await staff_member(client, "L21")
    assert (g21.name, g21.role, g21.area_code, g21.active) == ("孙一", "grid_worker", "420199001003001", True)
    assert (l21.role, l21.department, l21.area_code) == ("liaison", "housing", None)  # 住建 → its code
    assert (await counts(client))[2] == version + 1

    out = await run(capsys, "org", "import", areas, staff)  # again: nothing to do
    assert "网格节点：新增 0，更新 0，未变 2；工作人员：新增 0，更新 0，停用 0，未变 2" in out
    assert "网格变更" not in out and (await counts(client))[2] == version + 1

    changed = STAFF_CSV.replace("孙一", "孙一一").replace("钱二,部门联络员,,住建,", "钱二,部门联络员,,住建,停用")
    out = await run(capsys, "org", "import", write(tmp_path, "staff2.csv", changed))
    assert "工作人员：新增 0，更新 1，停用 1，未变 0" in out
    assert (await staff_member(client, "G21")).name == "孙一一" and not (await staff_member(client, "L21")).active
    entry = [e for e in await audit_entries(client) if e.action == "org_import"][-1]
    assert (entry.actor.startswith("cli"), entry.target, entry.outcome) == (True, "staff2.csv", "done")
    assert entry.reason == "网格节点：新增 0，更新 0，未变 0；工作人员：新增 0，更新 1，停用 1，未变 0"


async def area_row(client, code: str) -> Area:  # type: ignore[no-untyped-def]
    async with services_of(client).db.session() as s:
        return (await s.exec(select(Area).where(Area.code == code))).one()


async def test_a_toml_import_of_areas_and_staff_together(client, cli_env, capsys, tmp_path):
    path = write(tmp_path, "org.toml", ORG_TOML)
    out = await run(capsys, "org", "import", path)
    assert f"读取 {path}：网格节点 2 条，工作人员 2 条" in out
    assert "网格节点：新增 2，更新 0，未变 0；工作人员：新增 2，更新 0，停用 0，未变 0" in out
    grid = await area_row(client, "420199002003001")
    assert grid.polygon[0] == [114.36, 30.56] and grid.places == ["湖滨花园"]  # type: ignore[index]
    assert (await staff_member(client, "D31")).role == "dispatcher"  # named by its Chinese label
    out = await run(capsys, "org", "import", path)
    assert "网格节点：新增 0，更新 0，未变 2；工作人员：新增 0，更新 0，停用 0，未变 2" in out
    out = await run(capsys, "org", "import", write(tmp_path, "org2.toml", ORG_TOML.replace("湖滨花园", "湖滨花园\", \"湖滨路")))
    assert "网格节点：新增 0，更新 1，未变 1" in out
    assert (await area_row(client, "420199002003001")).places == ["湖滨花园", "湖滨路"]


async def test_an_invalid_file_writes_nothing_and_names_each_line_and_field(client, cli_env, capsys, tmp_path):
    before = await counts(client)
    audits = len(await audit_entries(client))
    bad_csv = STAFF_CSV + "G22,,网格员,999,,\nG23,赵五,队长,,,\nG21,孙一,网格员,420199001001001,,也许\n"
    code, out, err = await minyi(capsys, "org", "import", write(tmp_path, "areas.csv", AREAS_CSV),
                                 write(tmp_path, "staff.csv", bad_csv))
    assert code == 1 and "导入完成" not in out
    assert "导入失败，未写入任何数据（5 处错误）" in err
    for line in ("staff.csv 第 4 行 字段「姓名」：必须填写",
                 "staff.csv 第 4 行 字段「网格」：没有网格或区域 999",
                 "staff.csv 第 5 行 字段「角色」：没有角色「队长」",
                 "staff.csv 第 6 行 字段「工号」：G21 重复（已见于 staff.csv 第 2 行）",
                 "staff.csv 第 6 行 字段「状态」：应为「在职」或「停用」，而不是「也许」"):
        assert line in err, line

    bad_toml = ORG_TOML.replace('level = "grid"', 'level = "楼栋"').replace('role = "调度员"', 'role = "调度员"\nopenid = "o-demo-grid-01"')
    code, _, err = await minyi(capsys, "org", "import", write(tmp_path, "org.toml", bad_toml))
    assert code == 1
    assert "org.toml 第 8 行 字段「层级」：没有层级「楼栋」" in err
    assert "org.toml 第 16 行 字段「网格」：没有网格或区域 420199002003001" in err  # its grid was refused
    assert "org.toml 第 22 行 字段「微信openid」：已绑定在 G01 名下" in err
    no_grid = '[[staff]]\nlogin = "G40"\nname = "x"\nrole = "grid_worker"\n'
    code, _, err = await minyi(capsys, "org", "import", write(tmp_path, "x.toml", no_grid))
    assert code == 1 and "x.toml 第 1 行 字段「网格」：网格员必须填写所属网格" in err
    code, _, err = await minyi(capsys, "org", "import", write(tmp_path, "y.csv", "姓名,电话\n张三,123\n"))
    assert code == 1 and "无法识别表头" in err

    assert await counts(client) == before
    assert len(await audit_entries(client)) == audits


async def test_a_full_roster_disables_whoever_it_leaves_out(client, cli_env, capsys, tmp_path):
    roster = "工号,姓名,角色,网格\nG01,王芳,网格员,420199001001001\nG02,李强,网格员,420199001001002\n"
    out = await run(capsys, "org", "import", write(tmp_path, "roster.csv", roster), "--disable-missing", "--dry-run")
    assert "试运行（未写入）。网格节点：新增 0，更新 0，未变 0；工作人员：新增 0，更新 0，停用 15，未变 2" in out
    assert (await staff_member(client, "G03")).active
    out = await run(capsys, "org", "import", write(tmp_path, "roster.csv", roster), "--disable-missing")
    assert "工作人员：新增 0，更新 0，停用 15，未变 2" in out
    assert not (await staff_member(client, "G03")).active and (await staff_member(client, "G01")).active


async def test_the_demo_organisation_is_loaded_through_the_import(client):
    entries = [e for e in await audit_entries(client) if e.action == "org_import"]
    assert [(e.actor, e.target) for e in entries] == [("system", "config/demo")]
    assert entries[0].reason == "网格节点：新增 15，更新 0，未变 0；工作人员：新增 17，更新 0，停用 0，未变 0"
    org = services_of(client).case.org
    assert org.version == 1 and len(org.staff) == 17 and org.find("王芳").login == "G01"  # type: ignore[union-attr]


# ------------------------------------------------------------ staff commands

async def test_staff_list_add_disable_enable(client, cli_env, capsys):
    out = await run(capsys, "staff", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["工号", "姓名", "角色", "网格/部门", "微信绑定", "状态"]
    assert lines[1].split() == ["D01", "周建国", "调度员", "示范区", "已绑定", "在职"]
    assert ["G01", "王芳", "网格员", "枫林第一网格", "已绑定", "在职"] in [line.split() for line in lines]
    assert ["L02", "孙悦", "部门联络员", "住建", "·", "示范区", "已绑定", "在职"] in [line.split() for line in lines]
    assert lines[-1] == "共 17 名（在职 17，停用 0）"

    out = await run(capsys, "staff", "add", "--login", "G09", "--name", "钱多多", "--role", "网格员",
                    "--area", "420199001001001")
    assert out.splitlines() == ["已添加：G09 钱多多（网格员）", "绑定微信：minyi staff invite G09"]
    code, _, err = await minyi(capsys, "staff", "add", "--login", "G09", "--name", "又一个", "--role", "grid_worker",
                               "--area", "420199001001001")
    assert code == 1 and "工号 G09 已存在" in err
    code, _, err = await minyi(capsys, "staff", "add", "--login", "G10", "--name", "钱少", "--role", "grid_worker",
                               "--area", "420199001")
    assert code == 1 and "命令行 字段「网格」：420199001 是街道/乡镇；网格员的区域应为网格" in err
    code, _, err = await minyi(capsys, "staff", "add", "--login", "L10", "--name", "某某", "--role", "liaison")
    assert code == 1 and "部门联络员必须填写部门" in err

    assert await run(capsys, "staff", "disable", "G09") == "已停用：G09 钱多多\n"
    out = await run(capsys, "staff", "list", "--role", "grid_worker")
    assert ["G09", "钱多多", "网格员", "枫林第一网格", "未绑定", "停用"] in [line.split() for line in out.splitlines()]
    assert out.splitlines()[-1] == "共 9 名（在职 8，停用 1）"
    assert await run(capsys, "staff", "enable", "G09") == "已启用：G09 钱多多\n"
    code, _, err = await minyi(capsys, "staff", "disable", "G99")
    assert code == 1 and "没有工号 G99" in err
    actions = [(e.action, e.target) for e in await audit_entries(client) if e.action.startswith("staff_")]
    assert actions == [("staff_disable", "G09"), ("staff_enable", "G09")]
    added = [e for e in await audit_entries(client) if e.action == "org_import" and e.target == "G09"]
    assert [e.reason for e in added] == ["网格节点：新增 0，更新 0，未变 0；工作人员：新增 1，更新 0，停用 0，未变 0"]


async def test_staff_invite_prints_a_one_time_code(client, cli_env, capsys):
    out = await run(capsys, "staff", "invite", "G01")
    code = re.search(r"绑定 ([A-Z0-9]{8})（3 天内有效）", out)
    assert code, out
    assert out.splitlines()[0] == f"G01 王芳 的一次性邀请码：{code.group(1)}"
    assert out.splitlines()[-1] == f"请在公众号发送：绑定 {code.group(1)}（3 天内有效）"
    g01 = await staff_member(client, "G01")
    async with services_of(client).db.session() as s:
        invites = (await s.exec(select(StaffInvite).order_by(col(StaffInvite.created_at)))).all()
        audit = (await s.exec(select(AuditEntry).where(AuditEntry.action == "staff_invite"))).all()
    assert [(i.staff_id, i.code_hash) for i in invites] == [(g01.id, code_hash(code.group(1)))]  # only its hash
    assert [(a.target, a.outcome) for a in audit] == [("G01", "done")] and code.group(1) not in (audit[0].reason or "")
    await run(capsys, "staff", "disable", "G02")
    failed, _, err = await minyi(capsys, "staff", "invite", "G02")
    assert failed == 1 and "已停用的工号 G02" in err
    failed, _, err = await minyi(capsys, "staff", "invite", "G99")
    assert failed == 1 and "没有工号 G99" in err


# ------------------------------------------------------------ without a restart

async def test_an_org_change_reaches_the_running_app_without_a_restart(client, sender, new_openid, cli_env, capsys):
    services = services_of(client)
    case, org = services.case, services.case.org
    version = org.version
    assert not await org.refresh_if_changed(services.db)  # nothing changed: nothing reloaded
    wechat = new_openid()
    await run(capsys, "staff", "add", "--login", "G09", "--name", "钱多多", "--role", "grid_worker",
              "--area", "420199001001001", "--openid", wechat)
    assert org.find("G09") is None  # not yet
    assert await org.refresh_if_changed(services.db) and org.version == version + 1
    assert org.find("G09").openid == wechat  # type: ignore[union-attr]

    number = await report(sender, await follow(sender, new_openid()), GARBAGE)
    assert any(number in m and "新工单" in m for m in await messages_to(client, wechat))  # told like G01
    ticket = await ticket_by_number(client, number)
    g01 = org.find("G01")
    assert g01 is not None and rights.refusal(case, Actor.of_staff(g01), ticket, "accept") is None

    await run(capsys, "staff", "disable", "G01")
    assert await org.refresh_if_changed(services.db) and org.version == version + 2
    assert org.find("G01") is None and org.find_any("G01").active is False  # type: ignore[union-attr]
    assert rights.refusal(case, Actor.of_staff(g01), ticket, "accept") == "您的账号（G01）已停用，不能办理工单"
    told = {row["openid"] for row in notify_staff(case, ticket)}
    assert wechat in told and "o-demo-grid-01" not in told
