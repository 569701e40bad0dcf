"""The /sim page and the JSON API behind it, driven the way the page drives it: one
session per browser (cookie), deliveries handed to the app's own callback, every bad
input a 4xx JSON error."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any, AsyncIterator
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from sqlmodel import select

from bot.app import create_app
from bot.settings import CONFIG_DIR, is_loopback_host, load_settings
from bot.sim import SIM_SESSIONS, is_local_request
from bot.sim.errors import SimError
from bot.sim.sessions import Limits, SimSessions
from storage.outbox_rows import record_offline
from storage.models import Outbox
from tests.conftest import make_settings, services_of

TICKET_NUMBER = re.compile(r"\d{8}-\d{4}")
COMPLAINT = "枫林小区5栋楼下每天晚上烧烤油烟太大，窗户都不敢开"
# A valid 1×1 greyscale JPEG (JFIF), small enough to inline.
TINY_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP////////////////////////////////////////////////////////////"
    "//////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA=")
NOT_MINE = {"error": "这个身份不属于当前模拟会话：请使用本页分配的居民身份"}


async def residents(client: Any) -> list[str]:
    resp = await client.get("/sim/api/session")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["openids"]


async def new_resident(client: Any) -> str:
    resp = await client.post("/sim/api/residents")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["openid"]


async def send(client: Any, openid: str, kind: str, **fields: Any) -> dict:
    resp = await client.post("/sim/api/send", json={"openid": openid, "type": kind, **fields})
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert result["status"] == 200, result
    return result


async def outbox_rows(client: Any, after: str = "0") -> list[dict]:
    resp = await client.get("/sim/api/outbox", params={"after": after})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, Any]:
    """(status, JSON body) of an API answer."""
    assert resp.content_type == "application/json", (resp.status, await resp.text())
    return resp.status, await resp.json()


def photo_form(data: bytes = TINY_JPEG, *, field: str = "file", filename: str = "photo.jpg") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field(field, data, filename=filename, content_type="image/jpeg")
    return form


async def upload(client: Any, data: bytes = TINY_JPEG) -> dict:
    resp = await client.post("/sim/api/upload", data=photo_form(data))
    assert resp.status == 200, await resp.text()
    return await resp.json()


@contextlib.asynccontextmanager
async def another_browser(client: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """A second browser on the same server: its own cookie jar, so its own session."""
    async with aiohttp.ClientSession(base_url=client.make_url("/"), cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


# ---------------------------------------------------------------- the page

async def test_page_is_served_self_contained_and_issues_a_session_cookie(client):
    resp = await client.get("/sim")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert "民意直通车（模拟器）" in page
    for endpoint in ("/sim/api/session", "/sim/api/residents", "/sim/api/send", "/sim/api/outbox",
                     "/sim/api/upload", "/sim/api/areas"):
        assert endpoint in page
    # No internet where this runs: nothing may be loaded from elsewhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page
    cookie = resp.cookies["minyi_sim"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie.value)
    assert cookie["httponly"] is True and cookie["samesite"] == "Strict" and cookie["path"] == "/sim"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    # The cookie names the session from now on: no new one is issued.
    again = await client.get("/sim/api/session")
    assert "minyi_sim" not in again.cookies
    assert len(client.server.app[SIM_SESSIONS]) == 1


def test_page_menu_matches_config_menu():
    with open(CONFIG_DIR / "menu.toml", "rb") as fh:
        menu = tomllib.load(fh)
    page = (CONFIG_DIR.parent / "bot" / "sim" / "static" / "sim.html").read_text(encoding="utf-8")
    for button in menu["button"]:
        assert button["name"] in page
        for item in button.get("sub_button", [button]):
            if item.get("type") == "click":
                assert re.search(rf'data-key="{item["key"]}"[^>]*>[^<]*{item["name"]}<', page), item


# ---------------------------------------------------------------- the resident's flow

async def test_resident_reports_through_the_simulator(client):
    [openid] = await residents(client)
    assert openid.startswith("o-sim-")
    welcome = await send(client, openid, "subscribe")
    assert "同意" in welcome["reply"]
    assert "<Event><![CDATA[subscribe]]></Event>" in welcome["sent"]
    assert welcome["encrypted"] is True  # the test settings carry an EncodingAESKey
    assert welcome["openid"] == openid

    consented = await send(client, openid, "text", content="同意")
    assert "已同意" in consented["reply"]

    created = await send(client, openid, "text", content=COMPLAINT)
    match = TICKET_NUMBER.search(created["reply"])
    assert match, created["reply"]
    number = match.group(0)

    uploaded = await upload(client)
    assert re.fullmatch(r"sim-[0-9a-f]{16}", uploaded["media_id"])
    assert uploaded["url"] == f"/sim/media/{uploaded['media_id']}.jpg"  # relative: no request origin
    image = await client.get(uploaded["url"])
    assert image.status == 200 and image.content_type == "image/jpeg"
    assert await image.read() == TINY_JPEG

    photo = await send(client, openid, "image", media_id=uploaded["media_id"])
    assert number in photo["reply"] and "照片" in photo["reply"]
    public_url = services_of(client).settings.server.base_url
    assert f"<PicUrl><![CDATA[{public_url}/sim/media/{uploaded['media_id']}.jpg]]></PicUrl>" in photo["sent"]

    # The staff notice and the offline media download are recorded after the reply...
    db = services_of(client).db
    rows: list[Outbox] = []
    for _ in range(100):
        async with db.session() as s:
            rows = list((await s.exec(select(Outbox))).all())
        notices = [r for r in rows if r.kind == "text" and number in str((r.payload or {}).get("content"))]
        downloads = [r for r in rows if r.kind == "media" and uploaded["media_id"] in str(r.payload)]
        if notices and downloads:
            break
        await asyncio.sleep(0.1)
    assert notices and downloads, rows
    # The grid and the lead department get the new ticket, the co-departments their part.
    contents = [str((n.payload or {}).get("content")) for n in notices]
    assert all(n.openid and n.openid.startswith("o-demo-") for n in notices)
    assert any("新工单" in c for c in contents) and all("新工单" in c or c.startswith("【协办·") for c in contents)
    # ...and none of them is addressed to this session's resident: the simulator shows none.
    assert await outbox_rows(client) == []


async def test_location_at_each_grid_centre_names_that_grid(client):
    resp = await client.get("/sim/api/areas")
    assert resp.status == 200
    grids = await resp.json()
    assert grids and all({"code", "name", "lat", "lng", "places"} <= set(g) for g in grids)
    for grid in grids:
        openid = await new_resident(client)
        await send(client, openid, "subscribe")
        result = await send(client, openid, "location", lat=grid["lat"], lng=grid["lng"], label=grid["places"][0])
        assert grid["name"] in result["reply"], (grid, result["reply"])

    outside = await send(client, await new_resident(client), "location", lat=39.9087, lng=116.3975, label="区外位置")
    assert "不在本区" in outside["reply"]


async def test_menu_click_and_bad_action(client):
    [openid] = await residents(client)
    await send(client, openid, "subscribe")
    helped = await send(client, openid, "click", key="HELP")
    assert "怎么用" in helped["reply"]
    resp = await client.post("/sim/api/send", json={"openid": openid, "type": "fax"})
    assert await answer(resp) == (400, {"error": "未知的消息类型：应为 text、voice、image、location、subscribe、"
                                                 "unsubscribe、click 之一"})


# ---------------------------------------------------------------- delivery never leaves the app

async def test_a_forged_host_header_cannot_redirect_a_delivery(client, aiohttp_server):
    """The delivery goes to the app's own callback, not to the origin the Host header names."""
    hits: list[str] = []

    async def forged(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path} Host={request.headers.get('Host')}")
        return web.Response(text="<xml><Content><![CDATA[伪造的回复]]></Content></xml>",
                            content_type="application/xml")

    fake = web.Application()
    fake.router.add_route("*", "/{tail:.*}", forged)
    listener = await aiohttp_server(fake)
    forged_host = f"127.0.0.1:{listener.port}"
    # Control: the client really sends the Host header it is given.
    async with aiohttp.ClientSession() as http, http.get(listener.make_url("/probe"),
                                                         headers={"Host": "elsewhere:1"}):
        pass
    assert hits == ["GET /probe Host=elsewhere:1"]
    hits.clear()

    [openid] = await residents(client)
    resp = await client.post("/sim/api/send", json={"openid": openid, "type": "subscribe"},
                             headers={"Host": forged_host})
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert result["status"] == 200 and "同意" in result["reply"] and "伪造" not in result["reply"]
    consented = await client.post("/sim/api/send", json={"openid": openid, "content": "同意"},
                                  headers={"Host": forged_host})
    assert "已同意" in (await consented.json())["reply"]
    assert hits == []


