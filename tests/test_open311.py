"""Open311 GeoReport v2, end to end: a resident's WeChat report becomes a public
service request that /open311/v2 lists, filters and shows without personal data."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import datetime, timedelta, timezone

from sqlalchemy import update
from sqlmodel import select

from bot.settings import CONFIG_DIR
from storage.models import Area, Ticket
from tests import wechat
from tests.steps import follow
from tests.conftest import services_of

NUMBER = re.compile(r"\d{8}-\d{4}")
CHINA = timezone(timedelta(hours=8))
ELEVATOR = "幸福里小区3号楼的电梯坏了三天了，老人下不了楼"
FUMES = "枫林小区楼下的烧烤摊油烟太大了，每天晚上熏得窗户都不能开"




async def report(sender: wechat.Sender, openid: str, text: str) -> str:
    """The ticket number the chat reply gives for a one-message report."""
    reply = await sender.reply(wechat.text(openid, text))
    number = NUMBER.search(reply)
    assert number, reply
    return number.group(0)


async def ticket_of(client, number: str) -> Ticket:  # type: ignore[no-untyped-def]
    async with services_of(client).db.session() as s:
        ticket = (await s.exec(select(Ticket).where(Ticket.number == number))).one()
    return ticket


async def set_status(client, number: str, status: str) -> None:  # type: ignore[no-untyped-def]
    async with services_of(client).db.transaction() as s:
        await s.exec(update(Ticket).where(Ticket.number == number).values(status=status))  # type: ignore[call-overload]


async def get_json(client, path: str, expect: int = 200, **params: str):  # type: ignore[no-untyped-def]
    resp = await client.get(path, params=params)
    raw = await resp.text()
    assert resp.status == expect, f"{resp.status}: {raw}"
    assert resp.content_type == "application/json", resp.content_type
    return raw, json.loads(raw)


async def listed(client, **params: str) -> list[str]:  # type: ignore[no-untyped-def]
    _, body = await get_json(client, "/open311/v2/requests.json", **params)
    return [item["service_request_id"] for item in body]


def local_iso(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


async def test_a_wechat_report_becomes_a_public_service_request(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    number = await report(sender, openid, ELEVATOR)
    ticket = await ticket_of(client, number)
    async with services_of(client).db.session() as s:
        grid = await s.get(Area, ticket.area_code)
    assert grid is not None and grid.name == "幸福里第一网格"

    raw_list, body = await get_json(client, "/open311/v2/requests.json")
    [item] = [r for r in body if r["service_request_id"] == number]
    assert item["status"] == "open"
    assert item["service_code"] == ticket.category == "elevator"
    assert item["service_name"] == "电梯故障"
    assert item["lat"] == round(grid.center_lat, 3) == 30.59
    assert item["long"] == round(grid.center_lng, 3) == 114.35
    assert "幸福里第一网格" in item["address"]
    for key in ("requested_datetime", "updated_datetime"):
        value = item[key]
        assert value.endswith("+08:00"), value
        moment = datetime.fromisoformat(value)
        assert abs(moment - datetime.now(timezone.utc)) < timedelta(minutes=2), value
    assert item["requested_datetime"] == local_iso(ticket.created_at)

    raw_one, one = await get_json(client, f"/open311/v2/requests/{number}.json")
    assert one == [item]

    # No personal data: not the resident's openid, not a word of what they wrote.
    for raw in (raw_list, raw_one):
        assert openid not in raw
        assert ELEVATOR not in raw
        assert "老人下不了楼" not in raw and "3号楼" not in raw


async def test_unknown_request_id_is_a_json_404(client):
    raw, body = await get_json(client, "/open311/v2/requests/20000101-9999.json", expect=404)
    assert body[0]["code"] == 404 and body[0]["description"]


async def test_services_are_the_taxonomy_categories(client):
    with open(CONFIG_DIR / "taxonomy.toml", "rb") as fh:
        taxonomy = tomllib.load(fh)
    groups = {g["code"]: g["name"] for g in taxonomy["group"]}
    expected = {c["code"]: (c["name"], groups[c["group"]]) for c in taxonomy["category"]}
    _, services = await get_json(client, "/open311/v2/services.json")
    codes = [s["service_code"] for s in services]
    assert len(codes) == len(set(codes)) == len(expected)
    assert set(codes) == set(expected)
    for service in services:
        name, group = expected[service["service_code"]]
        assert service["service_name"] == name
        assert service["group"] == group
        assert service["metadata"] is False
        assert service["type"] == "realtime"


async def test_status_and_service_code_filters(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    lift = await report(sender, openid, ELEVATOR)
    fumes = await report(sender, openid, FUMES)
    lift_code, fumes_code = (await ticket_of(client, lift)).category, (await ticket_of(client, fumes)).category
    assert lift_code != fumes_code
    await set_status(client, fumes, "resolved")

    assert set(await listed(client)) == {lift, fumes}
    assert await listed(client, status="open") == [lift]
    assert await listed(client, status="closed") == [fumes]
    _, [closed] = await get_json(client, f"/open311/v2/requests/{fumes}.json")
    assert closed["status"] == "closed" and closed["status_notes"] == "已办结"

    assert await listed(client, service_code=lift_code) == [lift]
    assert await listed(client, service_code=fumes_code) == [fumes]
    assert set(await listed(client, service_code=f"{lift_code},{fumes_code}")) == {lift, fumes}
    assert await listed(client, service_code="no_such_category") == []
    assert await listed(client, service_code=lift_code, status="closed") == []


async def test_date_filters(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    number = await report(sender, openid, ELEVATOR)
    created = (await ticket_of(client, number)).created_at
    second = created.replace(microsecond=0)  # the listing shows whole seconds
    local = second.astimezone(CHINA)

    assert await listed(client, start_date=local.isoformat()) == [number]
    assert await listed(client, start_date=(local + timedelta(seconds=1)).isoformat()) == []
    assert await listed(client, end_date=(local - timedelta(seconds=1)).isoformat()) == []
    assert await listed(client, start_date=(local - timedelta(days=1)).isoformat(),
                        end_date=(local + timedelta(days=1)).isoformat()) == [number]
    # UTC with Z, and a time without an offset, which is China time.
    utc = second.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"
    assert await listed(client, start_date=utc) == [number]
    naive_local = local.replace(tzinfo=None)
    assert await listed(client, start_date=naive_local.isoformat()) == [number]
    assert await listed(client, start_date=(naive_local + timedelta(seconds=1)).isoformat()) == []


async def test_bad_parameters_are_400_in_the_georeport_error_format(client):
    for params, names in (({"start_date": "yesterday"}, "start_date"), ({"end_date": "2026-13-45"}, "end_date"),
                          ({"start_date": "2026-01-01\x00"}, "start_date"), ({"end_date": "9" * 5000}, "end_date"),
                          ({"status": "pending"}, "status")):
        _, body = await get_json(client, "/open311/v2/requests.json", expect=400, **params)
        assert len(body) == 1 and body[0]["code"] == 400 and names in body[0]["description"], (params, body)


async def test_dates_at_the_ends_of_the_calendar_are_clamped_not_a_500(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    number = await report(sender, openid, ELEVATOR)
    assert await listed(client, start_date="0001-01-01") == [number]
    # Without a start_date the window is the 90 days before end_date: nothing so far ahead.
    assert await listed(client, end_date="9999-12-31T23:59:59-10:00") == []
    assert await listed(client, start_date="0001-01-01T00:00:00+14:00", end_date="9999-12-31T23:59:59-14:00") == [number]
    assert await listed(client, start_date="9999-12-31") == []
    assert await listed(client, end_date="0001-01-01T00:00:00+14:00") == []


async def test_odd_codes_and_request_ids_never_reach_the_database(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    number = await report(sender, openid, ELEVATOR)
    assert await listed(client, service_code="\x00") == []
    assert await listed(client, service_code="elevator,\x00,elevator") == [number]
    for request_id in ("%00", "x" * 200, number + "%00", "２０２６１２０２-０００１"):
        resp = await client.get(f"/open311/v2/requests/{request_id}.json")
        assert resp.status == 404, request_id
        assert await resp.json() == [{"code": 404, "description": "service request not found"}]
