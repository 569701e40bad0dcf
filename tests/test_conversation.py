"""The resident's conversation through the real callback: what they want is understood
before text becomes a report, emergencies come first, drafts are never lost silently,
and urges and answers reach their ticket (issue: a conversation that understands people)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from bot.casework.actors import RESIDENT_CODE
from bot.app import create_app
from bot.clock import to_local, utcnow
from bot.dialogs import texts
from bot.dialogs.drafts import expire_drafts
from storage.models import Attachment, DialogState, Ticket, TicketEvent
from tests import wechat
from tests.conftest import services_of
from tests.steps import NUMBER, follow, messages_to, minyi, report, ticket_by_number, tickets_of

ELEVATOR = "幸福里小区3号楼的电梯坏了三天了，老人下不了楼"
LAMP = "锦绣花园小区门口的路灯坏了一个星期了，晚上黑漆漆的"


async def events_of(client: Any, ticket_id: int, action: str) -> list[TicketEvent]:
    async with services_of(client).db.session() as s:
        return list((await s.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id,
                                                            TicketEvent.action == action)
                                  .order_by(col(TicketEvent.id)))).all())


def grid_worker(client: Any, ticket: Ticket) -> str:
    """The openid of the demo grid worker of the ticket's grid (config/demo/staff.toml)."""
    [openid] = [p.openid for p in services_of(client).case.org.staff if p.area_code == ticket.area_code and p.openid
                and p.openid.startswith("o-demo-grid-")]
    return openid


# ------------------------------------------------------------ intents: never a ticket

NOT_REPORTS = {
    "greeting": (["你好", "您好", "在吗", "早上好", "哈喽"], texts.GREETING),
    "thanks": (["谢谢", "谢谢你们", "辛苦了", "好的，谢谢", "太感谢了"], texts.THANKS),
    "goodbye": (["再见", "拜拜", "没事了，再见", "好的再见", "下次再聊"], texts.GOODBYE),
    "nonsense": (["asdfghjkl", "😡😡😡", "。", "1111", "哈哈哈哈"], texts.NO_SUBSTANCE),
    "help": (["怎么用", "这个公众号能干嘛", "怎么反映问题", "怎么上传照片", "使用说明"], texts.HELP),
}


@pytest.mark.parametrize("intent", sorted(NOT_REPORTS))
async def test_what_is_not_a_report_gets_its_answer_and_no_ticket(client, sender, new_openid, intent):
    phrases, answer = NOT_REPORTS[intent]
    openid = await follow(sender, new_openid())
    for phrase in phrases:
        assert await sender.reply(wechat.text(openid, phrase)) == answer, phrase
    assert await sender.reply(wechat.text(openid, "1")) == texts.NOTHING_TO_SUBMIT  # no draft was started
    assert await tickets_of(client, openid) == []


async def test_asking_for_a_person_gives_the_hotline_and_tells_the_duty_dispatcher_in_hours(
        aiohttp_client, settings, new_openid):
    client = await aiohttp_client(create_app(settings.replace(hotline={"hours": "00:00-23:59"})))
    sender = wechat.Sender(client)
    openid = await follow(sender, new_openid())
    calendar = services_of(client).sla.calendar
    working_day = calendar.is_working_day(to_local(utcnow()).date())
    for phrase in ["转人工", "有没有人工客服", "你们电话多少", "我要找工作人员", "人工服务"]:
        reply = await sender.reply(wechat.text(openid, phrase))
        expected = texts.HUMAN_IN_HOURS if working_day else texts.HUMAN_OUT_OF_HOURS
        assert reply == expected.format(number="12345", hours="00:00-23:59"), phrase
    told = [m for m in await messages_to(client, "o-demo-dispatch-01") if m.startswith("【转人工】")]
    assert len(told) == (5 if working_day else 0)
    assert await tickets_of(client, openid) == []


async def test_outside_service_hours_nobody_is_paged(aiohttp_client, settings, new_openid):
    client = await aiohttp_client(create_app(settings.replace(hotline={"hours": "00:00-00:00"})))
    sender = wechat.Sender(client)
    openid = await follow(sender, new_openid())
    assert await sender.reply(wechat.text(openid, "转人工")) == texts.HUMAN_OUT_OF_HOURS.format(
        number="12345", hours="00:00-00:00")
    assert [m for m in await messages_to(client, "o-demo-dispatch-01") if m.startswith("【转人工】")] == []


