"""Property-based fuzz of the WeChat callback: whatever a validly signed delivery holds
— random field dicts (known and unknown MsgTypes and Events, any non-surrogate text
including control characters, huge numbers, repeated and nested elements, random
lengths), random XML fragments, hostile markup spliced into messages — the answer is
200, 400, 403 or 413, never a 5xx; and a 200 is 'success' or a reply that parses.

Runs in plaintext and safe (AES) mode on both backends, one app for many examples.
MINYI_FUZZ_EXAMPLES sets the examples per mode and backend (default 150; the benchmark
tests/bench/fuzz_callback.py runs 10,000). With MINYI_FUZZ_REPORT=path, the counts of
statuses are written there as JSON lines, one per mode and backend.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.wechat.signing import signature
from tests import wechat

EXAMPLES = int(os.environ.get("MINYI_FUZZ_EXAMPLES", "150"))
ALLOWED = {200, 400, 403, 413}

OPENIDS = [f"o-fuzz-resident-{i}" for i in range(5)]
KNOWN_TYPES = ["text", "image", "voice", "video", "shortvideo", "location", "link", "event", "miniprogrampage",
               "file", "TEXT", " Event "]
KNOWN_EVENTS = ["subscribe", "unsubscribe", "SCAN", "LOCATION", "CLICK", "VIEW", "TEMPLATESENDJOBFINISH",
                "subscribe_msg_popup_event", "subscribe_msg_change_event", "subscribe_msg_sent_event",
                "view_miniprogram", "scancode_push", "MASSSENDJOBFINISH"]
FIELD_NAMES = ["Content", "MsgId", "MsgID", "Event", "EventKey", "Ticket", "MediaId", "ThumbMediaId", "PicUrl",
               "Format", "Recognition", "Location_X", "Location_Y", "Scale", "Label", "Title", "Description",
               "Url", "Latitude", "Longitude", "Precision", "Status", "SubscribeMsgPopupEvent",
               "SubscribeMsgChangeEvent", "SubscribeMsgSentEvent", "List", "TemplateId", "SubscribeStatusString",
               "PopupScene", "ErrorCode", "ErrorStatus", "Encrypt", "ToUserName", "FromUserName", "CreateTime",
               "MsgType"]
HEADERS = ["ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId"]
BODY_FIELDS = [name for name in FIELD_NAMES if name not in HEADERS]
# What residents type, the dialogs' commands and choices, and the inputs that once broke them.
WORDS = ["绑定", "绑定网格", "同意", "1", "１", "2", "4", "²", "⑤", "٣", "0", "-1", "9" * 5000, "查询", "取消", "提交",
         "帮助", "?", "隐私", "我的数据", "删除我的数据", "20260101-0001", "１２３", "accept", "reject",
         "幸福里小区3号楼的电梯坏了三天了，老人下不了楼", "楼道里着火了，有人被困在三楼", "枫林路的路灯坏了一整排",
         "REPORT", "EMERGENCY", "MY_TICKETS", "BIND_GRID", "HELP", "PRIVACY", "qrscene_grid_420199002001001",
         "grid_420199001002002", "30.59", "114.31", "nan", "inf", "-1e309", "1e400", "]]>", "<xml>"]
MARKUP = ["<xml>", "</xml>", "<ToUserName>", "</ToUserName>", "<FromUserName>", "</FromUserName>", "<MsgType>",
          "</MsgType>", "<Content>", "</Content>", "<List>", "</List>", "<![CDATA[", "]]>", "<!DOCTYPE xml [",
          "<!ENTITY a 'b'>", "<!ENTITY e SYSTEM 'file:///etc/passwd'>", "]>", "&a;", "&e;", "&amp;", "&lt;",
          "&#0;", "&#x1F;", "&#65;", "&#xD800;", "<?xml version='1.0'?>", "<?pi x?>", "<!-- c -->", "<!--",
          "\0", "\x01", "\x1f", "\ufffe", "<", ">", "&", "'", '"', "<a b='c'>", "</a>", "<a/>", "<MsgId>1</MsgId>",
          "<CreateTime>1</CreateTime>", "<MsgType>text</MsgType>", "<Event>subscribe</Event>", "<\0!DOCTYPE x>",
          "<!DOC\0TYPE x>", "<\0!-- c -->", "<\x01?pi?>"]

any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # control characters included
long_text = st.integers(min_value=30, max_value=3000).flatmap(
    lambda n: st.sampled_from("x枫9_\x01 ").map(lambda c: c * n))
numbers = st.one_of(st.integers(min_value=-(10**30), max_value=10**30).map(str),
                    st.integers(min_value=0, max_value=2**64 + 10).map(str),
                    st.integers(min_value=19, max_value=5000).map(lambda n: "9" * n),
                    st.floats(allow_nan=True, allow_infinity=True).map(str))
scalar = st.one_of(st.sampled_from(WORDS), any_text, numbers, long_text)
xml_name = st.one_of(st.sampled_from(FIELD_NAMES), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True))
# A list is an element repeated; a dict, nested elements.
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, min_size=2, max_size=4),
                                                     st.dictionaries(xml_name, inner, max_size=4)), max_leaves=10)


@dataclass(frozen=True)
class Now:
    """CreateTime filled in when the body is sent (a strategy must not read the clock)."""


def text_node(text: str, style: str) -> str:
    if style == "cdata":
        return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def element(name: str, content: Any, style: str) -> str:
    if isinstance(content, list):
        return "".join(element(name, item, style) for item in content)
    if isinstance(content, dict):
        return f"<{name}>" + "".join(element(k, v, style) for k, v in content.items()) + f"</{name}>"
    if isinstance(content, Now):
        content = str(int(time.time()))
    return f"<{name}>{text_node(str(content), style)}</{name}>"


def to_xml(fields: dict[str, Any], style: str) -> str:
    return "<xml>" + "".join(element(k, v, style) for k, v in fields.items()) + "</xml>"


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` seven times in eight, so most messages get past the headers to a handler."""
    return st.integers(min_value=0, max_value=7).flatmap(lambda n: odd if n == 7 else usual)


