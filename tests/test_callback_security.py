"""The callback's defences: signatures, replays, sizes, hostile XML, odd text."""

from __future__ import annotations

import re

import time

from sqlmodel import func, select

from bot.wechat.signing import signature
from storage.models import InboundMessage, Ticket
from bot.dialogs import texts
from tests import wechat
from tests.conftest import services_of


async def count(client, model) -> int:  # type: ignore[no-untyped-def]
    async with services_of(client).db.session() as s:
        return (await s.exec(select(func.count()).select_from(model))).one()


async def test_url_verification_echoes_echostr(client, sender):
    query = sender.signed_query()
    resp = await client.get("/wechat", params={**query, "echostr": "5837397749160939851"})
    assert resp.status == 200
    assert await resp.text() == "5837397749160939851"


async def test_url_verification_with_bad_signature_is_refused(client, sender):
    query = {**sender.signed_query(), "signature": "0" * 40, "echostr": "abc"}
    resp = await client.get("/wechat", params=query)
    assert resp.status == 403
    assert await resp.text() != "abc"


async def test_forged_signature_is_refused_and_nothing_is_stored(client, sender, new_openid):
    body, query = sender.encode(wechat.text(new_openid(), "楼道里堆满了杂物，消防通道被堵死了"), sender.signed_query())
    query["signature"] = signature("wrong-token", query["timestamp"], query["nonce"])
    resp = await client.post("/wechat", params=query, data=body)
    assert resp.status == 403
    assert "signature" in await resp.text()
    assert await count(client, InboundMessage) == 0


async def test_missing_signature_parameters_are_a_clear_400(client):
    resp = await client.post("/wechat", data=b"<xml></xml>")
    assert resp.status == 400
    assert "missing" in await resp.text()


async def test_stale_timestamp_is_refused_as_replay(client, sender, new_openid):
    old = int(time.time()) - 3600
    query = sender.signed_query(timestamp=old)
    body, query = sender.encode(wechat.text(new_openid(), "路灯坏了"), query)
    resp = await client.post("/wechat", params=query, data=body)
    assert resp.status == 403
    assert "stale" in await resp.text()


async def test_replay_inside_window_returns_same_reply_and_no_second_ticket(client, sender, new_openid):
    openid = new_openid()
    await sender.reply(wechat.event(openid, "subscribe"))
    await sender.reply(wechat.text(openid, "同意"))
    report = wechat.text(openid, "幸福里小区3号楼的电梯坏了三天了，老人下不了楼")
    query = sender.signed_query()
    body, query = sender.encode(report, query)
    first = await client.post("/wechat", params=query, data=body)
    second = await client.post("/wechat", params=query, data=body)  # byte-for-byte replay
    assert first.status == second.status == 200
    assert sender.decode(await first.text()) == sender.decode(await second.text())
    assert await count(client, Ticket) == 1


async def test_oversized_body_is_413(client, sender, new_openid):
    services = services_of(client)
    big = "投诉" * services.settings.server.max_body_bytes
    body, query = sender.encode(wechat.text(new_openid(), big), sender.signed_query())
    resp = await client.post("/wechat", params=query, data=body)
    assert resp.status == 413
    assert await count(client, InboundMessage) == 0


async def test_malformed_xml_is_400(client, sender):
    query = sender.signed_query()
    resp = await client.post("/wechat", params=query, data=b"<xml><ToUserName>gh</ToUser")
    assert resp.status == 400
    assert "XML" in await resp.text()


async def test_xml_without_required_fields_is_400(client, sender):
    resp = await client.post("/wechat", params=sender.signed_query(), data=b"<xml><Content>hi</Content></xml>")
    assert resp.status == 400
    assert "bad message" in await resp.text()


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(f'<!ENTITY lol{i} "{"&lol{}".format(i - 1 if i > 1 else "") * 10};">'.encode() for i in range(1, 10))
    + b"]><xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>"
    b"<MsgType>text</MsgType><Content>&lol9;</Content><MsgId>1</MsgId></xml>"
)

EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>"
    b"<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>2</MsgId></xml>"
)


