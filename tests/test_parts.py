"""Joint dispatch (联合派单): a ticket whose category has co-departments gets a part per
co-department when it reaches the handlers' queue; their liaisons are told; only a
liaison of the part's department works it (`minyi ticket part`); the lead cannot close
the ticket until every part is done, and hears when they are."""

from __future__ import annotations

from tests.conftest import services_of
from tests.steps import (actor_code, audit_entries, events_of, follow, messages_to, minyi, parts_of, report,
                         staff_act, staff_member, ticket_by_number)

FUMES = "枫林小区楼下烧烤摊油烟太大，窗户都不敢开"  # 生态环境 leads, 城管 co-department; grid of G01
GARBAGE = "枫林小区垃圾桶满了三天了没人收，臭气熏天招苍蝇"  # 城管 alone
URBAN = "o-demo-liaison-urban"  # L03, 城管
ENVIRONMENT = "o-demo-liaison-environment"  # L05, 生态环境 (the lead)
GRID_WORKER = "o-demo-grid-01"


async def part_assigned(client, number: str) -> str:
    """The notice a 城管 liaison gets for the 城管 part of ticket `number` (config/notices.toml part_assigned)."""
    services = services_of(client)
    ticket = await ticket_by_number(client, number)
    return (f"【协办·城管】{number}\n牵头部门：生态环境\n类别：{services.router.taxonomy.label(ticket.category)}\n"
            f"位置：{services.areas.full_name(ticket.area_code)}\n内容：{ticket.description}\n请接单并完成本部门部分。")


async def part(capsys, number: str, department: str, word: str, login: str, *extra: str) -> tuple[int, str, str]:
    return await minyi(capsys, "ticket", "part", number, department, word, "--by", login, *extra)


async def test_a_joint_ticket_gets_parts_and_the_lead_waits_for_them(client, sender, new_openid, cli_env, capsys):
    openid = await follow(sender, new_openid())
    urban_before = len(await messages_to(client, URBAN))
    number = await report(sender, openid, FUMES)
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.department, ticket.co_departments) == ("dispatched", "environment", ["urban_mgmt"])
    [urban] = await parts_of(client, number)
    assert (urban.department, urban.status, urban.handler_id, urban.done_at) == ("urban_mgmt", "assigned", None, None)
    assert (await messages_to(client, URBAN))[urban_before:] == [await part_assigned(client, number)]
    assert not [m for m in await messages_to(client, ENVIRONMENT) if m.startswith("【协办")]

    # The grid worker handles it, but cannot close it while 城管's part is open (refused, audited).
    await staff_act(capsys, number, "G01", "accept", "start")
    code, _, err = await minyi(capsys, "ticket", "act", number, "resolve", "--by", "G01", "--note", "已处理")
    assert code == 1 and "协办部门 城管 尚未办结，暂不能办结" in err
    assert (await ticket_by_number(client, number)).status == "handling"
    refused = [a for a in await audit_entries(client, number) if a.outcome == "refused"]
    assert [(a.actor, a.action, a.reason) for a in refused] == [
        (await actor_code(client, "G01"), "resolve", "协办部门 城管 尚未办结，暂不能办结")]

    # Only a 城管 liaison may work the 城管 part: not 公安's, not the lead's.
    for login in ("L01", "L05"):
        code, _, err = await part(capsys, number, "urban_mgmt", "done", login)
        assert code == 1 and "协办任务" in err, (login, err)
    wrong = [a for a in await audit_entries(client, number) if a.action == "part_done"]
    assert [a.actor for a in wrong] == [await actor_code(client, "L01"), await actor_code(client, "L05")]
    assert all(a.outcome == "refused" for a in wrong)
    code, _, err = await part(capsys, number, "police", "accept", "L01")
    assert code == 1 and "没有公安的协办任务" in err
    assert (await parts_of(client, number))[0].status == "assigned"

    # 城管 accepts (by its Chinese name) and finishes; the lead's handler hears all parts are done.
    code, out, err = await part(capsys, number, "城管", "accept", "L03")
    assert code == 0 and "城管协办：待协办 → 协办中" in out, err
    code, _, err = await part(capsys, number, "urban_mgmt", "accept", "L03")
    assert code == 1 and "不能「协办接单」" in err
    before = len(await messages_to(client, GRID_WORKER))
    code, out, err = await part(capsys, number, "urban_mgmt", "done", "L03", "--note", "已取缔露天烧烤")
    assert code == 0 and "协办部门均已办结，已通知牵头部门" in out, err
    [urban] = await parts_of(client, number)
    l03 = await actor_code(client, "L03")
    assert (urban.status, f"staff:{urban.handler_id}", urban.note) == ("done", l03, "已取缔露天烧烤")
    assert urban.accepted_at is not None and urban.done_at is not None
    assert (await messages_to(client, GRID_WORKER))[before:] == [
        f"【联合派单·协办完成】{number}\n协办部门（城管）均已办结，牵头部门可以办结。"]
    part_events = [(e.action, e.actor, e.note) for e in await events_of(client, number) if e.action.startswith("part_")]
    assert part_events == [("part_accept", l03, "城管：协办接单"), ("part_done", l03, "城管：协办办结，已取缔露天烧烤")]

    await staff_act(capsys, number, "G01", "resolve", note="店主已加装油烟净化器")
    assert (await ticket_by_number(client, number)).status == "resolved"


async def test_parts_open_on_dispatch_once_and_again_on_a_reopen(client, sender, new_openid, cli_env, capsys):
    openid = await follow(sender, new_openid())
    number = await report(sender, openid, GARBAGE)
    assert await parts_of(client, number) == []  # 城管 alone: no parts
    # Re-routed to a joint category: the co-department's part opens with the dispatch.
    urban_before = len(await messages_to(client, URBAN))
    code, _, err = await minyi(capsys, "ticket", "act", number, "dispatch", "--category", "cooking_fumes",
                               "--by", "D01")
    assert code == 0, err
    assert [(p.department, p.status) for p in await parts_of(client, number)] == [("urban_mgmt", "assigned")]
    assert len(await messages_to(client, URBAN)) == urban_before + 1
    # Sent back and dispatched again: still one part, no second notice.
    await staff_act(capsys, number, "L05", "send_back")
    await staff_act(capsys, number, "D01", "dispatch")
    assert len(await parts_of(client, number)) == 1
    assert len(await messages_to(client, URBAN)) == urban_before + 1

    code, _, err = await minyi(capsys, "ticket", "part", number, "urban_mgmt", "done", "--by", "L03")
    assert code == 0, err
    await staff_act(capsys, number, "L05", "accept", "resolve", note="已处理")
    # Reopened (by the supervisor): the finished part opens again and 城管 is told again.
    await staff_act(capsys, number, "S01", "reopen")
    assert [(p.status, p.done_at) for p in await parts_of(client, number)] == [("assigned", None)]
    assert len(await messages_to(client, URBAN)) == urban_before + 2
    assert (await ticket_by_number(client, number)).reopen_count == 1


async def test_disabling_a_liaison_counts_the_parts_they_still_hold(client, sender, new_openid, cli_env, capsys):
    number = await report(sender, await follow(sender, new_openid()), FUMES)
    code, _, err = await part(capsys, number, "urban_mgmt", "accept", "L03")
    assert code == 0, err
    liaison = await staff_member(client, "L03")
    code, out, err = await minyi(capsys, "staff", "disable", "L03")
    assert (code, out) == (0, f"已停用：L03 {liaison.name}。此人仍经办 1 项未完成的协办任务：同网格或同部门的人员可继续办理；"
                              "尚未开始处置的工单，调度员也可退回重新派单\n"), err