@st.composite
def field_dicts(draw: st.DrawFn) -> dict[str, Any]:
    msg_type = draw(mostly(st.sampled_from(KNOWN_TYPES), scalar))
    fields: dict[str, Any] = {
        "ToUserName": draw(mostly(st.just(wechat.ACCOUNT), scalar)),
        "FromUserName": draw(mostly(st.sampled_from(OPENIDS), st.one_of(scalar, value))),
        "CreateTime": draw(mostly(st.just(Now()), st.one_of(numbers, value))),
        "MsgType": msg_type,
    }
    if isinstance(msg_type, str) and msg_type.strip().lower() == "event":
        fields["Event"] = draw(mostly(st.sampled_from(KNOWN_EVENTS), st.one_of(scalar, value)))
        fields["EventKey"] = draw(mostly(st.sampled_from(WORDS), st.one_of(scalar, value)))
    else:
        fields["MsgId"] = draw(mostly(st.integers(min_value=1, max_value=2**64 - 1).map(str), st.one_of(numbers, value)))
        fields["Content"] = draw(mostly(st.one_of(st.sampled_from(WORDS), any_text), st.one_of(scalar, value)))
    fields.update(draw(st.dictionaries(st.sampled_from(BODY_FIELDS), mostly(scalar, value), max_size=4)))
    fields.update(draw(st.dictionaries(xml_name, value, max_size=2)))
    for name in draw(mostly(st.just([]), st.lists(st.sampled_from(HEADERS), min_size=1, max_size=2))):
        fields.pop(name, None)
    return fields


@dataclass(frozen=True)
class Body:
    """A body to deliver; shown shortened when Hypothesis reports a failing one."""

    data: str | bytes

    def __repr__(self) -> str:
        if len(self.data) <= 600:
            return f"Body({self.data!r})"
        return f"Body({self.data[:400]!r} … {len(self.data)} in all … {self.data[-150:]!r})"


