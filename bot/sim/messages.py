"""What the page sends, checked field by field, and the XML WeChat would deliver for it.

Everything the page (or anyone) posts is untrusted: each bad input is a SimError (4xx)
with a Chinese message, never an exception the server answers with a 500.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from bot.sim.errors import SimError
from bot.wechat.xmlsafe import cdata

ACCOUNT = "gh_minyi_sim"
MAX_BODY = 32 * 1024  # a JSON request to /sim/api/send
# A text report is a few sentences. 2,000 characters is about what WeChat lets a resident
# send as one text message (its own text limits are around 2,048), and even at 4 bytes a
# character, encrypted and base64-encoded, it stays far below server.max_body_bytes.
MAX_CONTENT = 2000
MAX_RECOGNITION = 300  # a voice message lasts at most 60 s (bot/wechat/inbound.py cuts here)
MAX_LABEL = 200  # ticket.address
MAX_KEY = 128  # WeChat's limit for a menu key
MAX_SCENE = 64
MAX_ID = 64  # openid and media id
KINDS = ("text", "voice", "image", "location", "subscribe", "unsubscribe", "click")


@dataclass(frozen=True)
class Action:
    """One checked simulator action."""

    kind: str
    openid: str | None  # None: the session's first resident
    fields: dict[str, Any] = field(default_factory=dict)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object (NaN and Infinity are not JSON)."""
    if not raw.strip():
        raise SimError(400, "请求体为空：应为一个 JSON 对象")
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SimError(400, "请求体不是合法的 JSON") from None
    if not isinstance(value, dict):
        raise SimError(400, "请求体应为一个 JSON 对象")
    return value


def text_field(form: dict[str, Any], name: str, limit: int, *, required: bool = False) -> str:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise SimError(400, f"缺少字段 {name}")
        return ""
    if not isinstance(value, str):
        raise SimError(400, f"字段 {name} 应为字符串")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SimError(400, f"字段 {name} 含有无效的字符（孤立的代理项）") from None
    if len(value) > limit:
        raise SimError(400, f"字段 {name} 太长：最多 {limit} 个字符")
    if required and not value.strip():
        raise SimError(400, f"字段 {name} 不能为空")
    return value


def number_field(form: dict[str, Any], name: str, low: float, high: float) -> float:
    value = form.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SimError(400, f"字段 {name} 应为数字")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise SimError(400, f"字段 {name} 应在 {low:g} 到 {high:g} 之间")
    return number


def _scene(form: dict[str, Any]) -> str:
    value = form.get("scene")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return text_field({"scene": value}, "scene", MAX_SCENE)


def _fields(kind: str, form: dict[str, Any]) -> dict[str, Any]:
    if kind == "text":
        return {"content": text_field(form, "content", MAX_CONTENT, required=True)}
    if kind == "voice":
        return {"content": text_field(form, "content", MAX_RECOGNITION)}
    if kind == "image":
        return {"media_id": text_field(form, "media_id", MAX_ID, required=True)}
    if kind == "location":
        return {"lat": number_field(form, "lat", -90, 90), "lng": number_field(form, "lng", -180, 180),
                "label": text_field(form, "label", MAX_LABEL)}
    if kind in ("subscribe", "unsubscribe"):
        return {"scene": _scene(form)}
    return {"key": text_field(form, "key", MAX_KEY, required=True)}  # click


def parse_action(form: dict[str, Any]) -> Action:
    kind = form.get("type", "text")
    if not isinstance(kind, str) or kind not in KINDS:
        raise SimError(400, "未知的消息类型：应为 " + "、".join(KINDS) + " 之一")
    openid = text_field(form, "openid", MAX_ID) or None
    return Action(kind, openid, _fields(kind, form))


def to_xml(action: Action, openid: str, msg_id: int, now: int, pic_url: str = "") -> str:
    """The XML WeChat would deliver for one checked action."""
    f = action.fields
    head = (f"<ToUserName>{cdata(ACCOUNT)}</ToUserName><FromUserName>{cdata(openid)}</FromUserName>"
            f"<CreateTime>{now}</CreateTime>")
    if action.kind in ("subscribe", "unsubscribe"):
        body = f"<MsgType>{cdata('event')}</MsgType><Event>{cdata(action.kind)}</Event>"
        if f["scene"]:
            body += f"<EventKey>{cdata('qrscene_' + f['scene'])}</EventKey>"
        return f"<xml>{head}{body}</xml>"
    if action.kind == "click":
        body = (f"<MsgType>{cdata('event')}</MsgType><Event>{cdata('CLICK')}</Event>"
                f"<EventKey>{cdata(f['key'])}</EventKey>")
        return f"<xml>{head}{body}</xml>"
    return f"<xml>{head}{_message_body(action, msg_id, pic_url)}<MsgId>{msg_id}</MsgId></xml>"


def _message_body(action: Action, msg_id: int, pic_url: str) -> str:
    f = action.fields
    if action.kind == "text":
        return f"<MsgType>{cdata('text')}</MsgType><Content>{cdata(f['content'])}</Content>"
    if action.kind == "voice":
        return (f"<MsgType>{cdata('voice')}</MsgType><MediaId>{cdata('sim-voice-' + str(msg_id))}</MediaId>"
                f"<Format>{cdata('amr')}</Format><Recognition>{cdata(f['content'])}</Recognition>")
    if action.kind == "image":
        return (f"<MsgType>{cdata('image')}</MsgType><PicUrl>{cdata(pic_url)}</PicUrl>"
                f"<MediaId>{cdata(f['media_id'])}</MediaId>")
    return (f"<MsgType>{cdata('location')}</MsgType><Location_X>{f['lat']}</Location_X>"
            f"<Location_Y>{f['lng']}</Location_Y><Scale>15</Scale><Label>{cdata(f['label'])}</Label>")