# ---------------------------------------------------------------- sessions

async def test_each_session_sees_only_its_own_outbox_rows(client):
    [mine] = await residents(client)
    second = await new_resident(client)
    async with another_browser(client) as other:
        resp = await other.get("/sim/api/session")
        [theirs] = (await resp.json())["openids"]
        assert theirs not in (mine, second)
        async with services_of(client).db.transaction() as s:
            for openid, text in ((mine, "给我的"), (second, "给我第二位居民的"), (theirs, "给别人的"),
                                 ("o-demo-gridworker", "新工单 13800138000"), (None, "菜单")):
                record_offline(s, "text", {"content": text}, openid=openid)
        assert [(r["openid"], r["content"]) for r in await outbox_rows(client)] == [
            (mine, "给我的"), (second, "给我第二位居民的")]
        resp = await other.get("/sim/api/outbox", params={"after": "0"})
        assert [(r["openid"], r["content"]) for r in await resp.json()] == [(theirs, "给别人的")]
        # A browser without a cookie is a new session: nothing to see.
        async with another_browser(client) as stranger:
            resp = await stranger.get("/sim/api/outbox?after=0")
            assert await answer(resp) == (200, [])
    first = (await outbox_rows(client))[0]["id"]
    assert [r["content"] for r in await outbox_rows(client, after=str(first))] == ["给我第二位居民的"]


