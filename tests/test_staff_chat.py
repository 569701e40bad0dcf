"""Staff in the chat, through /wechat: a one-time code binds a staff member's WeChat
(「绑定 CODE」), then they work tickets by chat (「接单 N」「办结 N 说明」「退回 N 原因」
「我的工单」), refused and audited outside their rights; nothing they send is a report."""

from __future__ import annotations

import re

import pytest
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import col, select

from bot.casework.invites import code_hash
from bot.clock import utcnow
from bot.dialogs import texts
from storage.models import StaffInvite, Ticket, TicketEvent
from tests import wechat
from tests.conftest import services_of
from tests.fake_wechat import settle
from tests.steps import (audit_entries, bind_staff, follow, invite, messages_to, minyi, report, staff_member,
                         ticket_by_number, tickets_of)

ELEVATOR = "幸福里小区3号楼电梯坏了，老人下不了楼"  # 幸福里第一网格 (G05 陈静)
GARBAGE = "幸福里小区门口垃圾堆了好几天没人清理，臭得很"  # the same grid
FUMES = "枫林小区楼下烧烤摊油烟太大，窗户都不敢开"  # 枫林第一网格 (G01 王芳)
G05, G01 = "G05", "G01"


async def bound_grid_worker(client, sender, new_openid, login: str = G05) -> str:  # type: ignore[no-untyped-def]
    openid = new_openid()
    await bind_staff(client, sender, login, openid)
    return openid


async def events_of(client, number: str) -> list[TicketEvent]:  # type: ignore[no-untyped-def]
    ticket = await ticket_by_number(client, number)
    async with services_of(client).db.session() as s:
        return list((await s.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                                  .order_by(col(TicketEvent.id)))).all())


# ---------------------------------------------------------------- binding

async def test_a_code_binds_the_staff_members_wechat_once(client, sender, new_openid):
    openid, stranger = new_openid(), new_openid()
    code = await invite(client, G05)
    reply = await sender.reply(wechat.text(openid, f"绑定 {code}"))
    assert reply.startswith("绑定成功：您好，陈静（网格员）")
    assert "接单 N、办结 N 说明、退回 N 原因、我的工单" in reply
    assert (await staff_member(client, G05)).openid == openid
    async with services_of(client).db.session() as s:
        used = (await s.exec(select(StaffInvite).where(StaffInvite.code_hash == code_hash(code)))).one()
    assert used.used_at is not None and used.used_by == openid
    bound = [e for e in await audit_entries(client, openid) if e.outcome == "bound"]
    assert [(e.actor, e.action) for e in bound] == [(f"staff:{used.staff_id}", "bind")]

    again = await sender.reply(wechat.text(stranger, f"绑定 {code}"))
    assert "已经使用过" in again
    wrong = await sender.reply(wechat.text(stranger, "绑定 ABCD2345"))
    assert "绑定码不正确" in wrong
    assert (await staff_member(client, G05)).openid == openid  # unchanged
    assert await tickets_of(client, stranger) == []  # neither attempt is a report


async def test_the_code_minyi_staff_invite_prints_binds(client, sender, new_openid, cli_env, capsys):
    code, out, err = await minyi(capsys, "staff", "invite", G01)
    assert code == 0, err
    [printed] = re.findall(r"请在公众号发送：(绑定 \S+?)（", out)
    openid = new_openid()
    assert "绑定成功：您好，王芳（网格员）" in await sender.reply(wechat.text(openid, printed))
    assert (await staff_member(client, G01)).openid == openid


async def test_a_code_is_read_in_any_case_spacing_and_width(client, sender, new_openid):
    openid = new_openid()
    code = await invite(client, G01)
    typed = code.lower()[:4] + " " + code.lower()[4:]
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in typed.replace(" ", "")) + "。"
    reply = await sender.reply(wechat.text(openid, f"绑定\u3000{full_width}"))
    assert "绑定成功" in reply and "王芳（网格员）" in reply
    assert (await staff_member(client, G01)).openid == openid


async def test_an_expired_code_is_refused(client, sender, new_openid):
    openid = new_openid()
    code = await invite(client, G05)
    async with services_of(client).db.transaction() as s:
        await s.exec(update(StaffInvite).where(col(StaffInvite.code_hash) == code_hash(code))  # type: ignore[call-overload]
                     .values(expires_at=utcnow() - timedelta(minutes=1)))
    assert "已过期" in await sender.reply(wechat.text(openid, f"绑定 {code}"))
    assert (await staff_member(client, G05)).openid != openid


