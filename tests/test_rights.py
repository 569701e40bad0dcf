"""The rights table (config/rights.toml, bot.casework.rights): each workflow action is open
to the roles the table gives it, on the tickets of their scope, and every refusal is
explained in Chinese and audited.

Reports come in through /wechat; staff act with `minyi ticket act` (bot.casework.desk).
The demo staff (config/demo/staff.toml): G01 is the grid worker of 枫林第一网格, G02 of
枫林第二网格, G05 of 幸福里第一网格; L01 公安, L02 住建, L03 城管, L05 生态环境 liaisons;
D01 the district dispatcher, S01 the district supervisor.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from bot.casework import rights
from bot.casework.actors import SYSTEM, Actor
from bot.casework.parts import PartPolicy
from bot.casework.rights import RightsTable
from bot.casework.workflow import Workflow
from bot.settings import CONFIG_DIR
from storage.models import Staff, TicketEvent
from tests.conftest import services_of
from tests.steps import actor_code, audit_entries, follow, minyi, report, ticket_by_number

PART_ACTIONS = {t.action for t in PartPolicy.load(CONFIG_DIR / "workflow.toml").transitions.values()}

GARBAGE = "枫林小区垃圾桶满了好几天没人清运，臭气熏天"  # 垃圾清运: 枫林第一网格, 城管 alone
FUMES = "枫林小区楼下烧烤摊油烟太大，窗户都不敢开"  # 油烟扰民: 枫林第一网格, 生态环境 leads, 城管 joins
ELEVATOR = "幸福里小区3号楼电梯坏了，老人下不了楼"  # 电梯故障: 幸福里第一网格, 市场监管 leads, 住建 joins
EAST_DISPATCHER = ("staff", "add", "--login", "D02", "--name", "东湖调度", "--role", "dispatcher",
                   "--area", "420199002")  # 东湖街道 only
ADMIN = ("staff", "add", "--login", "A01", "--name", "管理员甲", "--role", "admin")


async def act(capsys, number: str, action: str, login: str) -> None:  # type: ignore[no-untyped-def]
    code, _, err = await minyi(capsys, "ticket", "act", number, action, "--by", login)
    assert code == 0, (action, login, err)


async def run(capsys, *argv: str) -> None:  # type: ignore[no-untyped-def]
    code, _, err = await minyi(capsys, *argv)
    assert code == 0, (argv, err)


async def new_ticket(client, sender, openid: str, text: str = GARBAGE) -> str:  # type: ignore[no-untyped-def]
    """A report in 枫林第一网格, dispatched to its grid worker and department."""
    number = await report(sender, await follow(sender, openid), text)
    ticket = await ticket_by_number(client, number)
    department = "urban_mgmt" if text == GARBAGE else "environment"
    assert (ticket.area_code, ticket.department, ticket.status) == ("420199001001001", department, "dispatched")
    return number


async def assert_refused(client, capsys, number: str, action: str, login: str, reason: str,  # type: ignore[no-untyped-def]
                         actor: str | None = None) -> None:
    """`login` is refused `action` on ticket `number` with `reason`: nothing changes, and the
    refusal is in the audit trail."""
    before = await ticket_by_number(client, number)
    code, _, err = await minyi(capsys, "ticket", "act", number, action, "--by", login)
    assert code == 1 and reason in err, (login, action, err)
    after = await ticket_by_number(client, number)
    assert (after.status, after.handler_id, after.area_code) == (before.status, before.handler_id, before.area_code)
    last = (await audit_entries(client, number))[-1]
    expected_actor = actor or await actor_code(client, login)
    assert (last.actor, last.action, last.target, last.outcome) == (expected_actor, action, number, "refused")
    assert last.reason is not None and reason in last.reason and last.reason in err


# ------------------------------------------------------------ allowed

# action → who takes it, and the steps (action, who) that bring a fresh ticket (已派单) to it.
ALLOWED = [
    ("dispatch", "D01", []),
    ("accept", "G01", []),
    ("accept", "L03", []),  # the department's liaison
    ("send_back", "G01", []),
    ("send_back", "D01", []),
    ("start", "G01", [("accept", "G01")]),
    ("ask_resident", "L03", [("accept", "L03"), ("start", "L03")]),
    ("resume", "G01", [("accept", "G01"), ("ask_resident", "G01")]),
    ("resolve", "G01", [("accept", "G01")]),
    ("reopen", "S01", [("accept", "G01"), ("resolve", "G01")]),
    ("reopen", "D01", [("accept", "G01"), ("resolve", "G01")]),
    ("archive", "D01", [("accept", "G01"), ("resolve", "G01")]),
    ("reject", "D01", [("send_back", "G01")]),
    ("merge", "D01", []),  # the console links it to the other ticket (bot/casework/merge.py)
    ("dispatch", "A01", []),  # the admin may do anything
    ("resolve", "A01", [("accept", "G01")]),
]
# Taken by the resident or by minyi itself, not through `minyi ticket act` (checked below).
NOT_BY_STAFF = {"rate", "route", "to_triage"}


def test_every_workflow_action_is_allowed_to_someone_here():
    workflow = Workflow.load(CONFIG_DIR / "workflow.toml")
    assert {action for action, _, _ in ALLOWED} | NOT_BY_STAFF == set(workflow.transitions)


@pytest.mark.parametrize("action, login, steps", ALLOWED, ids=[f"{a}-by-{w}" for a, w, _ in ALLOWED])
async def test_the_right_role_may_take_the_action(client, sender, new_openid, cli_env, capsys, action, login,
                                                  steps):
    if login == "A01":
        await run(capsys, *ADMIN)
    number = await new_ticket(client, sender, new_openid())
    for step, by in steps:
        await act(capsys, number, step, by)
    if action == "merge":  # the other ticket it is merged into (bot/casework/merge.py links them)
        other = await new_ticket(client, sender, new_openid(), FUMES)
        await run(capsys, "ticket", "act", number, action, "--by", login, "--into", other)
        assert (await ticket_by_number(client, number)).duplicate_of_id == (await ticket_by_number(client, other)).id
    else:
        await act(capsys, number, action, login)
    assert [e for e in await audit_entries(client, number) if e.outcome == "refused"] == []
    # The move happened, by that staff member: the state the transition leads to, and its event.
    workflow = services_of(client).workflow
    ticket = await ticket_by_number(client, number)
    assert ticket.status == workflow.transitions[action].target
    async with services_of(client).db.session() as s:
        me = (await s.exec(select(Staff).where(Staff.login == login))).one()  # A01 was added by the CLI
        last = (await s.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id, TicketEvent.action == action)
                             .order_by(col(TicketEvent.id).desc()))).first()
    assert last is not None and last.actor == f"staff:{me.id}"


async def test_the_resident_and_the_system_take_their_own_actions(client, sender, new_openid):
    case = services_of(client).case
    openid = new_openid()
    ticket = await ticket_by_number(client, await new_ticket(client, sender, openid))
    assert rights.refusal(case, Actor.resident(openid), ticket, "rate") is None
    assert rights.refusal(case, Actor.resident(openid), ticket, case.workflow.resident_reply_action) is None
    assert rights.refusal(case, Actor.resident(new_openid()), ticket, "rate") == f"工单 {ticket.number} 不是您反映的"
    assert rights.refusal(case, Actor.resident(openid), ticket, "accept") == "群众不能执行「接单」"
    for action in ("route", "to_triage", "reopen"):
        assert rights.refusal(case, SYSTEM, ticket, action) is None
    assert rights.refusal(case, SYSTEM, ticket, "resolve") == "系统不能执行「办结」"
    assert rights.refusal(case, Actor("unknown:x"), ticket, "view") == "不认识的操作人 unknown:x"


# ------------------------------------------------------------ refused

# (who, action, steps first, commands first, the reason — {n} is the ticket number)
REFUSED = [
    ("G02", "accept", [], [], "工单 {n} 不在您负责的网格（枫林第二网格）"),
    ("L01", "accept", [], [], "工单 {n} 不属于您的部门（公安）"),
    ("L03", "accept", [], [], "工单 {n} 不属于您的部门（城管）；您对此工单只能：内部备注、查看"),  # a co-department (FUMES)
    ("S01", "accept", [], [], "您的角色（督办）不能执行「接单」"),
    ("G01", "dispatch", [], [], "您的角色（网格员）不能执行「分拨/改派」"),
    ("D02", "dispatch", [], [EAST_DISPATCHER], "工单 {n} 不在您管辖的区域（东湖街道）"),
    ("G01", "rate", [("accept", "G01"), ("resolve", "G01")], [], "您的角色（网格员）不能执行「回访评价」"),
    ("G01", "accept", [], [("staff", "disable", "G01")], "您的账号（G01）已停用，不能办理工单"),
]


@pytest.mark.parametrize("login, action, steps, commands, reason", REFUSED,
                         ids=["other-grid", "other-department", "co-department", "supervisor-accepts",
                              "grid-worker-dispatches", "other-street", "staff-rates", "disabled"])
async def test_a_forbidden_action_is_refused_and_audited(client, sender, new_openid, cli_env, capsys, login, action,
                                                         steps, commands, reason):
    co_department = login == "L03"
    number = await new_ticket(client, sender, new_openid(), FUMES if co_department else GARBAGE)
    for step, by in steps:
        await act(capsys, number, step, by)
    for command in commands:
        await run(capsys, *command)
    await assert_refused(client, capsys, number, action, login, reason.format(n=number))


async def test_a_street_dispatcher_routes_only_within_the_street(client, sender, new_openid, cli_env, capsys):
    """D02 (东湖街道) may move a 东湖 ticket to another 东湖 grid, not into 西山街道's queue."""
    await run(capsys, *EAST_DISPATCHER)
    number = await report(sender, await follow(sender, new_openid()), ELEVATOR)
    before = await ticket_by_number(client, number)
    assert (before.area_code, before.status) == ("420199002001001", "dispatched")

    code, _, err = await minyi(capsys, "ticket", "act", number, "dispatch", "--grid", "420199001001001", "--by", "D02")
    reason = "西山街道 枫林社区 枫林第一网格不在您的管辖范围（东湖街道）内：请退回上级重新派单"
    assert code == 1 and reason in err, err
    after = await ticket_by_number(client, number)
    assert (after.area_code, after.status, after.updated_at) == (before.area_code, before.status, before.updated_at)
    last = (await audit_entries(client, number))[-1]
    assert (last.actor, last.action, last.outcome, last.reason) == (
        await actor_code(client, "D02"), "dispatch", "refused", reason)

    await run(capsys, "ticket", "act", number, "dispatch", "--grid", "420199002001002", "--by", "D02")
    assert (await ticket_by_number(client, number)).area_code == "420199002001002"
    # The district dispatcher sends tickets anywhere in the district.
    await run(capsys, "ticket", "act", number, "dispatch", "--grid", "420199001001001", "--by", "D01")
    assert (await ticket_by_number(client, number)).area_code == "420199001001001"


