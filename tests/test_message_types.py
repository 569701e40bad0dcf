"""Every WeChat message and event type through the real callback, in plaintext,
compatible and safe mode: each gets a sensible reply or 'success', never an error."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from storage.models import InboundMessage, Resident
from tests import wechat
from tests.conftest import services_of

GRID_CENTER = (30.59, 114.31)  # inside 枫林第一网格

CASES = {
    "text": (lambda o: wechat.text(o, "你好"), "您好！我是"),  # a greeting is answered, never drafted
    "image": (lambda o: wechat.image(o), "照片"),
    "voice+recognition": (lambda o: wechat.voice(o, "我要反映一下小区门口"), "什么问题"),  # guided report
    "voice": (lambda o: wechat.voice(o), "语音"),
    "video": (lambda o: wechat.video(o, "video"), "视频"),
    "shortvideo": (lambda o: wechat.video(o, "shortvideo"), "小视频"),
    "location": (lambda o: wechat.location(o, *GRID_CENTER, label="枫林路1号"), "枫林第一网格"),
    "link": (lambda o: wechat.link(o, "小区公告"), "什么问题"),
    "subscribe": (lambda o: wechat.event(o, "subscribe"), "欢迎关注"),
    "subscribe+qrscene": (lambda o: wechat.event(o, "subscribe", EventKey="qrscene_grid_420199002001001",
                                                 Ticket="TICKET"), "幸福里第一网格"),
    "unsubscribe": (lambda o: wechat.event(o, "unsubscribe"), ""),
    "SCAN": (lambda o: wechat.event(o, "SCAN", EventKey="grid_420199001002002", Ticket="TICKET"), "桃源第二网格"),
    "LOCATION": (lambda o: wechat.event(o, "LOCATION", Latitude=30.57, Longitude=114.31, Precision=30), ""),
    "CLICK": (lambda o: wechat.event(o, "CLICK", EventKey="HELP"), "怎么用"),
    "CLICK unknown key": (lambda o: wechat.event(o, "CLICK", EventKey="NO_SUCH_KEY"), ""),
    "VIEW": (lambda o: wechat.event(o, "VIEW", EventKey="https://example.org/"), ""),
    "TEMPLATESENDJOBFINISH": (lambda o: wechat.event(o, "TEMPLATESENDJOBFINISH", MsgID=1234, Status="success"), ""),
    "subscribe_msg_popup_event": (lambda o: wechat.event(o, "subscribe_msg_popup_event", SubscribeMsgPopupEvent={
        "List": [{"TemplateId": "tpl-a", "SubscribeStatusString": "accept", "PopupScene": "2"},
                 {"TemplateId": "tpl-b", "SubscribeStatusString": "reject", "PopupScene": "2"}]}), ""),
    "subscribe_msg_change_event": (lambda o: wechat.event(o, "subscribe_msg_change_event", SubscribeMsgChangeEvent={
        "List": {"TemplateId": "tpl-a", "SubscribeStatusString": "reject"}}), ""),
    "subscribe_msg_sent_event": (lambda o: wechat.event(o, "subscribe_msg_sent_event", SubscribeMsgSentEvent={
        "List": {"TemplateId": "tpl-a", "MsgID": "1", "ErrorCode": "0", "ErrorStatus": "success"}}), ""),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_every_type_is_answered(client, mode, new_openid, case):
    build, expected = CASES[case]
    sender = wechat.Sender(client, mode=mode)
    openid = new_openid()
    if case not in ("subscribe", "subscribe+qrscene"):
        await sender.reply(wechat.event(openid, "subscribe"))
        await sender.reply(wechat.text(openid, "同意"))
    reply = await sender.reply(build(openid))
    if expected:
        assert expected in reply
    else:
        assert reply == ""  # plain 'success'
    async with services_of(client).db.session() as s:
        stored = (await s.exec(select(InboundMessage).where(InboundMessage.openid == openid)
                               .order_by(InboundMessage.id.desc()))).first()  # type: ignore[union-attr]
    assert stored is not None and stored.reply == reply


async def test_subscribe_records_consent_flow_and_unsubscribe(client, sender, new_openid):
    openid = new_openid()
    welcome = await sender.reply(wechat.event(openid, "subscribe"))
    assert "隐私说明" in welcome and "同意" in welcome
    assert "谢谢" in await sender.reply(wechat.text(openid, "同意"))
    await sender.reply(wechat.event(openid, "unsubscribe"))
    async with services_of(client).db.session() as s:
        resident = await s.get(Resident, openid)
    assert resident is not None
    assert resident.consent_at is not None and resident.subscribed is False and resident.unsubscribed_at


async def test_subscription_message_choices_are_remembered(client, sender, new_openid):
    openid = new_openid()
    build, _ = CASES["subscribe_msg_popup_event"]
    await sender.reply(build(openid))
    from storage.models import DialogState

    async with services_of(client).db.session() as s:
        dialog = await s.get(DialogState, openid)
    assert dialog is not None and dialog.data["subscribed_templates"] == ["tpl-a"]


async def test_ticket_number_format_is_human_friendly(client, sender, new_openid):
    openid = new_openid()
    await sender.reply(wechat.event(openid, "subscribe"))
    await sender.reply(wechat.text(openid, "同意"))
    reply = await sender.reply(wechat.text(openid, "春晖家园小区物业不作为，楼道灯坏了半年没人修，物业费照收"))
    assert re.search(r"编号：\d{8}-\d{4}", reply)