async def test_five_wrong_codes_lock_binding_for_the_hour(client, sender, new_openid):
    openid = new_openid()
    for attempt in range(5):
        assert "绑定码不正确" in await sender.reply(wechat.text(openid, f"绑定 WRONG{attempt:03d}"))
    code = await invite(client, G05)
    assert "错误次数过多" in await sender.reply(wechat.text(openid, f"绑定 {code}"))
    assert (await staff_member(client, G05)).openid != openid
    assert "绑定成功" in await sender.reply(wechat.text(new_openid(), f"绑定 {code}"))  # another account may


async def test_a_wechat_bound_to_one_staff_member_cannot_bind_another(client, sender, new_openid):
    openid = await bound_grid_worker(client, sender, new_openid, G05)
    before = (await staff_member(client, G01)).openid
    reply = await sender.reply(wechat.text(openid, f"绑定 {await invite(client, G01)}"))
    assert "已绑定工作人员陈静" in reply
    assert (await staff_member(client, G01)).openid == before


# ---------------------------------------------------------------- working tickets

async def test_accept_and_resolve_by_chat(client, sender, new_openid):
    resident = await follow(sender, new_openid())
    number = await report(sender, resident, GARBAGE)
    assert not (await ticket_by_number(client, number)).co_departments  # no joint parts to wait for
    worker = await bound_grid_worker(client, sender, new_openid)
    me = await staff_member(client, G05)

    accepted = await sender.reply(wechat.text(worker, f"接单 {number}"))
    assert accepted == f"工单 {number}：已派单 → 已接单。"
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.handler_id) == ("accepted", me.id)
    assert [e.actor for e in await events_of(client, number) if e.action == "accept"] == [f"staff:{me.id}"]

    assert "请写明办理结果" in await sender.reply(wechat.text(worker, f"办结 {number}"))
    done = await sender.reply(wechat.text(worker, f"办结 {number} 已联系环卫清运，门口已清理干净"))
    assert done == f"工单 {number}：已接单 → 已办结。"
    assert (await ticket_by_number(client, number)).status == "resolved"
    told = [m for m in await messages_to(client, resident) if "状态更新：已办结" in m]
    assert len(told) == 1 and "处理说明：已联系环卫清运，门口已清理干净" in told[0]


async def test_send_back_needs_a_reason_and_returns_the_ticket_to_triage(client, sender, new_openid):
    resident = await follow(sender, new_openid())
    number = await report(sender, resident, ELEVATOR)
    worker = await bound_grid_worker(client, sender, new_openid)
    assert "请写明退回原因" in await sender.reply(wechat.text(worker, f"退回 {number}"))
    assert (await ticket_by_number(client, number)).status == "dispatched"
    reply = await sender.reply(wechat.text(worker, f"退回 {number}：不属于本网格"))
    assert reply == f"工单 {number}：已派单 → 待分拨。"
    assert (await ticket_by_number(client, number)).status == "triage"
    [event] = [e for e in await events_of(client, number) if e.action == "send_back"]
    assert event.note == "不属于本网格"
    assert any(number in m and "待分拨" in m for m in await messages_to(client, "o-demo-dispatch-01"))


async def test_my_work_lists_exactly_their_tickets_and_numbers_them(client, sender, new_openid):
    resident = await follow(sender, new_openid())
    elevator = await report(sender, resident, ELEVATOR)
    fumes = await report(sender, resident, FUMES)  # another grid
    garbage = await report(sender, resident, GARBAGE)
    worker = await bound_grid_worker(client, sender, new_openid)

    listing = await sender.reply(wechat.text(worker, "我的工单"))
    lines = listing.splitlines()
    assert lines[0] == "您的工单（最新在前）："
    assert lines[1].startswith(f"1. {garbage}｜") and lines[2].startswith(f"2. {elevator}｜")
    assert "｜已派单｜时限 " in lines[1] and "电梯" in lines[2]
    assert fumes not in listing and len([line for line in lines if line[:1].isdigit()]) == 2

    assert await sender.reply(wechat.text(worker, "接单 ２")) == f"工单 {elevator}：已派单 → 已接单。"
    assert "没有第 3 项" in await sender.reply(wechat.text(worker, "接单 3"))
    again = await sender.reply(wechat.text(worker, "我的工单"))
    assert f"{elevator}｜电梯" in again and "已接单" in again  # theirs now, by handler