async def test_status_in_everyday_words_with_or_without_a_number(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    number = await report(sender, openid, ELEVATOR)
    for phrase in ["我上次反映的事怎么样了", "进度如何", "我的问题处理到哪一步了", "查一下我的诉求"]:
        listing = await sender.reply(wechat.text(openid, phrase))
        assert listing.startswith(texts.TICKET_LIST_HEAD) and number in listing, phrase
    for phrase in [f"帮我查一下{number}", f"查询 {number}", f"{number}进度", f"{number.replace('-', '－')}怎么样了"]:
        detail = await sender.reply(wechat.text(openid, phrase))
        assert detail.startswith(f"编号：{number}\n状态："), phrase
    other = await follow(sender, new_openid())
    assert await sender.reply(wechat.text(other, f"帮我查一下{number}")) == texts.OTHERS_TICKET
    assert len(await tickets_of(client, openid)) == 1 and await tickets_of(client, other) == []


async def test_ticket_detail_shows_the_staffs_result_notes(client, sender, new_openid, cli_env, capsys):
    openid = await follow(sender, new_openid())
    number = await report(sender, openid, ELEVATOR)
    # A joint ticket (市场监管 leads; 住建 and the property company assist): the grid
    # worker accepts, the co-departments' parts are done (the centre records the property
    # company's, which has no liaison in minyi), then the grid worker resolves it.
    steps = [["ticket", "act", number, "accept", "--by", "陈静"],
             ["ticket", "part", number, "housing", "done", "--by", "L02", "--note", "已督促物业维修"],
             ["ticket", "part", number, "property", "done", "--by", "D01"],
             ["ticket", "act", number, "resolve", "--by", "陈静", "--note", "已联系维保公司更换曳引机，电梯恢复运行"]]
    for argv in steps:
        code, _, err = await minyi(capsys, *argv)
        assert code == 0, (argv, err)
    detail = await sender.reply(wechat.text(openid, number))
    assert detail.endswith("处理说明：\n· 住建：协办办结，已督促物业维修\n· 物业企业：协办办结\n"
                           "· 已联系维保公司更换曳引机，电梯恢复运行")
    assert [line[-3:] for line in detail.split("办理记录：\n")[1].split("\n处理说明")[0].splitlines()] == [
        "已受理", "已派单", "已接单", "已办结"]  # the parts' notes are no moves


async def test_cancel_in_everyday_words_drops_the_draft(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    for phrase in ["算了不报了", "不用了", "撤回", "取消吧", "不报了"]:
        assert await sender.reply(wechat.text(openid, "我要反映个事")) == texts.ASK_PROBLEM
        assert await sender.reply(wechat.text(openid, phrase)) == texts.DRAFT_CANCELLED, phrase
    assert await tickets_of(client, openid) == []


# ------------------------------------------------------------ the hard negatives

async def test_a_real_complaint_that_starts_with_a_greeting_or_thanks_is_a_ticket(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    for text in ["你好，" + LAMP, "您好 幸福里小区3号楼的电梯又坏了，老人出不了门",
                 "谢谢，另外锦绣花园小区2栋的下水道堵了好几天了"]:
        assert NUMBER.search(await sender.reply(wechat.text(openid, text))), text
    assert len(await tickets_of(client, openid)) == 3


async def test_i_want_to_complain_alone_leads_into_a_guided_report(client, sender, new_openid):
    """The vague elderly resident: asked what, then where, then a summary to confirm."""
    openid = await follow(sender, new_openid())
    assert await sender.reply(wechat.text(openid, "你好")) == texts.GREETING
    assert await sender.reply(wechat.text(openid, "我要投诉")) == texts.ASK_PROBLEM
    assert await sender.reply(wechat.text(openid, "楼下天天晚上有人唱歌")) == texts.ASK_PLACE
    summary = await sender.reply(wechat.text(openid, "锦绣花园2栋，吵得睡不着"))
    assert summary.startswith("请确认：\n类别：") and "锦绣花园" in summary
    assert await tickets_of(client, openid) == []
    assert NUMBER.search(await sender.reply(wechat.text(openid, "1")))
    [ticket] = await tickets_of(client, openid)
    assert ticket.description == "楼下天天晚上有人唱歌\n锦绣花园2栋，吵得睡不着"  # no 你好, no 我要投诉
    assert ticket.area_code is not None


async def test_thanks_but_the_lamp_is_still_broken_urges_the_open_ticket(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    number = await report(sender, openid, LAMP)
    reply = await sender.reply(wechat.text(openid, "谢谢，但是路灯还是没修"))
    assert reply.startswith(f"已为您催办工单 {number}（")
    assert len(await tickets_of(client, openid)) == 1


async def test_two_close_intents_get_one_numbered_question(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    number = await report(sender, openid, ELEVATOR)
    question = await sender.reply(wechat.text(openid, "催一下我的工单"))
    assert question == texts.CHOOSE_INTENT.format(options="1. 催办\n2. 查询进度")
    listing = await sender.reply(wechat.text(openid, "2"))
    assert listing.startswith(texts.TICKET_LIST_HEAD) and number in listing
    assert await events_of(client, (await ticket_by_number(client, number)).id or 0, "urge") == []


async def test_supplements_land_on_the_open_ticket(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    number = await report(sender, openid, ELEVATOR)
    phrases = ["补充一下，是3号楼东单元", "还有，楼道灯也不亮", "再补充一点：晚上十点以后最吵", "我再说一下，是2号门",
               "另外补充，物业电话打不通"]
    for phrase in phrases:
        assert await sender.reply(wechat.text(openid, phrase)) == texts.SUPPLEMENT_ATTACHED.format(number=number)
    ticket = await ticket_by_number(client, number)
    assert [e.note for e in await events_of(client, ticket.id or 0, "supplement")] == phrases
    assert len(await tickets_of(client, openid)) == 1


async def test_a_supplement_with_nothing_open_is_a_report(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    reply = await sender.reply(wechat.text(openid, "补充一下，幸福里小区3号楼的电梯又坏了，老人下不了楼"))
    assert NUMBER.search(reply)
    assert len(await tickets_of(client, openid)) == 1


# ------------------------------------------------------------ 催办

async def test_urges_land_on_the_open_ticket_and_its_handler_is_told(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    number = await report(sender, openid, ELEVATOR)
    ticket = await ticket_by_number(client, number)
    phrases = ["催一下，怎么还没人来处理", "都三天了还没修", "能不能快点", "怎么还没人管", "搞快点嘛"]
    for phrase in phrases:
        reply = await sender.reply(wechat.text(openid, phrase))
        assert reply.startswith(f"已为您催办工单 {number}（已派单）。\n办理："), phrase
        assert "时限：" in reply
    assert len(await tickets_of(client, openid)) == 1
    urges = await events_of(client, ticket.id or 0, "urge")
    assert [e.note for e in urges] == phrases and {e.actor for e in urges} == {RESIDENT_CODE}  # the ticket says which resident
    assert ticket.appeal_type == "投诉"
    told = [m for m in await messages_to(client, grid_worker(client, ticket)) if m.startswith(f"【催办】工单 {number}")]
    assert [m.split("（")[1].split("）")[0] for m in told] == [f"第{i}次" for i in range(1, 6)]


async def test_an_urge_with_two_open_tickets_asks_which(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    first = await report(sender, openid, ELEVATOR)
    second = await report(sender, openid, LAMP)
    question = await sender.reply(wechat.text(openid, "催一下"))
    assert question.startswith("您有几件诉求正在办理") and f"1. {second}" in question and f"2. {first}" in question
    assert await sender.reply(wechat.text(openid, "谢谢")) == texts.THANKS  # not an answer: understood afresh
    assert await sender.reply(wechat.text(openid, "催一下")) == question
    assert (await sender.reply(wechat.text(openid, "2"))).startswith(f"已为您催办工单 {first}")
    assert len(await events_of(client, (await ticket_by_number(client, first)).id or 0, "urge")) == 1
    assert await events_of(client, (await ticket_by_number(client, second)).id or 0, "urge") == []


async def test_an_urge_with_nothing_open(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    assert await sender.reply(wechat.text(openid, "催一下")) == texts.NO_OPEN_TICKET
    assert await tickets_of(client, openid) == []


# ------------------------------------------------------------ answers reach their ticket

async def test_the_residents_answer_reaches_the_waiting_ticket(client, sender, new_openid, cli_env, capsys):
    openid = await follow(sender, new_openid())
    number = await report(sender, openid, ELEVATOR)
    for action in ("accept", "ask_resident"):
        code, _, err = await minyi(capsys, "ticket", "act", number, action, "--by", "何琳",
                                   *(["--note", "请问是几号电梯？"] if action == "ask_resident" else []))
        assert code == 0, err
    assert (await ticket_by_number(client, number)).status == "waiting"

    reply = await sender.reply(wechat.text(openid, "是2号电梯，靠东边那部"))
    assert reply == texts.ANSWER_ATTACHED.format(kind="文字", number=number)
    photo = await sender.reply(wechat.image(openid, media_id="m-lift"))
    assert NUMBER.search(photo).group(0) == number  # type: ignore[union-attr]
    ticket = await ticket_by_number(client, number)
    assert ticket.status == "handling"  # back with its handler (workflow.toml resident_reply_action)
    assert [e.note for e in await events_of(client, ticket.id or 0, "supplement")][0] == "是2号电梯，靠东边那部"
    assert [e.actor for e in await events_of(client, ticket.id or 0, "resume")] == [RESIDENT_CODE]
    # The handler is whoever accepted it (何琳, the 市场监管 liaison), not the grid's worker.
    told = [m for m in await messages_to(client, "o-demo-liaison-market") if m.startswith("【群众已补充】")]
    assert told[0] == f"【群众已补充】工单 {number}：是2号电梯，靠东边那部"
    assert len(await tickets_of(client, openid)) == 1


# ------------------------------------------------------------ emergencies first

async def test_fire_before_consent_gets_advice_ticket_and_red_warning_in_one_reply(client, sender, new_openid):
    openid = new_openid()  # an old follower who never agreed to the privacy notice
    reply = await sender.reply(wechat.text(openid, "着火了！锦绣花园2栋冒烟了"))
    assert reply.startswith("发生火情，请立即拨打119！") and "千万不要乘电梯" in reply
    number = NUMBER.search(reply).group(0)  # type: ignore[union-attr]
    assert texts.ASK_CONSENT in reply  # consent is asked afterwards
    [ticket] = await tickets_of(client, openid)
    assert (ticket.number, ticket.urgency) == (number, "特急")
    [basis] = await events_of(client, ticket.id or 0, "legal_basis")
    assert basis.note == services_of(client).emergency.legal_basis
    warnings = [m for m in await messages_to(client, "o-demo-supervisor-01") if m.startswith("【红色预警·直报】")]
    assert len(warnings) == 1 and number in warnings[0]


ADVICE = {
    "燃气泄漏": ("煤气泄漏了，闻到很大的味道", "燃气泄漏，请立即：\n1. 关闭燃气总阀"),
    "急救": ("有人从楼上摔下来了，流了很多血，人没反应了", "请立即拨打120急救"),
    "暴力": ("楼下有人拿刀砍人", "请立即拨打110报警！"),
    "电梯困人": ("电梯突然停了，我们被困在电梯里了", "被困电梯请不要扒门"),
    "轻生": ("我邻居站在楼顶边上说不想活了要跳楼", "心理援助热线：12356"),
}


@pytest.mark.parametrize("danger", sorted(ADVICE))
async def test_each_danger_gets_its_own_advice(client, sender, new_openid, danger):
    text, advice = ADVICE[danger]
    openid = await follow(sender, new_openid())
    reply = await sender.reply(wechat.text(openid, text))
    assert advice in reply and NUMBER.search(reply), reply
    [ticket] = await tickets_of(client, openid)
    assert ticket.urgency == "特急"


async def test_the_gas_leak_asks_where_and_the_location_lands_on_the_ticket(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    reply = await sender.reply(wechat.text(openid, "煤气泄漏了，闻到很大的味道"))
    guide = services_of(client).emergency
    assert reply.endswith(guide.ask_location)
    [ticket] = await tickets_of(client, openid)
    assert (ticket.area_code, ticket.appeal_type) == (None, "求助")  # a danger is a request for help
    placed = await sender.reply(wechat.location(openid, 30.565, 114.335, label="锦绣路8号"))
    assert placed == guide.location_added.format(place="锦绣路8号")
    [ticket] = await tickets_of(client, openid)
    assert (ticket.area_code, ticket.lat, ticket.lng, ticket.address) == ("420199001002002", 30.565, 114.335,
                                                                           "锦绣路8号")
    async with services_of(client).db.session() as s:
        [spot] = (await s.exec(select(Attachment).where(Attachment.ticket_id == ticket.id))).all()
    assert (spot.kind, spot.lat, spot.lng) == ("location", 30.565, 114.335)
    [queued] = [m for m in await messages_to(client, "o-demo-dispatch-01") if m.startswith("【新工单·待分拨】")]
    assert "\n类型：求助\n" in queued  # staff see the appeal type
    located = [m for m in await messages_to(client, "o-demo-dispatch-01") if m.startswith("【红色预警·位置】")]
    assert located == [f"【红色预警·位置】{ticket.number}\n位置：西山街道 桃源社区 桃源第二网格 锦绣路8号"]


async def test_a_place_name_answers_the_location_question(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    await sender.reply(wechat.text(openid, "煤气泄漏了，闻到很大的味道"))
    reply = await sender.reply(wechat.text(openid, "在幸福里小区3号楼"))
    assert reply.startswith("已收到位置（") and reply.endswith("），已转告现场处置人员。")
    [ticket] = await tickets_of(client, openid)
    assert ticket.area_code is not None and ticket.address == "在幸福里小区3号楼"


# ------------------------------------------------------------ drafts are never lost silently

async def test_a_timed_out_draft_is_kept_the_resident_told_and_resume_works(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    assert await sender.reply(wechat.text(openid, "我要反映个事")) == texts.ASK_PROBLEM
    assert await sender.reply(wechat.text(openid, "楼道里堆满了杂物")) == texts.ASK_PLACE
    async with services_of(client).db.transaction() as s:
        await s.exec(update(DialogState).where(DialogState.openid == openid)  # type: ignore[call-overload]
                     .values(updated_at=utcnow() - timedelta(hours=1)))
    assert await expire_drafts(services_of(client)) == 1  # the scheduled job
    assert await expire_drafts(services_of(client)) == 0  # once
    [notice] = [m for m in await messages_to(client, openid) if "没有提交" in m]
    assert notice == texts.DRAFT_EXPIRED_KEPT.format(summary="楼道里堆满了杂物")

    assert await sender.reply(wechat.text(openid, "1")) == texts.NOTHING_TO_SUBMIT_SAVED.format(
        summary="楼道里堆满了杂物")
    assert await sender.reply(wechat.text(openid, "继续")) == texts.DRAFT_RESUMED.format(summary="楼道里堆满了杂物")
    await sender.reply(wechat.text(openid, "幸福里小区3号楼"))
    assert NUMBER.search(await sender.reply(wechat.text(openid, "1")))
    [ticket] = await tickets_of(client, openid)
    assert ticket.description == "楼道里堆满了杂物\n幸福里小区3号楼"


async def test_a_saved_draft_is_gone_after_a_day(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    await sender.reply(wechat.text(openid, "我要反映个事"))
    await sender.reply(wechat.text(openid, "楼道里堆满了杂物"))
    async with services_of(client).db.transaction() as s:
        await s.exec(update(DialogState).where(DialogState.openid == openid)  # type: ignore[call-overload]
                     .values(updated_at=utcnow() - timedelta(hours=1)))
    await expire_drafts(services_of(client))
    async with services_of(client).db.transaction() as s:
        dialog = await s.get(DialogState, openid)
        assert dialog is not None
        saved = dict(dialog.data or {})
        saved["saved_draft"] = {**saved["saved_draft"], "saved_at": (utcnow() - timedelta(days=2)).isoformat()}
        dialog.data = saved
        s.add(dialog)
    assert await sender.reply(wechat.text(openid, "继续")) == texts.NO_SAVED_DRAFT


async def test_while_a_draft_is_open_courtesies_are_answered_and_the_draft_kept(client, sender, new_openid):
    openid = await follow(sender, new_openid())
    await sender.reply(wechat.text(openid, "我要反映个事"))
    assert await sender.reply(wechat.text(openid, "谢谢")) == f"{texts.THANKS}\n{texts.DRAFT_HELD}"
    await sender.reply(wechat.text(openid, "楼道里堆满了杂物，幸福里小区3号楼"))
    assert NUMBER.search(await sender.reply(wechat.text(openid, "1")))
    [ticket] = await tickets_of(client, openid)
    assert ticket.description == "楼道里堆满了杂物，幸福里小区3号楼"
