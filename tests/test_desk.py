"""Staff work a ticket with `minyi ticket act` (bot.casework.desk): workflow transitions, re-routes
that the router learns from, and the notices to staff and residents.

Reports come in through /wechat; staff act through the CLI (run in a thread while the
app serves); learning goes through `minyi router retrain` and the app's model-watch job.
"""

from __future__ import annotations

import re

from sqlmodel import col, select

from bot.routes import INBOX
from bot.scheduler import MODEL_WATCH_JOB, start_scheduler
from storage.models import TicketEvent
from tests.steps import actor_code, minyi, follow as resident, messages_to, report, ticket_by_number
from tests.conftest import services_of

NUMBER = re.compile(r"\d{8}-\d{4}")
ELEVATOR = "幸福里小区3号楼电梯坏了，老人下不了楼"
ELEVATOR_AGAIN = "幸福里小区3号楼的电梯又坏了，老人上下楼很困难，请尽快派人修"














async def test_a_reroute_moves_the_ticket_and_tells_everyone(client, sender, new_openid, cli_env, capsys):
    first = await resident(sender, new_openid())
    second = await resident(sender, new_openid())
    number = await report(sender, first, ELEVATOR)
    duplicate = await report(sender, second, ELEVATOR_AGAIN)
    assert (await ticket_by_number(client, duplicate)).duplicate_of_id == (await ticket_by_number(client, number)).id
    before = await ticket_by_number(client, number)
    assert before.category == "elevator" and before.status == "dispatched"

    code, out, err = await minyi(capsys, "ticket", "act", number, "dispatch", "--category", "property_service",
                                 "--grid", "420199002001002", "--by", "D01", "--note", "电梯由物业维保")
    assert code == 0, err
    assert "已派单 → 已派单" in out and "分类改为 城乡建设›物业服务纠纷" in out

    after = await ticket_by_number(client, number)
    assert (after.category, after.department, after.area_code) == ("property_service", "housing", "420199002001002")
    async with services_of(client).db.session() as s:
        events = (await s.exec(select(TicketEvent).where(TicketEvent.ticket_id == after.id)
                               .order_by(col(TicketEvent.id)))).all()
    recategorize = [e for e in events if e.action == "recategorize"]
    assert len(recategorize) == 1 and recategorize[0].note == "elevator → property_service"
    assert recategorize[0].actor == await actor_code(client, "D01")
    assert [e.note for e in events if e.action == "relocate"] == ["420199002001001 → 420199002001002"]

    # The resident and the resident whose duplicate report was linked both hear of it.
    assert any("状态更新：已派单" in m and "电梯由物业维保" in m for m in await messages_to(client, first))
    told_second = [m for m in await messages_to(client, second) if "一并办理" in m]
    assert len(told_second) == 1 and duplicate in told_second[0] and "电梯由物业维保" in told_second[0]
    assert all(number not in m for m in await messages_to(client, second))  # never the other's number
    # The new grid's worker is notified of the ticket.
    assert any(number in m and "新工单" in m for m in await messages_to(client, "o-demo-grid-06"))

    code, out, err = await minyi(capsys, "ticket", "show", number)
    assert code == 0 and "改分类" in out and "物业服务纠纷" in out and "幸福里第二网格" in out
    # Who acted, by name and 工号, not by an internal code.
    [dispatch] = [line for line in out.splitlines() if "分拨/改派" in line]
    assert dispatch.endswith("  周建国（D01）  电梯由物业维保") and "staff:" not in out
    assert "  系统  分类：" in out and "  群众  群众通过公众号反映" in out
    # The deadlines, how they stand and who handles it.
    [deadlines] = [line for line in out.splitlines() if line.startswith("  时限：")]
    assert deadlines.endswith("）；处理人：未接单") and "接单剩余" in deadlines


async def test_a_reroute_to_a_stricter_category_shortens_the_deadlines(client, sender, new_openid, cli_env,
                                                                        capsys):
    openid = await resident(sender, new_openid())
    number = await report(sender, openid, "枫林小区楼下烧烤摊油烟太大，窗户都不敢开")
    before = await ticket_by_number(client, number)
    assert before.urgency == "一般"
    code, _, err = await minyi(capsys, "ticket", "act", number, "dispatch", "--category", "gas_safety", "--by", "D01")
    assert code == 0, err
    after = await ticket_by_number(client, number)
    services = services_of(client)
    gas = services.router.taxonomy.categories["gas_safety"]
    assert after.urgency == gas.urgency == "紧急"  # the new category's default
    expected = services.sla.deadlines(before.created_at, "紧急", gas.sla_class)
    assert (after.response_due_at, after.closure_due_at) == expected
    assert after.response_due_at < before.response_due_at and after.closure_due_at < before.closure_due_at
    # Corrected back: the looser deadlines return (urgency is not stuck at the stricter level).
    code, _, err = await minyi(capsys, "ticket", "act", number, "dispatch", "--category", "cooking_fumes", "--by", "D01")
    assert code == 0, err
    back = await ticket_by_number(client, number)
    assert back.urgency == "一般"
    assert (back.response_due_at, back.closure_due_at) == (before.response_due_at, before.closure_due_at)