async def test_wrong_state_and_unknown_ticket_are_told_plainly(client, sender, new_openid):
    resident = await follow(sender, new_openid())
    number = await report(sender, resident, ELEVATOR)
    worker = await bound_grid_worker(client, sender, new_openid)
    assert await sender.reply(wechat.text(worker, f"办结 {number} 修好了")) == \
        f"工单 {number} 当前为「已派单」，不能「办结」"
    assert await sender.reply(wechat.text(worker, "接单 20200101-0001")) == "没有工单 20200101-0001"
    assert "请写明工单编号" in await sender.reply(wechat.text(worker, "接单"))


async def test_staff_of_another_grid_are_refused_and_the_refusal_audited(client, sender, new_openid):
    resident = await follow(sender, new_openid())
    number = await report(sender, resident, ELEVATOR)  # 幸福里第一网格
    other = await bound_grid_worker(client, sender, new_openid, G01)  # 枫林第一网格
    reply = await sender.reply(wechat.text(other, f"接单 {number}"))
    assert reply == f"不能办理：工单 {number} 不在您负责的网格（枫林第一网格）"
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.handler_id) == ("dispatched", None)
    await settle(services_of(client))
    refused = [e for e in await audit_entries(client, number) if e.outcome == "refused"]
    assert [(e.actor, e.action) for e in refused] == [(f"staff:{(await staff_member(client, G01)).id}", "accept")]
    assert "不在您负责的网格" in (refused[0].reason or "")


async def test_what_staff_send_is_never_a_residents_report(client, sender, new_openid):
    worker = await bound_grid_worker(client, sender, new_openid)
    reply = await sender.reply(wechat.text(worker, "小区垃圾没人清理"))
    assert "不是工作指令" in reply and "个人微信号" in reply and "接单 N" in reply
    await sender.reply(wechat.image(worker))
    await sender.reply(wechat.location(worker, 30.59, 114.31))
    await sender.reply(wechat.text(worker, "1"))
    assert await tickets_of(client, worker) == []
    async with services_of(client).db.session() as s:
        assert (await s.exec(select(Ticket).where(Ticket.openid == worker))).all() == []
    assert "可用指令" in await sender.reply(wechat.text(worker, "帮助"))


async def test_a_joint_ticket_is_worked_by_chat_lead_and_co_department(client, sender, new_openid):
    """油烟扰民: the grid worker leads, 城管 assists. The lead cannot close while 城管's part
    is open; the 城管 liaison does their part by chat (「协办接单」「协办办结」), then it closes."""
    resident = await follow(sender, new_openid())
    number = await report(sender, resident, FUMES)
    assert (await ticket_by_number(client, number)).co_departments == ["urban_mgmt"]
    worker, liaison = new_openid(), new_openid()
    await bind_staff(client, sender, G01, worker)
    await bind_staff(client, sender, "L03", liaison)  # 马骏, 城管 (urban_mgmt)
    assert await sender.reply(wechat.text(worker, f"接单 {number}")) == f"工单 {number}：已派单 → 已接单。"
    assert await sender.reply(wechat.text(worker, f"办结 {number} 已整改")) == \
        "不能办理：协办部门 城管 尚未办结，暂不能办结"
    # Only a department's liaison has a part; the grid worker has none of their own.
    assert await sender.reply(wechat.text(worker, f"协办接单 {number}")) == texts.STAFF_NO_DEPARTMENT
    listing = await sender.reply(wechat.text(liaison, "我的工单"))  # their part is their work
    assert listing.splitlines()[1].startswith(f"1. {number}｜油烟扰民｜已接单")
    assert await sender.reply(wechat.text(liaison, "协办接单 1")) == f"工单 {number} 本部门协办任务：待协办 → 协办中。"
    assert "请写明本部门的办理结果" in await sender.reply(wechat.text(liaison, f"协办办结 {number}"))
    assert await sender.reply(wechat.text(liaison, f"协办办结 {number} 已取缔占道烧烤摊")) == \
        f"工单 {number} 本部门协办任务：协办中 → 协办已办结。"
    assert await sender.reply(wechat.text(worker, f"办结 {number} 已整改")) == f"工单 {number}：已接单 → 已办结。"
    notes = [e.note for e in await events_of(client, number) if e.action == "part_done"]
    assert notes == ["城管：协办办结，已取缔占道烧烤摊"]
    assert await tickets_of(client, worker) == [] and await tickets_of(client, liaison) == []