async def test_an_unknown_actor_is_refused_and_audited(client, sender, new_openid, cli_env, capsys):
    number = await new_ticket(client, sender, new_openid())
    await assert_refused(client, capsys, number, "accept", "nobody", "没有在职的工作人员 nobody",
                         actor="unknown:nobody")


async def test_whoever_reported_a_ticket_never_handles_it(client, sender, new_openid, cli_env, capsys):
    """采办分离: the grid worker's (and even an admin's) own report is handled by someone else;
    routing it on is not handling it."""
    openid = new_openid()
    number = await new_ticket(client, sender, openid)
    async with services_of(client).db.transaction() as s:  # G01's WeChat is the reporter's
        await s.exec(update(Staff).where(Staff.login == "G01").values(openid=openid))  # type: ignore[call-overload]
    await assert_refused(client, capsys, number, "accept", "G01", "采办分离：您是此工单的反映人，不能办理")
    async with services_of(client).db.transaction() as s:
        await s.exec(update(Staff).where(Staff.login == "G01").values(openid=None))  # type: ignore[call-overload]
    await run(capsys, "staff", "add", "--login", "A02", "--name", "管理员乙", "--role", "admin", "--openid", openid)
    await assert_refused(client, capsys, number, "accept", "A02", "采办分离：您是此工单的反映人，不能办理")
    await act(capsys, number, "dispatch", "A02")  # not a handling action
    await act(capsys, number, "accept", "G01")  # someone else handles it


