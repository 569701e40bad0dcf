"""The resident's conversations, end to end through /wechat."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import select

from bot.clock import utcnow
from storage.models import Attachment, DialogState, Outbox, Resident, TicketEvent
from bot.dialogs import texts
from tests import wechat
from tests.steps import follow, tickets_of
from tests.conftest import services_of

NUMBER = re.compile(r"\d{8}-\d{4}")






async def test_one_message_that_says_enough_becomes_a_routed_ticket(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    reply = await sender.reply(wechat.text(openid, "幸福里小区3号楼的电梯又坏了，老人上下楼很困难，请尽快派人修"))
    number = NUMBER.search(reply)
    assert number, reply
    [ticket] = await tickets_of(client, openid)
    assert ticket.number == number.group(0)
    assert ticket.category == "elevator"
    assert ticket.area_code == "420199002001001"  # 幸福里小区 is in 幸福里第一网格 (gazetteer)
    assert ticket.status == "dispatched"
    assert ticket.response_due_at is not None and ticket.response_due_at > ticket.created_at
    assert "幸福里第一网格" in reply


async def test_multi_turn_report_with_photo_and_location(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    first = await sender.reply(wechat.text(openid, "我要反映个问题"))
    assert first == texts.ASK_PROBLEM  # guided: what is the problem?
    assert await tickets_of(client, openid) == []
    assert "照片" in await sender.reply(wechat.image(openid, media_id="m-photo"))
    located = await sender.reply(wechat.location(openid, 30.565, 114.335, label="锦绣路"))
    assert located == texts.DRAFT_ADDED.format(kind="位置")
    summary = await sender.reply(wechat.text(openid, "路面有一个大坑，井盖也没了"))
    assert summary.startswith("请确认：") and "大坑" in summary
    assert "地点：西山街道 桃源社区 桃源第二网格" in summary
    done = await sender.reply(wechat.text(openid, "1"))
    assert NUMBER.search(done)
    [ticket] = await tickets_of(client, openid)
    assert ticket.area_code == "420199001002002"  # the location lies in 桃源第二网格
    assert "大坑" in ticket.description
    async with services_of(client).db.session() as s:
        kinds = sorted(a.kind for a in (await s.exec(select(Attachment).where(Attachment.ticket_id == ticket.id))).all())
    assert kinds == ["image", "location"]


async def test_photo_right_after_a_ticket_is_added_to_it(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    reply = await sender.reply(wechat.text(openid, "春晖路上的下水道井盖丢了，晚上很容易有人掉进去"))
    number = NUMBER.search(reply).group(0)  # type: ignore[union-attr]
    added = await sender.reply(wechat.image(openid, media_id="m-after"))
    assert number in added
    [ticket] = await tickets_of(client, openid)
    async with services_of(client).db.session() as s:
        attachments = (await s.exec(select(Attachment).where(Attachment.ticket_id == ticket.id))).all()
        events = (await s.exec(select(TicketEvent.action).where(TicketEvent.ticket_id == ticket.id))).all()
    assert [a.media_id for a in attachments] == ["m-after"]
    assert "supplement" in events


async def test_cancel_drops_the_draft(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    await sender.reply(wechat.text(openid, "我要反映个事"))
    assert "已取消" in await sender.reply(wechat.text(openid, "取消"))
    assert await tickets_of(client, openid) == []


async def test_a_stale_draft_expires_with_a_notice(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    await sender.reply(wechat.text(openid, "我要反映个事"))
    async with services_of(client).db.transaction() as s:
        await s.exec(update(DialogState).where(DialogState.openid == openid)
                     .values(updated_at=utcnow() - timedelta(hours=2)))
    reply = await sender.reply(wechat.text(openid, "1"))
    assert "已自动作废" in reply
    assert await tickets_of(client, openid) == []


async def test_report_before_consent_is_kept_until_the_resident_agrees(client, sender, new_openid):
    openid = new_openid()  # an old follower: no subscribe event, no consent yet
    text = "锦绣花园小区门口的烧烤摊油烟太大了，每天晚上熏得窗户都不能开"
    asked = await sender.reply(wechat.text(openid, text))
    assert "同意" in asked and "隐私" in asked
    assert await tickets_of(client, openid) == []
    agreed = await sender.reply(wechat.text(openid, "同意"))
    assert NUMBER.search(agreed)
    [ticket] = await tickets_of(client, openid)
    assert ticket.description == text


async def test_status_query_lists_own_tickets_and_shows_detail(client, sender, new_openid):
    openid, other = new_openid(), new_openid()
    await follow(sender, openid)
    await follow(sender, other)
    number = NUMBER.search(await sender.reply(wechat.text(openid, "枫林路的路灯坏了一整排，晚上黑漆漆的很不安全"))).group(0)  # type: ignore[union-attr]
    listing = await sender.reply(wechat.text(openid, "查询"))
    assert number in listing and "【已派单】" in listing
    detail = await sender.reply(wechat.text(openid, number))
    assert "办理记录" in detail and "已受理" in detail
    # Someone else's number reveals nothing.
    assert await sender.reply(wechat.text(other, number)) == texts.OTHERS_TICKET
    assert await sender.reply(wechat.text(other, "20200101-9999")) == texts.OTHERS_TICKET  # same answer
    menu = await sender.reply(wechat.event(openid, "CLICK", EventKey="MY_TICKETS"))
    assert number in menu


async def test_binding_a_home_grid_by_choosing_a_community(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    communities = await sender.reply(wechat.event(openid, "CLICK", EventKey="BIND_GRID"))
    assert "枫林社区" in communities and "春晖社区" in communities
    index = next(line.split(".")[0] for line in communities.splitlines() if "春晖社区" in line)
    grids = await sender.reply(wechat.text(openid, index))
    assert "春晖第二网格" in grids
    assert "请回复列表中的数字" in await sender.reply(wechat.text(openid, "99"))
    index = next(line.split(".")[0] for line in grids.splitlines() if "春晖第二网格" in line)
    bound = await sender.reply(wechat.text(openid, index))
    assert "春晖第二网格" in bound
    async with services_of(client).db.session() as s:
        resident = await s.get(Resident, openid)
    assert resident is not None and resident.home_area_code == "420199002002002"
    # A report that names no place now goes to the bound grid.
    await sender.reply(wechat.text(openid, "楼上邻居天天半夜装修砸墙，吵得孩子睡不着觉"))
    [ticket] = await tickets_of(client, openid)
    assert ticket.area_code == "420199002002002" and ticket.category == "noise"


async def test_location_outside_every_grid_is_explained(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    assert "不在本区" in await sender.reply(wechat.location(openid, 39.9, 116.4))


async def test_extra_urgent_report_is_created_at_once_and_raises_a_red_warning(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    reply = await sender.reply(wechat.text(openid, "着火了 枫林小区2栋"))
    assert reply.startswith("发生火情，请立即拨打119！") and "不要乘电梯" in reply and NUMBER.search(reply)
    [ticket] = await tickets_of(client, openid)
    assert ticket.urgency == "特急"
    async with services_of(client).db.session() as s:
        warnings = (await s.exec(select(Outbox).where(Outbox.openid.in_(  # type: ignore[attr-defined]
            ["o-demo-dispatch-01", "o-demo-supervisor-01"])))).all()
    assert any("红色预警" in (w.payload or {}).get("content", "") for w in warnings)
    assert len([w for w in warnings if "红色预警" in (w.payload or {}).get("content", "")]) == 2


async def test_negated_danger_is_not_extra_urgent(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    await sender.reply(wechat.text(openid, "不是火灾，是枫林小区楼道里堆满杂物把消防通道堵了"))
    [ticket] = await tickets_of(client, openid)
    assert ticket.urgency != "特急"


async def test_emergency_menu_then_text_is_submitted_at_once(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    assert "110" in await sender.reply(wechat.event(openid, "CLICK", EventKey="EMERGENCY"))
    reply = await sender.reply(wechat.text(openid, "有人在小区门口吵架"))
    assert NUMBER.search(reply)
    [ticket] = await tickets_of(client, openid)
    assert ticket.urgency in ("紧急", "特急")


async def test_voice_recognition_is_treated_as_text(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    reply = await sender.reply(wechat.voice(openid, "金桂苑小区物业把绿化带改成停车位收费了大家都很有意见"))
    assert NUMBER.search(reply)
    [ticket] = await tickets_of(client, openid)
    assert "绿化带" in ticket.description


async def test_new_ticket_notifies_the_grid_worker(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    await sender.reply(wechat.text(openid, "翠竹苑小区垃圾站好几天没人清运了，臭气熏天"))
    [ticket] = await tickets_of(client, openid)
    assert ticket.area_code == "420199001001002"
    async with services_of(client).db.session() as s:
        rows = (await s.exec(select(Outbox).where(Outbox.openid == "o-demo-grid-02"))).all()
    assert any(ticket.number in (r.payload or {}).get("content", "") for r in rows)


async def test_data_rights_commands(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    assert "诉求数量：0件" in await sender.reply(wechat.text(openid, "我的数据"))
    assert "删除申请" in await sender.reply(wechat.text(openid, "删除我的数据"))
