"""Bad input to the WeChat callback (and the Open311 API) is a 4xx or a polite reply,
never a 5xx: each case a black-box attack found, through the real /wechat."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlmodel import func, select

from bot.dialogs import texts
from bot.dialogs.choices import parse_choice
from bot.wechat.inbound import BadMessage, Inbound
from bot.wechat.xmlsafe import XMLRejected, cdata, parse_xml
from storage.models import Attachment, DialogState, InboundMessage, Resident, Ticket
from tests import wechat
from tests.steps import follow
from tests.conftest import services_of

FENGLIN_GRID_1 = "420199001001001"  # 枫林社区 is community 1, 枫林第一网格 its grid 1




async def rows(client: Any, model: type, *where: Any) -> list[Any]:
    async with services_of(client).db.session() as s:
        return list((await s.exec(select(model).where(*where))).all())


async def count(client: Any, model: type, *where: Any) -> int:
    async with services_of(client).db.session() as s:
        return (await s.exec(select(func.count()).select_from(model).where(*where))).one()


async def post_xml(sender: wechat.Sender, xml: str) -> Any:
    """Post a raw XML body (which the field builders cannot express), signed as WeChat would."""
    query = sender.signed_query()
    if sender.mode == "plaintext":
        return await sender.client.post("/wechat", params=query, data=xml.encode())
    envelope = parse_xml(sender.crypto.encrypt(xml, query["nonce"], query["timestamp"]))
    body = wechat.xml_of({"ToUserName": wechat.ACCOUNT, "Encrypt": envelope["Encrypt"]}).encode()
    return await sender.client.post("/wechat", data=body, params={
        **query, "encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]})


def head(openid: str, msg_type: str = "event", create_time: int | None = None) -> str:
    return (f"<ToUserName>{cdata(wechat.ACCOUNT)}</ToUserName><FromUserName>{cdata(openid)}</FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType>{cdata(msg_type)}</MsgType>")


# --- 1. numbered choices -------------------------------------------------------------

def test_parse_choice_accepts_only_ascii_and_full_width_digits_in_range():
    assert parse_choice("1", 4) == 1
    assert parse_choice(" ４ ", 4) == 4
    assert parse_choice("2。", 4) == 2
    assert parse_choice("\u30003\u3000", 4) == 3  # ideographic spaces
    assert parse_choice("0004", 4) == 4
    for bad in ("²", "⑤", "٣", "３²", "9" * 5000, "5", "0", "-1", "+1", "1.5", "1_0", "", " ", "一", "1 2", "00001"):
        assert parse_choice(bad, 4) is None, bad
    assert parse_choice("1", 0) is None


@pytest.mark.parametrize("bad", ["²", "⑤", "9" * 5000, "٣", "0", "5", "-1"])
async def test_a_bad_choice_while_binding_gets_a_polite_re_prompt(client, sender, new_openid, bad):
    openid = new_openid()
    await follow(sender, openid)
    prompt = await sender.reply(wechat.text(openid, "绑定"))
    assert "1. " in prompt and "4. " in prompt and "5. " not in prompt
    again = await sender.reply(wechat.text(openid, bad))
    assert again.startswith(texts.BIND_BAD_CHOICE)
    assert again.splitlines()[1:] == prompt.splitlines()[1:5]  # the same four communities, numbered
    [dialog] = await rows(client, DialogState, DialogState.openid == openid)
    assert dialog.state == "choosing_community"

    grids = await sender.reply(wechat.text(openid, "１"))  # full-width digits are fine
    assert "枫林第一网格" in grids
    again = await sender.reply(wechat.text(openid, bad))
    assert again.startswith(texts.BIND_BAD_CHOICE) and "枫林第一网格" in again
    assert "枫林第一网格" in await sender.reply(wechat.text(openid, "1"))
    [resident] = await rows(client, Resident, Resident.openid == openid)
    assert resident.home_area_code == FENGLIN_GRID_1


# --- 2. subscription-message events, one item or many --------------------------------

def popup(openid: str, inner: str, event: str = "subscribe_msg_popup_event",
          container: str = "SubscribeMsgPopupEvent", create_time: int | None = None) -> str:
    return (f"<xml>{head(openid, create_time=create_time)}<Event>{cdata(event)}</Event>"
            f"<{container}>{inner}</{container}></xml>")


def item(template: str, status: str = "accept") -> str:
    return f"<TemplateId>{cdata(template)}</TemplateId><SubscribeStatusString>{status}</SubscribeStatusString>"


async def templates_of(client: Any, openid: str) -> list[str] | None:
    dialogs = await rows(client, DialogState, DialogState.openid == openid)
    return dialogs[0].data.get("subscribed_templates") if dialogs else None


SHAPES = {
    "one List": (f"<List>{item('tpl-a')}</List>", ["tpl-a"]),
    "repeated List": (f"<List>{item('tpl-a')}</List><List>{item('tpl-b')}</List>"
                      f"<List>{item('tpl-c', 'reject')}</List>", ["tpl-a", "tpl-b"]),
    "TemplateId directly": (item("tpl-a"), ["tpl-a"]),
    "repeated TemplateId": ("<List><TemplateId>tpl-a</TemplateId><TemplateId>tpl-b</TemplateId>"
                            "<SubscribeStatusString>accept</SubscribeStatusString></List>", ["tpl-a"]),
    "nested TemplateId": ("<List><TemplateId><x>tpl-a</x></TemplateId>"
                          "<SubscribeStatusString>accept</SubscribeStatusString></List>", []),
    "text List": ("<List>tpl-a</List>", []),
    "empty": ("", []),
}


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_subscription_choice_events_accept_one_item_or_many(client, mode, new_openid, shape):
    sender = wechat.Sender(client, mode=mode)
    inner, expected = SHAPES[shape]
    openid = new_openid()
    resp = await post_xml(sender, popup(openid, inner))
    assert resp.status == 200 and await resp.text() == "success"
    assert await templates_of(client, openid) == expected


async def test_a_change_event_with_many_items_updates_the_remembered_templates(client, sender, new_openid):
    openid = new_openid()
    now = int(time.time())
    both = f"<List>{item('tpl-a')}</List><List>{item('tpl-b')}</List>"
    assert (await post_xml(sender, popup(openid, both, create_time=now))).status == 200
    change = f"<List>{item('tpl-a', 'reject')}</List><List>{item('tpl-c')}</List>"
    resp = await post_xml(sender, popup(openid, change, "subscribe_msg_change_event", "SubscribeMsgChangeEvent", now))
    assert resp.status == 200 and await resp.text() == "success"
    assert await templates_of(client, openid) == ["tpl-b", "tpl-c"]


@pytest.mark.parametrize("inner", [
    "<List><TemplateId>tpl-a</TemplateId><MsgID>1</MsgID><ErrorCode>0</ErrorCode></List>"
    "<List><TemplateId>tpl-b</TemplateId><MsgID>2</MsgID><ErrorCode>43101</ErrorCode></List>",
    "<TemplateId>tpl-a</TemplateId><MsgID>1</MsgID><ErrorCode>0</ErrorCode>",
    "<List><TemplateId><a/><b/></TemplateId><ErrorCode><x>1</x></ErrorCode></List>",
])
async def test_subscription_sent_receipts_of_any_shape_get_success(client, sender, new_openid, inner):
    openid = new_openid()
    resp = await post_xml(sender, popup(openid, inner, "subscribe_msg_sent_event", "SubscribeMsgSentEvent"))
    assert resp.status == 200 and await resp.text() == "success"
    assert await count(client, InboundMessage, InboundMessage.openid == openid) == 1


def test_entries_reduce_every_shape_to_a_list_of_text_dicts():
    def entries(inner: str) -> list[dict[str, str]]:
        return Inbound.from_fields(parse_xml(popup("o1", inner))).entries("SubscribeMsgPopupEvent")

    assert entries(f"<List>{item('a')}</List>") == [{"TemplateId": "a", "SubscribeStatusString": "accept"}]
    assert [e["TemplateId"] for e in entries(f"<List>{item('a')}</List><List>{item('b')}</List>")] == ["a", "b"]
    assert entries(item("a")) == [{"TemplateId": "a", "SubscribeStatusString": "accept"}]
    assert entries("<List><TemplateId><x>a</x></TemplateId></List>") == [{"TemplateId": ""}]
    assert entries("<List>a</List>") == []
    # A repeated container counts as much as a repeated item.
    xml = popup("o1", f"<List>{item('a')}</List>").replace("</xml>", f"<SubscribeMsgPopupEvent>{item('b')}"
                                                                       "</SubscribeMsgPopupEvent></xml>")
    assert [e["TemplateId"] for e in Inbound.from_fields(parse_xml(xml)).entries("SubscribeMsgPopupEvent")] == ["a", "b"]


# --- 3. every text field within its column, the same on both backends ----------------

async def test_an_overlong_msg_type_is_unknown_and_answered_success(client, sender, new_openid):
    openid = new_openid()
    resp = await sender.post(wechat.message(openid, "x" * 33, Content="hi"))
    assert resp.status == 200 and await resp.text() == "success"
    [row] = await rows(client, InboundMessage, InboundMessage.openid == openid)
    assert row.msg_type == "unknown" and row.event is None and row.reply == ""


@pytest.mark.parametrize("msg_type", ["TEXT ", "mini-program", "text\u00e9", "文本"])
async def test_a_malformed_msg_type_is_unknown(client, sender, new_openid, msg_type):
    openid = new_openid()
    resp = await sender.post(wechat.message(openid, msg_type, Content="查询"))
    assert resp.status == 200
    expected = "text" if msg_type == "TEXT " else "unknown"  # case and spaces are WeChat's to vary
    [row] = await rows(client, InboundMessage, InboundMessage.openid == openid)
    assert row.msg_type == expected
    assert (await resp.text() == "success") is (expected == "unknown")


async def test_an_overlong_event_is_unknown_and_answered_success(client, sender, new_openid):
    openid = new_openid()
    resp = await sender.post(wechat.event(openid, "e" * 65))
    assert resp.status == 200 and await resp.text() == "success"
    [row] = await rows(client, InboundMessage, InboundMessage.openid == openid)
    assert row.msg_type == "event" and row.event == "unknown"
    assert len(row.dedupe_key) <= 160


@pytest.mark.parametrize("msg_id", ["9" * 159, "9" * 21, str(2**64), "１２３", "12a", "-5", "1.0", "²"])
async def test_a_msg_id_that_is_not_a_64_bit_number_is_400(client, sender, new_openid, msg_id):
    openid = new_openid()
    resp = await sender.post({**wechat.text(openid, "你好"), "MsgId": msg_id})
    assert resp.status == 400
    assert "MsgId" in await resp.text()
    assert await count(client, InboundMessage, InboundMessage.openid == openid) == 0


async def test_the_largest_64_bit_msg_id_is_accepted(client, sender, new_openid):
    openid = new_openid()
    assert (await sender.post({**wechat.text(openid, "你好"), "MsgId": str(2**64 - 1)})).status == 200
    [row] = await rows(client, InboundMessage, InboundMessage.openid == openid)
    assert row.dedupe_key == f"m:{2**64 - 1}"


@pytest.mark.parametrize("create_time", ["9" * 5000, "9" * 13, "１７", "-1", "", "1e9"])
async def test_a_create_time_that_is_not_a_unix_time_is_400(client, sender, new_openid, create_time):
    openid = new_openid()
    resp = await sender.post({**wechat.text(openid, "你好"), "CreateTime": create_time})
    assert resp.status == 400
    assert await count(client, InboundMessage, InboundMessage.openid == openid) == 0


@pytest.mark.parametrize("xml", [
    "<xml><ToUserName>gh</ToUserName><FromUserName><a>o1</a></FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><MsgId>1</MsgId></xml>",
    "<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><FromUserName>o2</FromUserName>"
    "<CreateTime>1</CreateTime><MsgType>text</MsgType><MsgId>1</MsgId></xml>",
    "<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><MsgId><n>1</n></MsgId></xml>",
    "<xml><ToUserName>gh</ToUserName><FromUserName>" + "o" * 65 + "</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><MsgId>1</MsgId></xml>",
    "<xml><ToUserName>gh</ToUserName><FromUserName> </FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><MsgId>1</MsgId></xml>",
])
async def test_header_fields_that_are_not_one_text_are_400(client, sender, xml):
    resp = await post_xml(sender, xml)
    assert resp.status == 400
    assert "bad message" in await resp.text()
    assert await count(client, InboundMessage) == 0


async def test_a_location_label_is_cut_to_the_columns_it_fills(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    await sender.reply(wechat.text(openid, "我要反映个问题"))
    label = "枫" * 301
    assert "位置" in await sender.reply(wechat.location(openid, 30.59, 114.31, label=label))
    await sender.reply(wechat.text(openid, "1"))
    [ticket] = await rows(client, Ticket, Ticket.openid == openid)
    [attachment] = await rows(client, Attachment, Attachment.ticket_id == ticket.id)
    assert ticket.address == attachment.label == label[:200]


async def test_overlong_media_ids_and_urls_are_dropped_and_recognition_cut(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    await sender.reply(wechat.text(openid, "我要反映个问题"))
    photo = {**wechat.image(openid, media_id="m" * 161), "PicUrl": "http://mmbiz.qpic.cn/" + "p" * 500}
    assert "照片" in await sender.reply(photo)
    assert "语音" in await sender.reply(wechat.voice(openid, recognition="楼道灯坏了" * 100, media_id="v" * 160))
    link = {**wechat.link(openid, "标" * 400), "Url": "https://example.org/" + "u" * 500}
    assert "链接" in await sender.reply(link)
    await sender.reply(wechat.text(openid, "1"))
    [ticket] = await rows(client, Ticket, Ticket.openid == openid)
    found = {a.kind: a for a in await rows(client, Attachment, Attachment.ticket_id == ticket.id)}
    assert (found["image"].media_id, found["image"].url) == (None, None)
    assert found["voice"].media_id == "v" * 160 and found["voice"].label == ("楼道灯坏了" * 100)[:300]
    assert found["link"].url is None and found["link"].label == "标" * 300


async def test_a_long_event_key_gives_a_bounded_key_that_no_other_event_shares(client, sender, new_openid):
    openid = new_openid()
    now = int(time.time())
    first = wechat.event(openid, "CLICK", now, EventKey="k" * 20_000 + "1")
    second = wechat.event(openid, "CLICK", now, EventKey="k" * 20_000 + "2")
    for fields in (first, second, first):  # the third is a retry of the first
        assert (await sender.post(fields)).status == 200
    stored = await rows(client, InboundMessage, InboundMessage.openid == openid)
    keys = sorted(row.dedupe_key for row in stored)
    assert len(keys) == 2 and keys[0] != keys[1]
    assert all(key.startswith("h:") and len(key) == 66 for key in keys)
    assert Inbound.from_fields(parse_xml(wechat.xml_of(first))).dedupe_key in keys


def test_from_fields_is_idempotent_so_stored_fields_read_back_the_same():
    raw = parse_xml(wechat.xml_of({**wechat.location("o1", 30.5, 114.3, label="枫" * 400), "MsgType": "LOCATION "}))
    once = Inbound.from_fields(raw)
    again = Inbound.from_fields(dict(once.fields))
    assert again == once and len(once.text("Label")) == 200 and once.msg_type == "location"
    with pytest.raises(BadMessage):
        Inbound.from_fields({"ToUserName": "gh", "FromUserName": "o1", "CreateTime": "1", "MsgType": ["text"]})


# --- 4. two first messages of a new resident at once ---------------------------------

async def test_concurrent_first_messages_of_a_new_resident_both_succeed(client, sender, new_openid):
    openids = [new_openid() for _ in range(6)]
    sends = [sender.post(wechat.text(openid, text)) for openid in openids for text in ("你好", "在吗")]
    responses = await asyncio.gather(*sends)
    assert [resp.status for resp in responses] == [200] * len(sends)
    for openid in openids:
        assert await count(client, Resident, Resident.openid == openid) == 1
        assert await count(client, DialogState, DialogState.openid == openid) == 1
        assert await count(client, InboundMessage, InboundMessage.openid == openid) == 2


# --- 6. control characters cannot hide markup from the XML guard ---------------------

NUL_HIDDEN = [
    "<!DOC\0TYPE xml [<!ENTITY a 'b'>]>",
    "<\0!DOCTYPE xml [<!EN\0TITY a SYSTEM 'file:///etc/passwd'>]>",
    "<\0!-- a comment -->",
    "<\x01?pi data?>",
    "<!\x1f-- a comment -->",
]


@pytest.mark.parametrize("prefix", NUL_HIDDEN)
async def test_markup_hidden_by_control_characters_is_refused(client, mode, new_openid, prefix):
    sender = wechat.Sender(client, mode=mode)
    body = wechat.xml_of(wechat.text(new_openid(), "你好"))
    resp = await post_xml(sender, prefix + body)
    assert resp.status == 400
    assert "bad XML" in await resp.text()
    assert await count(client, InboundMessage) == 0


def test_the_guard_sees_what_the_parser_parses():
    with pytest.raises(XMLRejected):
        parse_xml(b"<xml><a>1</a><\0!-- x --></xml>")
    # Control characters in text are still removed (users can type some), not refused.
    assert parse_xml(b"<xml><a>x\0y\x01z</a></xml>") == {"a": "xyz"}
    with pytest.raises(XMLRejected):
        parse_xml("<xml><a>\ud800</a></xml>")  # a lone surrogate cannot be UTF-8