async def test_acting_as_another_sessions_resident_is_forbidden(client):
    [mine] = await residents(client)
    photo = await upload(client)
    async with another_browser(client) as other:
        [theirs] = (await (await other.get("/sim/api/session")).json())["openids"]
        resp = await other.post("/sim/api/send", json={"openid": mine, "type": "text", "content": "冒充"})
        assert await answer(resp) == (403, NOT_MINE)
        resp = await other.post("/sim/api/send", json={"openid": "o-demo-gridworker", "type": "subscribe"})
        assert await answer(resp) == (403, NOT_MINE)
        # Another session's photo can be neither sent nor seen.
        resp = await other.post("/sim/api/send", json={"openid": theirs, "type": "image",
                                                       "media_id": photo["media_id"]})
        assert await answer(resp) == (403, {"error": "这张照片不是当前模拟会话上传的：请先上传照片"})
        resp = await other.get(photo["url"])
        assert await answer(resp) == (404, {"error": "没有这张照片"})
    resp = await client.post("/sim/api/send", json={"openid": "o-sim-resident", "type": "subscribe"})
    assert await answer(resp) == (403, NOT_MINE)
    # Without an openid the session's first resident speaks.
    resp = await client.post("/sim/api/send", json={"type": "subscribe"})
    assert resp.status == 200 and (await resp.json())["openid"] == mine


async def test_residents_per_session_are_capped(client):
    [first] = await residents(client)
    created = [await new_resident(client) for _ in range(19)]
    assert await residents(client) == [first, *created] and len(set(created)) == 19
    resp = await client.post("/sim/api/residents")
    assert await answer(resp) == (429, {"error": "每个模拟会话最多 20 位居民，请继续使用已有身份"})


def test_sessions_are_an_lru_whose_evicted_photos_are_deleted(tmp_path: Path):
    sessions = SimSessions(tmp_path, Limits(sessions=2))
    first, _ = sessions.resolve(None)
    _, photo = sessions.store_photo(first, TINY_JPEG, "jpg")
    assert (tmp_path / photo.name).read_bytes() == TINY_JPEG
    second, _ = sessions.resolve(None)
    assert sessions.resolve(first.id) == (first, False)  # now the most recent
    sessions.resolve(None)  # evicts `second`
    assert len(sessions) == 2 and sessions.resolve(first.id) == (first, False)
    again, fresh = sessions.resolve(second.id)
    assert fresh and again.id != second.id
    assert sessions.resolve("x" * 43)[1] and sessions.resolve("bad cookie")[1]
    assert not (tmp_path / photo.name).exists()  # `first` was evicted by the last two
    sessions.close()
    assert len(sessions) == 0


# ---------------------------------------------------------------- bad input: 4xx JSON, never 5xx