async def test_co_department_liaisons_act_on_their_own_part_only(client, sender, new_openid):
    """A co-department may view the ticket and work its own part (rights.refusal with part=)."""
    case = services_of(client).case
    openid = new_openid()
    ticket = await ticket_by_number(client, await new_ticket(client, sender, openid, FUMES))
    urban, housing, grid = (Actor.of_staff(case.org.find(login)) for login in ("L03", "L02", "G01"))  # type: ignore[arg-type]
    assert rights.may(case, urban, ticket, "view")
    assert rights.refusal(case, urban, ticket, "part_accept", part="urban_mgmt") is None
    assert rights.refusal(case, housing, ticket, "part_accept", part="urban_mgmt") == (
        f"这不是您部门（住建）在工单 {ticket.number} 中的协办任务")  # whether a part exists is bot.casework.parts'
    assert rights.refusal(case, urban, ticket, "part_accept", part="housing") == (
        f"这不是您部门（城管）在工单 {ticket.number} 中的协办任务；您对此工单只能：内部备注、查看")
    assert rights.refusal(case, grid, ticket, "part_accept", part="urban_mgmt") == "您的角色（网格员）不能执行「协办接单」"
    assert rights.refusal(case, urban, ticket, "part_accept") == "您的角色（部门联络员）不能执行「协办接单」"  # not on the ticket itself
    reporter = Staff(id=10_000, login="L99", name="协办人", role="liaison", department="urban_mgmt", openid=openid)
    assert rights.refusal(case, Actor.of_staff(reporter), ticket, "part_accept", part="urban_mgmt") == (
        "采办分离：您是此工单的反映人，不能办理")
    assert rights.may(case, Actor.of_staff(reporter), ticket, "view", part="urban_mgmt")