async def test_entity_bomb_and_external_entities_are_refused_fast(client, sender):
    for hostile in (BILLION_LAUGHS, EXTERNAL_ENTITY):
        started = time.perf_counter()
        resp = await client.post("/wechat", params=sender.signed_query(), data=hostile)
        assert resp.status == 400
        assert "DTD" in await resp.text()
        assert time.perf_counter() - started < 1.0
    assert await count(client, InboundMessage) == 0


async def test_encrypted_bomb_is_refused_after_decryption(client, new_openid):
    s = wechat.Sender(client, mode="safe")
    query = s.signed_query()
    envelope = wechat.parse_xml(s.crypto.encrypt(EXTERNAL_ENTITY.decode(), query["nonce"], query["timestamp"]))
    body = wechat.xml_of({"ToUserName": "gh", "Encrypt": envelope["Encrypt"]}).encode()
    resp = await client.post("/wechat", params={**query, "encrypt_type": "aes",
                                                "msg_signature": envelope["MsgSignature"]}, data=body)
    assert resp.status == 400


async def test_bad_msg_signature_in_safe_mode_is_403(client, new_openid):
    s = wechat.Sender(client, mode="safe")
    resp = await s.post(wechat.text(new_openid(), "你好"), msg_signature="f" * 40)
    assert resp.status == 403


async def test_ciphertext_for_another_app_is_400(client, new_openid):
    other = wechat.Sender(client, mode="safe",
                          crypto=wechat.MessageCrypto(wechat.TOKEN, wechat.AES_KEY, "wxsomeoneelse00000"))
    resp = await other.post(wechat.text(new_openid(), "你好"))
    assert resp.status == 400
    assert "decrypt" in await resp.text()


async def test_control_characters_and_cdata_terminator_survive_round_trip(client, mode, new_openid):
    s = wechat.Sender(client, mode=mode)
    openid = new_openid()
    await s.reply(wechat.event(openid, "subscribe"))
    await s.reply(wechat.text(openid, "同意"))
    nasty = "幸福里小区3号楼电梯坏了]]><xml>说不清\x01\x02\x1f 已经]]>三天"
    created = await s.reply(wechat.text(openid, nasty))
    number = re.search(r"\d{8}-\d{4}", created).group(0)  # type: ignore[union-attr]
    detail = await s.reply(wechat.text(openid, number))
    assert "内容：幸福里小区3号楼电梯坏了]]><xml>说不清 已经]]>三天\n" in detail  # intact, minus control characters
    assert "\x01" not in detail


async def test_unknown_message_and_event_types_get_success(client, sender, new_openid):
    openid = new_openid()
    for fields in (wechat.message(openid, "miniprogrampage", Title="x"),
                   wechat.event(openid, "some_future_event", EventKey="k")):
        resp = await sender.post(fields)
        assert resp.status == 200
        assert await resp.text() == "success"


async def test_compatible_mode_trusts_only_the_encrypted_copy(client, new_openid):
    s = wechat.Sender(client, mode="safe")
    openid = new_openid()
    await s.reply(wechat.event(openid, "subscribe"))
    await s.reply(wechat.text(openid, "同意"))
    real = wechat.text(openid, "小区门口的路灯坏了")
    query = s.signed_query()
    envelope = wechat.parse_xml(s.crypto.encrypt(wechat.xml_of(real), query["nonce"], query["timestamp"]))
    forged_plaintext = {**real, "Content": "查询", "FromUserName": "o-somebody-else"}
    body = wechat.xml_of({**forged_plaintext, "Encrypt": envelope["Encrypt"]}).encode()
    resp = await client.post("/wechat", params={**query, "encrypt_type": "aes",
                                                "msg_signature": envelope["MsgSignature"]}, data=body)
    assert resp.status == 200
    reply = s.decode(await resp.text())
    assert reply == texts.ASK_PLACE  # the draft of the encrypted message asks where; 查询 would list tickets


async def test_plaintext_is_refused_when_encryption_is_required(aiohttp_client, settings, new_openid):
    from bot.app import create_app

    client = await aiohttp_client(create_app(settings.replace(wechat={"require_encryption": "true"})))
    plain = await wechat.Sender(client).post(wechat.text(new_openid(), "你好"))
    assert plain.status == 403
    assert "safe mode" in await plain.text()
    assert (await wechat.Sender(client, mode="safe").post(wechat.text(new_openid(), "你好"))).status == 200