BAD_SENDS: list[tuple[bytes, int, str]] = [
    (b"", 400, "请求体为空：应为一个 JSON 对象"),
    (b"not json", 400, "请求体不是合法的 JSON"),
    (b"\xff\xfe{}", 400, "请求体不是合法的 JSON"),
    (b"[" * 20000, 400, "请求体不是合法的 JSON"),
    (b'[{"type": "text"}]', 400, "请求体应为一个 JSON 对象"),
    (b'"text"', 400, "请求体应为一个 JSON 对象"),
    (b"42", 400, "请求体应为一个 JSON 对象"),
    (b"null", 400, "请求体应为一个 JSON 对象"),
    (b'{"type": "location", "lat": "abc", "lng": 121.47}', 400, "字段 lat 应为数字"),
    (b'{"type": "location", "lat": 31.23, "lng": true}', 400, "字段 lng 应为数字"),
    (b'{"type": "location", "lat": 31.23}', 400, "字段 lng 应为数字"),
    (b'{"type": "location", "lat": NaN, "lng": 121.47}', 400, "请求体不是合法的 JSON"),
    (b'{"type": "location", "lat": 31.23, "lng": -Infinity}', 400, "请求体不是合法的 JSON"),
    (b'{"type": "location", "lat": 1e999, "lng": 121.47}', 400, "字段 lat 应在 -90 到 90 之间"),
    (b'{"type": "location", "lat": 31.23, "lng": 181}', 400, "字段 lng 应在 -180 到 180 之间"),
    (b'{"type": "text", "content": "\\ud800"}', 400, "字段 content 含有无效的字符（孤立的代理项）"),
    (b'{"type": "location", "lat": 31.23, "lng": 121.47, "label": "\\udfff"}', 400,
     "字段 label 含有无效的字符（孤立的代理项）"),
    (b'{"type": "fax"}', 400, "未知的消息类型：应为 text、voice、image、location、subscribe、unsubscribe、click 之一"),
    (b'{"type": 5}', 400, "未知的消息类型：应为 text、voice、image、location、subscribe、unsubscribe、click 之一"),
    (json.dumps({"type": "text", "content": "长" * 2001}).encode(), 400, "字段 content 太长：最多 2000 个字符"),
    (json.dumps({"type": "voice", "content": "长" * 301}).encode(), 400, "字段 content 太长：最多 300 个字符"),
    (b'{"type": "text"}', 400, "缺少字段 content"),
    (b'{"type": "text", "content": "   "}', 400, "字段 content 不能为空"),
    (b'{"type": "text", "content": 123}', 400, "字段 content 应为字符串"),
    (b'{"type": "click"}', 400, "缺少字段 key"),
    (json.dumps({"type": "click", "key": "K" * 129}).encode(), 400, "字段 key 太长：最多 128 个字符"),
    (b'{"type": "image"}', 400, "缺少字段 media_id"),
    (json.dumps({"type": "image", "media_id": "m" * 3000}).encode(), 400, "字段 media_id 太长：最多 64 个字符"),
    (b'{"type": "subscribe", "scene": {"a": 1}}', 400, "字段 scene 应为字符串"),
    (json.dumps({"type": "text", "content": "x", "openid": "o" * 65}).encode(), 400, "字段 openid 太长：最多 64 个字符"),
    (b'{"type": "text", "content": "x", "openid": 7}', 400, "字段 openid 应为字符串"),
    (b'{"type": "text", "content": "' + b"x" * 40000 + b'"}', 413, "请求体太大：最多 32 KB"),
]


async def test_bad_send_inputs_are_4xx_json_errors(client):
    await residents(client)
    got = []
    for body, _, _ in BAD_SENDS:
        resp = await client.post("/sim/api/send", data=body, headers={"Content-Type": "application/json"})
        got.append(await answer(resp))
    assert got == [(status, {"error": error}) for _, status, error in BAD_SENDS]


async def test_the_longest_text_and_an_emoji_pass(client):
    [openid] = await residents(client)
    longest = await send(client, openid, "text", content="长" * 2000)
    assert "长" * 2000 in longest["sent"]
    resp = await client.post("/sim/api/send", data=b'{"content": "\\ud83d\\ude00 \xe6\xb5\x8b"}',
                             headers={"Content-Type": "application/json"})
    assert resp.status == 200 and "\U0001f600 测" in (await resp.json())["sent"]