@st.composite
def bodies(draw: st.DrawFn) -> Body:
    return Body(draw(raw_bodies()))


@st.composite
def raw_bodies(draw: st.DrawFn) -> str | bytes:
    style = draw(st.sampled_from(["cdata", "escaped"]))
    kind = draw(st.sampled_from(["fields"] * 6 + ["fragments", "spliced", "oversized", "bytes"]))
    if kind == "fragments":
        return "".join(draw(st.lists(st.one_of(st.sampled_from(MARKUP), any_text), max_size=30)))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    xml = to_xml(draw(field_dicts()), style)
    if kind == "spliced":  # hostile markup anywhere inside a message
        at = draw(st.integers(min_value=0, max_value=len(xml)))
        return xml[:at] + "".join(draw(st.lists(st.sampled_from(MARKUP), min_size=1, max_size=4))) + xml[at:]
    if kind == "oversized":  # around the 64 KiB limit
        padding = draw(st.integers(min_value=20_000, max_value=24_000))
        return xml.replace("<xml>", "<xml><Content>" + "投" * padding + "</Content>", 1)
    return xml


@pytest.fixture(params=["plaintext", "safe"])
def fuzz_mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tally(database_url: str, fuzz_mode: str) -> Iterator[Counter[str]]:
    """Statuses seen by one test run (and 'replies': 200s that were not a bare 'success');
    written to MINYI_FUZZ_REPORT when set."""
    counts: Counter[str] = Counter()
    yield counts
    report = os.environ.get("MINYI_FUZZ_REPORT")
    if report:
        backend = database_url.split(":", 1)[0].split("+", 1)[0]
        with open(report, "a", encoding="utf-8") as out:
            replies = counts.pop("replies", 0)
            out.write(json.dumps({"backend": backend, "mode": fuzz_mode, "statuses": dict(counts),
                                  "replies": replies}) + "\n")


async def deliver(sender: wechat.Sender, body: str | bytes) -> tuple[int, str]:
    query = sender.signed_query()
    if sender.mode == "plaintext":
        data = body if isinstance(body, bytes) else body.encode("utf-8")
    else:
        xml = body if isinstance(body, str) else body.decode("utf-8", "replace")
        envelope = wechat.parse_xml(sender.crypto.encrypt(xml, query["nonce"], query["timestamp"]))
        data = wechat.xml_of({"ToUserName": wechat.ACCOUNT, "Encrypt": envelope["Encrypt"]}).encode()
        query = {**query, "encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]}
    resp = await sender.client.post("/wechat", params=query, data=data)
    return resp.status, await resp.text()


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(body=bodies())
async def test_no_signed_body_gets_a_5xx(client: Any, fuzz_mode: str, tally: Counter[str], body: Body) -> None:
    sender = wechat.Sender(client, mode=fuzz_mode)
    status, text = await deliver(sender, body.data)
    tally[str(status)] += 1
    assert status in ALLOWED, (status, text[:300])
    if status == 200 and text != "success":
        assert isinstance(sender.decode(text), str)  # a reply that parses (and, in safe mode, verifies)
        tally["replies"] += 1


@settings(max_examples=max(EXAMPLES // 10, 10), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(encrypt=st.one_of(any_text, st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
                                           max_size=400)))
async def test_a_safe_mode_envelope_that_does_not_decrypt_is_400(client: Any, encrypt: str) -> None:
    """The ciphertext itself is garbage, with a msg_signature that matches it."""
    sender = wechat.Sender(client, mode="safe")
    query = sender.signed_query()
    body = wechat.xml_of({"ToUserName": wechat.ACCOUNT, "Encrypt": encrypt}).encode()
    clean = wechat.parse_xml(body).get("Encrypt", "")  # what the server reads back
    query = {**query, "encrypt_type": "aes",
             "msg_signature": signature(wechat.TOKEN, query["timestamp"], query["nonce"], clean)}
    resp = await client.post("/wechat", params=query, data=body)
    assert resp.status == 400, await resp.text()