async def test_the_closed_loop_and_its_timestamps(client, sender, new_openid, cli_env, capsys):
    openid = await resident(sender, new_openid())
    # One department (a joint ticket waits for its co-departments' parts: tests/test_joint_dispatch.py).
    number = await report(sender, openid, "枫林小区垃圾桶满了好几天没人清运，臭气熏天")
    for action in ("accept", "start", "resolve"):
        code, out, err = await minyi(capsys, "ticket", "act", number, action, "--by", "G01",
                                     "--note", "已约谈店主加装净化器" if action == "resolve" else "")
        assert code == 0, err
    ticket = await ticket_by_number(client, number)
    assert ticket.status == "resolved"
    assert ticket.accepted_at is not None and ticket.resolved_at is not None and ticket.closed_at is not None
    assert ticket.accepted_at <= ticket.resolved_at
    told = await messages_to(client, openid)
    assert any("状态更新：已办结" in m and "已约谈店主加装净化器" in m for m in told)
    code, out, _ = await minyi(capsys, "ticket", "list", "--status", "resolved")
    assert code == 0 and number in out and "已办结" in out

    # Reopened: open again (no closing time), and the grid is told once more.
    notices = [m for m in await messages_to(client, "o-demo-grid-01") if number in m]
    code, _, err = await minyi(capsys, "ticket", "act", number, "reopen", "--by", "S01")
    assert code == 0, err
    reopened = await ticket_by_number(client, number)
    assert reopened.status == "dispatched" and reopened.closed_at is None
    assert len([m for m in await messages_to(client, "o-demo-grid-01") if number in m]) == len(notices) + 1
    # Sent back to triage: the dispatchers are told it waits for them.
    code, _, err = await minyi(capsys, "ticket", "act", number, "send_back", "--by", "G01")
    assert code == 0, err
    assert any(number in m and "待分拨" in m for m in await messages_to(client, "o-demo-dispatch-01"))
    code, out, _ = await minyi(capsys, "ticket", "show", number)
    assert "重新打开" in out and "已办结→已派单" in out  # staff read labels, not codes


async def test_refused_actions_change_nothing(client, sender, new_openid, cli_env, capsys):
    openid = await resident(sender, new_openid())
    number = await report(sender, openid, ELEVATOR)
    before = await ticket_by_number(client, number)
    async with services_of(client).db.session() as s:
        events_before = len((await s.exec(select(TicketEvent).where(TicketEvent.ticket_id == before.id))).all())
    sent_before = len(await messages_to(client, openid))

    cases = [
        (("resolve",), "不能「办结」"),                                  # dispatched → resolved is not a transition
        (("dispatch", "--category", "no_such"), "没有分类 no_such"),
        (("dispatch", "--grid", "999"), "没有网格 999"),
        (("accept", "--category", "noise"), "只有「分拨/改派」可以改分类或网格"),
        (("fly",), "没有动作 fly"),
    ]
    for extra, message in cases:
        code, _, err = await minyi(capsys, "ticket", "act", number, *extra[:1], "--by", "D01", *extra[1:])
        assert code == 1 and message in err, (extra, err)
    code, _, err = await minyi(capsys, "ticket", "act", "20000101-9999", "accept", "--by", "D01")
    assert code == 1 and "没有工单 20000101-9999" in err

    after = await ticket_by_number(client, number)
    assert (after.status, after.category, after.area_code) == (before.status, before.category, before.area_code)
    async with services_of(client).db.session() as s:
        assert len((await s.exec(select(TicketEvent).where(TicketEvent.ticket_id == before.id))).all()) == events_before
    assert len(await messages_to(client, openid)) == sent_before


# Parcel-locker fees: the keyword rules send these to 其他事项, 外卖快递骑手 or 诈骗.
LOCKER_REPORTS = [
    "小区门口的智能快递柜超时就收费，取个快递还要扫码付钱",
    "快递柜超过12小时收五毛保管费，这合理吗",
    "丰巢柜子存放超时收费，快递员也不打电话直接塞柜子",
    "快递员不送上门全放快递柜，超时了还要我付费",
    "驿站取件要收一块钱，快递费里不是包含派送了吗",
    "快递柜强制收费，没经过我同意就把件放进去",
]
LOCKER_NEW = "快递柜又要收超时费，我都没同意放柜子里"


async def test_staff_corrections_teach_the_router(client, sender, new_openid, cli_env, capsys):
    services = services_of(client)
    openid = await resident(sender, new_openid())
    assert services.router.route(LOCKER_NEW).category != "consumer_rights"
    for text in LOCKER_REPORTS:
        number = await report(sender, openid, text)
        ticket = await ticket_by_number(client, number)
        assert ticket.category != "consumer_rights"
        # Wrongly routed: the dispatcher re-routes it (from triage, or after a send-back).
        if ticket.status == "dispatched":
            code, _, err = await minyi(capsys, "ticket", "act", number, "send_back", "--by", "D01")
            assert code == 0, err
        code, _, err = await minyi(capsys, "ticket", "act", number, "dispatch", "--category", "consumer_rights",
                                   "--by", "D01")
        assert code == 0, err

    code, out, err = await minyi(capsys, "router", "retrain", "--min-examples", "5")
    assert code == 0, err
    assert "已训练新模型" in out and "6 条工单样本" in out

    # The app picks the new model up through its scheduled model-watch job.
    assert services.router.model is None
    scheduler = start_scheduler(services, client.server.app[INBOX])
    try:
        job = scheduler.get_job(MODEL_WATCH_JOB)
        assert job is not None
        await job.func(*job.args)
    finally:
        scheduler.shutdown(wait=False)
    assert services.router.model is not None

    number = await report(sender, openid, LOCKER_NEW)
    ticket = await ticket_by_number(client, number)
    assert ticket.category == "consumer_rights" and ticket.department == "market"
    # It did not forget the rest: a plain elevator report still goes to elevators.
    assert (await ticket_by_number(client, await report(sender, openid, ELEVATOR))).category == "elevator"

    code, out, _ = await minyi(capsys, "router", "retrain", "--min-examples", "5")
    assert code == 0 and "样本未变化" in out