async def test_bad_outbox_cursors_are_400(client):
    await residents(client)
    error = (400, {"error": "参数 after 应为 0 到 2147483647 之间的整数"})
    for after in ("abc", "-1", "1.5", " 1", "0x10", "１２", "2147483648", "9" * 19, "9" * 3000):
        assert await answer(await client.get("/sim/api/outbox", params={"after": after})) == error, after
    for after in ("", "0", "0000000001", "2147483647"):
        assert await answer(await client.get("/sim/api/outbox", params={"after": after})) == (200, []), after


async def test_bad_uploads_are_4xx_json_errors(client):
    multipart = "multipart/form-data; boundary=B"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"data": b"{}", "headers": {"Content-Type": "application/json"}}, 400, "应以 multipart/form-data 上传照片"),
        ({"data": b"--B\r\n\r\n--B--\r\n", "headers": {"Content-Type": "multipart/form-data"}}, 400,
         "上传的内容不是合法的 multipart/form-data"),
        ({"data": b"garbage", "headers": {"Content-Type": multipart}}, 400, "上传的内容不是合法的 multipart/form-data"),
        ({"data": b"", "headers": {"Content-Type": multipart}}, 400, "上传的内容不是合法的 multipart/form-data"),
        ({"data": photo_form(field="photo")}, 400, "应以字段 file 上传照片"),
        ({"data": photo_form(filename="相" * 256)}, 400, "文件名太长：最多 255 个字符"),
        # Past the multipart header limit (8,190 bytes; 相 is sent as filename*=utf-8''%E7%9B%B8).
        ({"data": photo_form(filename="相" * 3000)}, 400, "上传的内容不是合法的 multipart/form-data"),
        ({"data": photo_form(filename="p" * 3000)}, 400, "文件名太长：最多 255 个字符"),
        ({"data": photo_form(filename="p" * 10000)}, 400, "上传的内容不是合法的 multipart/form-data"),
        ({"data": photo_form(b"")}, 400, "照片是空的"),
        ({"data": photo_form(b"<html><script>alert(1)</script></html>")}, 415,
         "只能上传 JPEG、PNG、GIF 或 WebP 格式的照片"),
        ({"data": photo_form(TINY_JPEG + b"\0" * (5 * 1024 * 1024))}, 413, "照片太大：最多 5 MB"),
        # A body that does not say its length is cut off while it is read.
        ({"data": chunked(TINY_JPEG + b"\0" * (5 * 1024 * 1024)), "headers": {"Content-Type": multipart}}, 413,
         "照片太大：最多 5 MB"),
    ]
    got = []
    for kwargs, _, _ in cases:
        client.session.cookie_jar.clear()  # each case in a new session: the rate limit is not what is tested
        got.append(await answer(await client.post("/sim/api/upload", **kwargs)))
    assert got == [(status, {"error": error}) for _, status, error in cases]
    largest = await upload(client, TINY_JPEG + b"\0" * (5 * 1024 * 1024 - len(TINY_JPEG)))
    assert largest["media_id"].startswith("sim-")
    for name in ("m" * 3000, "..%2Fminyi.db", "sim-0123456789abcdef.jpg", largest["media_id"] + ".png"):
        assert await answer(await client.get("/sim/media/" + name)) == (404, {"error": "没有这张照片"}), name


def chunked(photo: bytes) -> Any:
    """A multipart body with boundary B sent without a Content-Length."""
    async def body() -> AsyncIterator[bytes]:
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n\r\n'
        for start in range(0, len(photo), 1 << 20):
            yield photo[start:start + (1 << 20)]
        yield b"\r\n--B--\r\n"
    return body()


async def test_uploads_are_rate_limited_per_session(client):
    for _ in range(10):
        await upload(client)
    resp = await client.post("/sim/api/upload", data=photo_form())
    assert await answer(resp) == (429, {"error": "上传太频繁：每分钟最多 10 张照片，请稍后再试"})
    async with another_browser(client) as other:
        resp = await other.post("/sim/api/upload", data=photo_form())
        assert resp.status == 200


def test_the_upload_rate_window_is_one_minute(tmp_path: Path):
    sessions = SimSessions(tmp_path)
    session, _ = sessions.resolve(None)
    for second in range(10):
        sessions.count_upload(session, now=1000.0 + second)
    with pytest.raises(SimError) as refused:
        sessions.count_upload(session, now=1059.9)
    assert refused.value.status == 429
    sessions.count_upload(session, now=1060.0)  # the first attempt is a minute old