def test_a_command_naming_an_unknown_action_or_part_word_is_refused_at_start(tmp_path):
    from bot.casework.parts import PartPolicy
    from bot.casework.workflow import Workflow
    from bot.dialogs.staff import StaffChat
    from bot.settings import CONFIG_DIR

    workflow = Workflow.load(CONFIG_DIR / "workflow.toml")
    parts = set(PartPolicy.load(CONFIG_DIR / "workflow.toml").transitions)
    shipped = (CONFIG_DIR / "notices.toml").read_text(encoding="utf-8")
    StaffChat.load(CONFIG_DIR / "notices.toml").check(set(workflow.transitions), parts)  # as shipped: fine
    broken = tmp_path / "notices.toml"
    broken.write_text(shipped.replace('part = "done"', 'part = "finish"'), encoding="utf-8")
    with pytest.raises(ValueError, match=r"unknown actions or part words \['finish'\]"):
        StaffChat.load(broken).check(set(workflow.transitions), parts)


async def test_my_work_lists_only_what_their_rights_let_them_see(aiohttp_client, tmp_path, database_url, new_openid):
    """「我的工单」 comes from the queues a staff member is told of, intersected with what the
    rights table lets them view (as the console lists them): a grid worker whose role may
    not view their grid's tickets (a local rights table) is told of them but lists none."""
    import dataclasses
    import shutil

    from bot.app import create_app
    from bot.settings import CONFIG_DIR
    from tests.conftest import make_settings

    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    rights = (config / "rights.toml").read_text(encoding="utf-8")
    granted = 'scope = "grid"\nactions = ["view", "accept",'
    assert rights.count(granted) == 1
    (config / "rights.toml").write_text(rights.replace(granted, 'scope = "grid"\nactions = ["accept",'),
                                        encoding="utf-8")
    settings = dataclasses.replace(make_settings(tmp_path, database_url), config_dir=config)
    client = await aiohttp_client(create_app(settings))
    sender = wechat.Sender(client)
    worker = await bound_grid_worker(client, sender, new_openid)
    number = await report(sender, await follow(sender, new_openid()), ELEVATOR)
    assert any(number in m for m in await messages_to(client, worker))  # told of it, as before
    assert await sender.reply(wechat.text(worker, "我的工单")) == texts.STAFF_LIST_EMPTY


async def test_a_member_disabled_elsewhere_works_no_ticket_by_chat(client, sender, new_openid, cli_env, capsys):
    """This worker's staff cache refreshes every 30 s; disabling and enabling by the CLI
    (another process) count at once: each command reads the account from the database."""
    org = services_of(client).case.org
    resident = await follow(sender, new_openid())
    number = await report(sender, resident, GARBAGE)
    worker = await bound_grid_worker(client, sender, new_openid)
    code, _, err = await minyi(capsys, "staff", "disable", G05)
    assert code == 0, err
    me = await staff_member(client, G05)
    cached = org.by_openid(worker)  # this worker has not reloaded the staff yet
    assert cached is not None and cached.id == me.id and not me.active
    before = [(e.action, e.actor) for e in await events_of(client, number)]

    assert await sender.reply(wechat.text(worker, f"接单 {number}")) == texts.STAFF_DISABLED
    assert org.by_openid(worker) is None and org.disabled_by_openid(worker).id == me.id  # reloaded then
    assert await sender.reply(wechat.text(worker, f"办结 {number} 已处理")) == texts.STAFF_DISABLED
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.handler_id) == ("dispatched", None)
    assert [(e.action, e.actor) for e in await events_of(client, number)] == before
    refused = [(e.actor, e.action, e.target, e.outcome, e.reason) for e in await audit_entries(client)
               if e.outcome == "refused"]
    assert refused == [(f"staff:{me.id}", "accept", number, "refused", texts.STAFF_DISABLED),
                       (f"staff:{me.id}", "resolve", number, "refused", texts.STAFF_DISABLED)]
    # Anything but a numbered command is a resident's message now: their own progress query.
    assert await sender.reply(wechat.text(worker, "我的工单")) == await sender.reply(
        wechat.text(await follow(sender, new_openid()), "我的工单"))
    assert await tickets_of(client, worker) == []

    code, _, err = await minyi(capsys, "staff", "enable", G05)
    assert code == 0, err
    assert org.by_openid(worker) is None  # the cache still has them disabled
    assert await sender.reply(wechat.text(worker, f"接单 {number}")) == f"工单 {number}：已派单 → 已接单。"
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.handler_id) == ("accepted", me.id)
