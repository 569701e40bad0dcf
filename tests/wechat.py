"""Builds the XML WeChat delivers (per the platform's documented formats) and posts it
to /wechat signed, in plaintext, compatible or safe mode, as the platform would."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from bot.wechat.signing import MessageCrypto, signature
from bot.wechat.xmlsafe import cdata, parse_xml

ACCOUNT = "gh_test_account"
TOKEN = "test-token"
APPID = "wx1234567890abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 chars

_ids = itertools.count(int(time.time()) * 1000)


def xml_of(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if isinstance(value, (int, float)):
            parts.append(f"<{key}>{value}</{key}>")
        elif isinstance(value, dict):
            parts.append(f"<{key}>{xml_of(value)[5:-6]}</{key}>")
        elif isinstance(value, list):
            parts.extend(f"<{key}>{xml_of(item)[5:-6]}</{key}>" for item in value)
        else:
            parts.append(f"<{key}>{cdata(str(value))}</{key}>")
    return "<xml>" + "".join(parts) + "</xml>"


def base(openid: str, msg_type: str, create_time: int | None = None) -> dict[str, Any]:
    return {"ToUserName": ACCOUNT, "FromUserName": openid, "CreateTime": create_time or int(time.time()),
            "MsgType": msg_type}


def message(openid: str, msg_type: str, msg_id: int | None = None, **fields: Any) -> dict[str, Any]:
    return {**base(openid, msg_type), **fields, "MsgId": msg_id or next(_ids)}


def text(openid: str, content: str, msg_id: int | None = None) -> dict[str, Any]:
    return message(openid, "text", msg_id, Content=content)


def image(openid: str, media_id: str = "media-img-1") -> dict[str, Any]:
    return message(openid, "image", PicUrl="http://mmbiz.qpic.cn/test.jpg", MediaId=media_id)


def voice(openid: str, recognition: str | None = None, media_id: str = "media-voice-1") -> dict[str, Any]:
    fields: dict[str, Any] = {"MediaId": media_id, "Format": "amr"}
    if recognition is not None:
        fields["Recognition"] = recognition
    return message(openid, "voice", **fields)


def video(openid: str, kind: str = "video") -> dict[str, Any]:
    return message(openid, kind, MediaId="media-video-1", ThumbMediaId="thumb-1")


def location(openid: str, lat: float, lng: float, label: str = "") -> dict[str, Any]:
    return message(openid, "location", Location_X=lat, Location_Y=lng, Scale=15, Label=label)


def link(openid: str, title: str, url: str = "https://example.org/a") -> dict[str, Any]:
    return message(openid, "link", Title=title, Description=title, Url=url)


def event(openid: str, name: str, create_time: int | None = None, **fields: Any) -> dict[str, Any]:
    return {**base(openid, "event", create_time), "Event": name, **fields}


@dataclass
class Sender:
    """Posts messages to /wechat the way the WeChat platform does."""

    client: Any  # aiohttp TestClient
    mode: str = "plaintext"  # plaintext / compatible / safe
    token: str = TOKEN
    crypto: MessageCrypto = field(default_factory=lambda: MessageCrypto(TOKEN, AES_KEY, APPID))

    def signed_query(self, timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or secrets.token_hex(6)
        return {"timestamp": ts, "nonce": nonce, "signature": signature(self.token, ts, nonce), "openid": "x"}

    def encode(self, fields: dict[str, Any], query: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        xml = xml_of(fields)
        if self.mode == "plaintext":
            return xml.encode(), query
        envelope = parse_xml(self.crypto.encrypt(xml, query["nonce"], query["timestamp"]))
        body = {"ToUserName": fields["ToUserName"], "Encrypt": envelope["Encrypt"]}
        if self.mode == "compatible":  # plaintext fields travel beside the ciphertext
            body = {**fields, "Encrypt": envelope["Encrypt"]}
        query = {**query, "encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]}
        return xml_of(body).encode(), query

    async def post(self, fields: dict[str, Any], **query_overrides: str) -> Any:
        query = self.signed_query()
        body, query = self.encode(fields, query)
        query.update(query_overrides)
        return await self.client.post("/wechat", params=query, data=body)

    async def reply(self, fields: dict[str, Any]) -> str:
        """Send and return the reply text ('' for 'success'); fails on any non-200."""
        resp = await self.post(fields)
        raw = await resp.text()
        assert resp.status == 200, f"{resp.status}: {raw}"
        return self.decode(raw)

    def decode(self, raw: str) -> str:
        if raw == "success":
            return ""
        outer = parse_xml(raw)
        if self.mode != "plaintext":
            assert signature(self.token, outer["TimeStamp"], outer["Nonce"], outer["Encrypt"]) == outer["MsgSignature"]
            outer = parse_xml(self.crypto.decrypt(outer["Encrypt"]))
        assert outer["MsgType"] == "text"
        return outer["Content"]
