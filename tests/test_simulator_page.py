"""The /sim page and the JSON API behind it, driven the way the page drives it."""

from __future__ import annotations

import asyncio
import base64
import re
import tomllib
import uuid

import aiohttp
from yarl import URL

from bot.settings import CONFIG_DIR

TICKET_NUMBER = re.compile(r"\d{8}-\d{4}")
COMPLAINT = "枫林小区5栋楼下每天晚上烧烤油烟太大，窗户都不敢开"
# A valid 1×1 greyscale JPEG (JFIF), small enough to inline.
TINY_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP////////////////////////////////////////////////////////////"
    "//////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA=")


def sim_openid() -> str:
    return "o-sim-" + uuid.uuid4().hex[:8]


async def send(client, openid: str, kind: str, **fields) -> dict:  # type: ignore[no-untyped-def]
    resp = await client.post("/sim/api/send", json={"openid": openid, "type": kind, **fields})
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert result["status"] == 200, result
    return result


async def outbox_rows(client, **query: str) -> list[dict]:  # type: ignore[no-untyped-def]
    resp = await client.get("/sim/api/outbox", params={"after": "0", **query})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_page_is_served_self_contained(client):
    resp = await client.get("/sim")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert "民意直通车（模拟器）" in page
    for endpoint in ("/sim/api/send", "/sim/api/outbox", "/sim/api/upload", "/sim/api/areas"):
        assert endpoint in page
    # No internet where this runs: nothing may be loaded from elsewhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page


def test_page_menu_matches_config_menu():
    with open(CONFIG_DIR / "menu.toml", "rb") as fh:
        menu = tomllib.load(fh)
    page = (CONFIG_DIR.parent / "bot" / "sim" / "static" / "sim.html").read_text(encoding="utf-8")
    for button in menu["button"]:
        assert button["name"] in page
        for item in button.get("sub_button", [button]):
            if item.get("type") == "click":
                assert re.search(rf'data-key="{item["key"]}"[^>]*>[^<]*{item["name"]}<', page), item


async def test_resident_reports_through_the_simulator(client):
    openid = sim_openid()
    welcome = await send(client, openid, "subscribe")
    assert "同意" in welcome["reply"]
    assert "<Event><![CDATA[subscribe]]></Event>" in welcome["sent"]
    assert welcome["encrypted"] is True  # the test settings carry an EncodingAESKey

    consented = await send(client, openid, "text", content="同意")
    assert "已同意" in consented["reply"]

    created = await send(client, openid, "text", content=COMPLAINT)
    match = TICKET_NUMBER.search(created["reply"])
    assert match, created["reply"]
    number = match.group(0)

    form = aiohttp.FormData()
    form.add_field("file", TINY_JPEG, filename="photo.jpg", content_type="image/jpeg")
    resp = await client.post("/sim/api/upload", data=form)
    assert resp.status == 200, await resp.text()
    uploaded = await resp.json()
    assert uploaded["media_id"].startswith("sim-")
    image = await client.get(URL(uploaded["url"]).path)
    assert image.status == 200
    assert await image.read() == TINY_JPEG

    photo = await send(client, openid, "image", media_id=uploaded["media_id"], url=uploaded["url"])
    assert number in photo["reply"] and "照片" in photo["reply"]

    # Delivery happens after the reply: poll as the page does.
    notices: list[dict] = []
    downloads: list[dict] = []
    for _ in range(100):
        rows = await outbox_rows(client)
        notices = [r for r in rows if r["kind"] == "text" and number in str(r["content"])
                   and r["openid"] != openid and r["status"] == "offline"]
        # Offline mode records the photo download it did not make.
        downloads = [r for r in rows if r["kind"] == "media" and r["status"] == "offline"
                     and uploaded["media_id"] in str(r["content"])]
        if notices and downloads:
            break
        await asyncio.sleep(0.1)
    assert notices and downloads, rows
    assert all(n["openid"].startswith("o-demo-") and "新工单" in n["content"] for n in notices)

    newest = max(r["id"] for r in rows)
    assert all(r["id"] > newest for r in await outbox_rows(client, after=str(newest)))
    staff = notices[0]["openid"]
    mine = await outbox_rows(client, openid=staff, mine="1")
    assert mine and all(r["openid"] == staff for r in mine)

async def test_location_at_each_grid_centre_names_that_grid(client):
    resp = await client.get("/sim/api/areas")
    assert resp.status == 200
    grids = await resp.json()
    assert grids and all({"code", "name", "lat", "lng", "places"} <= set(g) for g in grids)
    for grid in grids:
        openid = sim_openid()
        await send(client, openid, "subscribe")
        result = await send(client, openid, "location", lat=grid["lat"], lng=grid["lng"], label=grid["places"][0])
        assert grid["name"] in result["reply"], (grid, result["reply"])

    outside = await send(client, sim_openid(), "location", lat=39.9087, lng=116.3975, label="区外位置")
    assert "不在本区" in outside["reply"]


async def test_menu_click_and_bad_action(client):
    openid = sim_openid()
    await send(client, openid, "subscribe")
    helped = await send(client, openid, "click", key="HELP")
    assert "怎么用" in helped["reply"]
    resp = await client.post("/sim/api/send", json={"openid": openid, "type": "fax"})
    assert resp.status == 400