# ------------------------------------------------------------ lists

async def listed(capsys, login: str) -> str:  # type: ignore[no-untyped-def]
    code, out, err = await minyi(capsys, "ticket", "list", "--as", login)
    assert code == 0, err
    return out


async def test_staff_list_only_the_tickets_they_may_see(client, sender, new_openid, cli_env, capsys):
    fumes = await new_ticket(client, sender, new_openid(), FUMES)
    elevator = await report(sender, await follow(sender, new_openid()), ELEVATOR)
    lift = await ticket_by_number(client, elevator)
    assert (lift.area_code, lift.department) == ("420199002001001", "market") and "housing" in lift.co_departments
    await run(capsys, *EAST_DISPATCHER)
    seen = {login: await listed(capsys, login) for login in ("G01", "G05", "L02", "L05", "L01", "D01", "D02", "S01")}
    expected = {"G01": {fumes}, "G05": {elevator}, "L02": {elevator}, "L05": {fumes}, "L01": set(),
                "D01": {fumes, elevator}, "D02": {elevator}, "S01": {fumes, elevator}}
    for login, numbers in expected.items():
        assert {n for n in (fumes, elevator) if n in seen[login]} == numbers, login
    assert "没有符合条件的工单" in seen["L01"]

    code, _, err = await minyi(capsys, "ticket", "list", "--as", "nobody")
    assert code == 1 and "没有在职的工作人员 nobody" in err
    last = (await audit_entries(client))[-1]
    assert (last.actor, last.action, last.outcome) == ("unknown:nobody", "view", "refused")
    await run(capsys, "staff", "disable", "G01")
    code, _, err = await minyi(capsys, "ticket", "list", "--as", "G01")
    assert code == 1 and "没有在职的工作人员 G01" in err
    last = (await audit_entries(client))[-1]
    assert (last.actor, last.action, last.outcome) == (await actor_code(client, "G01"), "view", "refused")


# ------------------------------------------------------------ the table

def test_the_rights_table_matches_the_workflow_and_the_demo_staff():
    table = RightsTable.load(CONFIG_DIR / "rights.toml")
    table.check(Workflow.load(CONFIG_DIR / "workflow.toml"), PART_ACTIONS)
    assert table.role_label("grid_worker") == "网格员" and table.role_named("部门联络员").code == "liaison"  # type: ignore[union-attr]
    assert table.level_named("街道") == "street" and table.level_rank("street") < table.level_rank("grid")


def test_a_rights_table_naming_an_unknown_action_is_refused_at_start(tmp_path: Path):
    text = (CONFIG_DIR / "rights.toml").read_text(encoding="utf-8").replace('"supervise", "reopen", "comment"]',
                                                                              '"supervise", "fly", "comment"]')
    (tmp_path / "rights.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="fly"):
        RightsTable.load(tmp_path / "rights.toml").check(Workflow.load(CONFIG_DIR / "workflow.toml"), PART_ACTIONS)