async def test_stored_photos_per_session_are_capped(client):
    client.server.app[SIM_SESSIONS].limits.stored_bytes = 3 * len(TINY_JPEG)
    for _ in range(3):
        await upload(client)
    resp = await client.post("/sim/api/upload", data=photo_form())
    assert await answer(resp) == (413, {"error": f"本会话上传的照片总量已达上限（{3 * len(TINY_JPEG)} 字节）"})


# ---------------------------------------------------------------- when /sim is served

def test_loopback_hosts():
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LocalHost", "::ffff:127.0.0.1"):
        assert is_loopback_host(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "10.0.0.1", "example.com", "localhost.example.com",
                 "127.0.0.1.example.com", "[::]"):
        assert not is_loopback_host(host), host


def test_simulator_setting_auto_means_offline_and_loopback():
    assert load_settings({}).simulator_enabled  # the defaults: offline, 127.0.0.1 (./dev serve)
    assert load_settings({"MINYI_SERVER_HOST": "localhost"}).simulator_enabled
    assert load_settings({"MINYI_SERVER_HOST": "::1"}).simulator_enabled
    assert not load_settings({"MINYI_SERVER_HOST": "0.0.0.0"}).simulator_enabled
    assert not load_settings({"MINYI_WECHAT_SECRET": "s3cret"}).simulator_enabled
    forced = {"MINYI_SIMULATOR_ENABLED": "true", "MINYI_WECHAT_SECRET": "s3cret", "MINYI_SERVER_HOST": "0.0.0.0"}
    assert load_settings(forced).simulator_enabled and not load_settings(forced).simulator_auto
    assert not load_settings({"MINYI_SIMULATOR_ENABLED": "false"}).simulator_enabled


async def test_sim_is_served_only_where_the_settings_say(aiohttp_client, tmp_path, database_url):
    cases = [
        ({"simulator": {"enabled": "auto"}}, 200),  # offline and loopback
        ({"simulator": {"enabled": "auto"}, "server": {"host": "0.0.0.0"}}, 404),
        ({"simulator": {"enabled": "auto"}, "wechat": {"secret": "s3cret"}}, 404),
        ({"simulator": {"enabled": "true"}, "wechat": {"secret": "s3cret"}, "server": {"host": "0.0.0.0"}}, 200),
        ({"simulator": {"enabled": "false"}}, 404),
    ]
    got = []
    for sections, _ in cases:
        client = await aiohttp_client(create_app(make_settings(tmp_path, database_url, **sections)))
        statuses = {(await client.get(path)).status for path in ("/sim", "/sim/api/session", "/sim/api/areas")}
        got.append(statuses)
        await client.close()
    assert got == [{status} for _, status in cases]


async def test_auto_mode_answers_only_requests_naming_a_loopback_host(aiohttp_client, tmp_path, database_url):
    client = await aiohttp_client(create_app(make_settings(tmp_path, database_url, simulator={"enabled": "auto"})))
    for host in ("evil.example", "evil.example:8080", "192.168.1.5:8080", "[::]:8080", ""):
        resp = await client.get("/sim", headers={"Host": host})
        assert resp.status == 404, host
        assert "minyi_sim" not in resp.cookies
    for host in ("localhost:8080", "127.0.0.1", "[::1]:8080"):
        assert (await client.get("/sim/api/session", headers={"Host": host})).status == 200, host


def test_auto_mode_needs_a_loopback_socket():
    def request(sockname: Any, host: str = "127.0.0.1:8080") -> web.Request:
        transport = mock.Mock()
        transport.get_extra_info.return_value = sockname
        return make_mocked_request("GET", "/sim", headers={"Host": host}, transport=transport)

    assert is_local_request(request(("127.0.0.1", 8080)))
    assert is_local_request(request(("::1", 8080, 0, 0)))
    assert is_local_request(request("/run/minyi.sock"))
    # Bound to 0.0.0.0 (`minyi serve --host 0.0.0.0`) and reached from the network.
    assert not is_local_request(request(("192.168.1.5", 8080)))
    assert not is_local_request(request(None))
    assert not is_local_request(request(("127.0.0.1", 8080), host="evil.example"))
