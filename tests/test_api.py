"""The JSON API (/api/v1, bot/api) end to end: residents report through the real WeChat
callback, staff get bearer tokens from the real CLI (`minyi token create`), and every
assertion is on what the database holds afterwards (the ticket row, its events and
their actor, the audit trail) and on the exact status and error code of each answer.

The demo staff (config/demo/staff.toml): G01 is the grid worker of 枫林第一网格
(西山街道), G05 of 幸福里第一网格 (东湖街道); D01 the district dispatcher; S02 the
supervisor of 西山街道; L03 the 城管 (urban_mgmt) liaison, L05 the 生态环境 (environment)
one.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import FormData
from openpyxl import load_workbook
from sqlmodel import col, select

from bot.api.auth import INVALID, MISSING
from bot.api.routes import ROUTES
from bot.casework import desk, parts
from bot.casework.actors import Actor
from bot.casework.desk import DeskError
from bot.clock import to_local, utcnow
from storage.models import ApiToken, Attachment, Ticket, TicketEvent
from tests.conftest import services_of
from tests.steps import (actor_code, audit_entries, events_of, follow, minyi, parts_of, report, staff_member,
                         ticket_by_number)

GARBAGE = "枫林小区垃圾桶满了好几天没人清运，臭气熏天"  # garbage: 枫林第一网格 (G01), 城管
STREETLIGHT = "枫林小区路灯坏了好几盏，晚上黑漆漆的"  # 枫林第一网格
SEWER = "枫林小区门口下水道堵了，污水漫到路上"  # 枫林第一网格
WITH_PHONE = "枫林小区垃圾桶满了没人清运，有事打我电话13812345678"  # garbage: 枫林第一网格
ELEVATOR = "幸福里小区3号楼电梯坏了，老人下不了楼"  # elevator: 幸福里第一网格 (G05), another street
FUMES = "枫林小区楼下烧烤摊油烟太大，窗户都不敢开"  # 联合派单: 生态环境 (L05) leads, 城管 (L03) joins; 枫林第一网格
G01_GRID, G02_GRID = "420199001001001", "420199001001002"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)
VIEW_NOTE = "查看工单（API）"


async def token_for(capsys: pytest.CaptureFixture[str], login: str) -> str:
    """A bearer token as an admin makes one: `minyi token create --staff LOGIN` prints it."""
    code, out, err = await minyi(capsys, "token", "create", "--staff", login, "--label", "test")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("my_") and "\n" not in token, out
    return token


class Api:
    """Requests to /api/v1 with one staff member's token."""

    def __init__(self, client: Any, token: str | None = None) -> None:
        self.client, self.token = client, token

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        base = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**base, **(extra or {})}

    async def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        headers = self.headers(kwargs.pop("headers", None))
        resp = await self.client.request(method, "/api/v1" + path, headers=headers, **kwargs)
        raw = await resp.read()
        assert resp.status == expect, (resp.status, raw.decode("utf-8", "replace")[:2000])
        self.last = resp
        if resp.content_type == "application/json":
            return json.loads(raw)
        return raw

    async def get(self, path: str, expect: int = 200, **params: str) -> Any:
        return await self.call("GET", path, expect, params=params)

    async def post(self, path: str, body: Any, expect: int = 200) -> Any:
        return await self.call("POST", path, expect, json=body)


def error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


async def new_ticket(client: Any, sender: Any, openid: str, text: str, area: str = G01_GRID) -> str:
    number = await report(sender, await follow(sender, openid), text)
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.area_code) == ("dispatched", area)
    return number


async def staff_events(client: Any, number: str, login: str) -> list[tuple]:
    """(action, from, to, note) of the events this staff member made on the ticket."""
    code = await actor_code(client, login)
    return [(e.action, e.from_status, e.to_status, e.note) for e in await events_of(client, number) if e.actor == code]


async def last_audit(client: Any, target: str) -> tuple:
    entry = (await audit_entries(client, target))[-1]
    return entry.actor, entry.action, entry.target, entry.outcome, entry.reason


# ---------------------------------------------------------------- rights

async def test_a_grid_worker_sees_only_their_grid(client, sender, new_openid, cli_env, capsys):
    mine = await new_ticket(client, sender, new_openid(), GARBAGE)
    other_street = await new_ticket(client, sender, new_openid(), ELEVATOR, area="420199002001001")
    g01 = Api(client, await token_for(capsys, "G01"))
    g01_code = await actor_code(client, "G01")

    grid = await g01.get("/tickets", queue="grid")
    assert (grid["queue"], grid["total"], [t["number"] for t in grid["tickets"]]) == ("grid", 1, [mine])
    everything = await g01.get("/tickets", queue="all")
    assert [t["number"] for t in everything["tickets"]] == [mine]
    assert (await g01.get("/tickets", queue="all", search=other_street))["total"] == 0
    first = await g01.get("/tickets")  # the first queue of a grid worker: what they handle
    assert (first["queue"], first["total"]) == ("mine", 0)

    before = await ticket_by_number(client, other_street)
    refused = await g01.get(f"/tickets/{other_street}", expect=403)
    reason = f"工单 {other_street} 不在您负责的网格（枫林第一网格）"
    assert refused == error("forbidden", reason)
    assert await last_audit(client, other_street) == (g01_code, "view", other_street, "refused", reason)
    after = await ticket_by_number(client, other_street)
    assert (after.status, after.handler_id, after.updated_at) == (before.status, before.handler_id, before.updated_at)

    # An action on it is refused the same way (audited as the action tried), and changes nothing.
    assert await g01.post(f"/tickets/{other_street}/actions", {"action": "accept"}, expect=403) == error("forbidden", reason)
    assert await last_audit(client, other_street) == (g01_code, "accept", other_street, "refused", reason)
    assert (await ticket_by_number(client, other_street)).status == "dispatched"

    detail = await g01.get(f"/tickets/{mine}")
    ticket = await ticket_by_number(client, mine)
    assert (detail["number"], detail["description"], detail["status"], detail["area_code"]) == (
        mine, GARBAGE, "dispatched", G01_GRID)
    assert [a["action"] for a in detail["actions"]] == ["accept", "send_back"]
    assert [r["action"] for r in detail["remarks"]] == ["comment", "attach"]
    assert [e["action"] for e in detail["timeline"]][0] == "create"
    assert ticket.openid not in json.dumps(detail, ensure_ascii=False)
    assert await last_audit(client, mine) == (g01_code, "view", mine, "allowed", VIEW_NOTE)


async def test_tokens_missing_bad_revoked_or_of_a_disabled_account_are_401(client, cli_env, capsys):
    anonymous = Api(client)
    assert await anonymous.get("/me", expect=401) == error("unauthorized", MISSING)
    assert anonymous.last.headers["WWW-Authenticate"] == 'Bearer realm="minyi-api"'
    for header in ("Bearer my_not-a-token", "Basic R0AxOnNlY3JldA==", "Bearer", "Bearer a b"):
        body = await anonymous.call("GET", "/tickets", 401, headers={"Authorization": header})
        assert body == error("unauthorized", INVALID), header
        assert anonymous.last.headers["WWW-Authenticate"] == 'Bearer realm="minyi-api", error="invalid_token"'
    # The document is public.
    assert (await anonymous.get("/openapi.json"))["openapi"] == "3.1.0"

    g02 = Api(client, await token_for(capsys, "G02"))
    assert (await g02.get("/me"))["login"] == "G02"
    services = services_of(client)
    g02_staff = await staff_member(client, "G02")
    async with services.db.session() as s:
        row = (await s.exec(select(ApiToken).where(ApiToken.staff_id == g02_staff.id))).one()
    assert row.last_used_at is not None and row.revoked_at is None

    code, out, err = await minyi(capsys, "token", "revoke", str(row.id))
    assert (code, out.strip()) == (0, f"令牌 {row.id} 已吊销"), err
    assert await g02.get("/me", expect=401) == error("unauthorized", INVALID)
    code, out, err = await minyi(capsys, "token", "list")
    [listed] = [line.split("\t") for line in out.splitlines() if line.startswith(f"{row.id}\t")]
    assert (listed[1], listed[2], listed[3], listed[-1].split()[0]) == (f"{row.prefix}…", f"G02 {g02_staff.name}", "test",
                                                                        "已吊销")
    assert (await minyi(capsys, "token", "revoke", "999999"))[0] == 1

    g03 = Api(client, await token_for(capsys, "G03"))
    assert (await g03.get("/me"))["login"] == "G03"
    code, _, err = await minyi(capsys, "staff", "disable", "G03")
    assert code == 0, err
    # Refused at once, though this worker's staff cache still holds G03 as active (it is
    # refreshed every 30 s): the token's check reads the account from the database.
    g03_cached = services.case.org.record((await staff_member(client, "G03")).id)
    assert g03_cached is not None and g03_cached.active
    assert await g03.get("/me", expect=401) == error("unauthorized", INVALID)
    code, _, err = await minyi(capsys, "staff", "enable", "G03")
    assert code == 0, err
    assert (await g03.get("/me"))["login"] == "G03"  # re-enabled elsewhere: served, the cache reloaded
    code, _, err = await minyi(capsys, "staff", "disable", "G03")
    assert code == 0, err

    # A disabled account gets no new token either.
    code, out, _ = await minyi(capsys, "token", "create", "--staff", "G03")
    assert (code, out) == (1, "")


# ---------------------------------------------------------------- working tickets

async def test_accept_and_resolve_through_the_api(client, sender, new_openid, cli_env, capsys):
    number = await new_ticket(client, sender, new_openid(), GARBAGE)
    g01 = Api(client, await token_for(capsys, "G01"))
    g01_staff = await staff_member(client, "G01")

    accepted = await g01.post(f"/tickets/{number}/actions", {"action": "accept"})
    assert {k: v for k, v in accepted.items() if k != "notices"} == {
        "number": number, "from_status": "dispatched", "to_status": "accepted", "to_status_label": "已接单",
        "category": "garbage", "area_code": G01_GRID, "recategorized": False}
    resolved = await g01.post(f"/tickets/{number}/actions", {"action": "resolve", "note": "已清运"})
    assert (resolved["from_status"], resolved["to_status"]) == ("accepted", "resolved")

    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.handler_id) == ("resolved", g01_staff.id)
    assert ticket.accepted_at is not None and ticket.resolved_at is not None and ticket.closed_at is not None
    assert await staff_events(client, number, "G01") == [("accept", "dispatched", "accepted", None),
                                                          ("resolve", "accepted", "resolved", "已清运")]

    # Once more: the state does not allow it (409), and nothing changes.
    again = await g01.post(f"/tickets/{number}/actions", {"action": "resolve"}, expect=409)
    assert again == error("conflict", f"工单 {number} 当前为「已办结」，不能「办结」")
    assert len(await staff_events(client, number, "G01")) == 2

    detail = await g01.get(f"/tickets/{number}")
    by_g01 = [e for e in detail["timeline"] if e["actor"] == await actor_code(client, "G01")]
    assert [(e["action"], e["actor_label"], e["note"]) for e in by_g01] == [
        ("accept", "王芳（G01）", None), ("resolve", "王芳（G01）", "已清运")]
    assert detail["handler"]["login"] == "G01" and detail["countdown"]["level"] == "stopped"


async def test_a_grid_worker_may_not_dispatch(client, sender, new_openid, cli_env, capsys):
    number = await new_ticket(client, sender, new_openid(), GARBAGE)
    g01 = Api(client, await token_for(capsys, "G01"))
    body = await g01.post(f"/tickets/{number}/actions", {"action": "dispatch", "area_code": G02_GRID}, expect=403)
    reason = "您的角色（网格员）不能执行「分拨/改派」"
    assert body == error("forbidden", reason)
    assert await last_audit(client, number) == (await actor_code(client, "G01"), "dispatch", number, "refused", reason)
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.area_code) == ("dispatched", G01_GRID)


async def test_a_dispatcher_reroutes_a_triage_ticket_and_bulk_dispatches(client, sender, new_openid, cli_env, capsys):
    numbers = [await new_ticket(client, sender, new_openid(), text) for text in (GARBAGE, STREETLIGHT, SEWER)]
    g01 = Api(client, await token_for(capsys, "G01"))
    for number in numbers:  # 退回: the grid worker sends them back to the dispatcher's triage queue
        moved = await g01.post(f"/tickets/{number}/actions", {"action": "send_back", "note": "不属于本网格"})
        assert moved["to_status"] == "triage"
        assert (await ticket_by_number(client, number)).status == "triage"

    d01 = Api(client, await token_for(capsys, "D01"))
    triage = await d01.get("/tickets", queue="triage")
    assert sorted(t["number"] for t in triage["tickets"]) == sorted(numbers)

    first, *rest = numbers
    done = await d01.post(f"/tickets/{first}/actions",
                          {"action": "dispatch", "category": "noise", "area_code": G02_GRID, "note": "改派"})
    assert (done["to_status"], done["category"], done["area_code"], done["recategorized"]) == (
        "dispatched", "noise", G02_GRID, True)
    ticket = await ticket_by_number(client, first)
    noise = services_of(client).router.taxonomy.categories["noise"]
    assert (ticket.status, ticket.category, ticket.department, ticket.area_code) == (
        "dispatched", "noise", noise.department, G02_GRID)
    assert await staff_events(client, first, "D01") == [
        ("dispatch", "triage", "dispatched", "改派"),
        ("recategorize", "dispatched", "dispatched", "garbage → noise"),
        ("relocate", "dispatched", "dispatched", f"{G01_GRID} → {G02_GRID}")]

    missing = "20990101-0001"
    bulk = await d01.post("/tickets/dispatch", {"numbers": [*rest, missing], "area_code": G02_GRID})
    assert (bulk["action"], bulk["succeeded"], bulk["failed"]) == ("dispatch", 2, 1)
    assert [(r["number"], r["ok"]) for r in bulk["results"]] == [(rest[0], True), (rest[1], True), (missing, False)]
    assert bulk["results"][2]["error"] == {"code": "not_found", "message": f"没有工单 {missing}"}
    for number in rest:
        ticket = await ticket_by_number(client, number)
        assert (ticket.status, ticket.area_code) == ("dispatched", G02_GRID)
        assert [e[:3] for e in await staff_events(client, number, "D01")] == [
            ("dispatch", "triage", "dispatched"), ("relocate", "dispatched", "dispatched")]
    # G01 no longer sees them; G02 does.
    g02 = Api(client, await token_for(capsys, "G02"))
    assert sorted(t["number"] for t in (await g02.get("/tickets", queue="grid"))["tickets"]) == sorted(numbers)
    assert (await g01.get("/tickets", queue="grid"))["total"] == 0

    # Values the ticket domain does not take: 400, nothing dispatched.
    with pytest.raises(DeskError) as expected:
        desk.check_request(services_of(client).case, "dispatch", "nope", None)
    body = await d01.post("/tickets/dispatch", {"numbers": rest, "category": "nope"}, expect=400)
    assert body == error("invalid_request", str(expected.value))
    assert len(await staff_events(client, rest[0], "D01")) == 2


async def test_comments_supervision_photos_and_merge(client, sender, new_openid, cli_env, capsys):
    number = await new_ticket(client, sender, new_openid(), GARBAGE)
    g01 = Api(client, await token_for(capsys, "G01"))
    g01_code = await actor_code(client, "G01")

    added = await g01.post(f"/tickets/{number}/comments", {"text": "已联系物业"}, expect=201)
    assert (added["number"], added["notices"]) == (number, 0)
    events = await events_of(client, number)
    assert (events[-1].id, events[-1].action, events[-1].actor, events[-1].note, events[-1].to_status) == (
        added["event_id"], "comment", g01_code, "已联系物业", "dispatched")
    assert await g01.post(f"/tickets/{number}/comments", {"text": "  "}, expect=400) == error("invalid_request", "请填写内容")

    # 督办 is not a grid worker's: refused and audited; the street supervisor's is sent.
    reason = "您的角色（网格员）不能执行「督办」"
    assert await g01.post(f"/tickets/{number}/supervisions", {}, expect=403) == error("forbidden", reason)
    assert await last_audit(client, number) == (g01_code, "supervise", number, "refused", reason)
    s02 = Api(client, await token_for(capsys, "S02"))
    supervised = await s02.post(f"/tickets/{number}/supervisions", {"note": None}, expect=201)
    assert supervised["notices"] >= 1
    assert (await staff_events(client, number, "S02")) == [("supervise", "dispatched", "dispatched", "请抓紧办理")]

    form = FormData()
    form.add_field("file", PNG, filename="done.png", content_type="image/png")
    form.add_field("label", "清运后")
    photo = await g01.call("POST", f"/tickets/{number}/photos", 201, data=form)
    async with services_of(client).db.session() as s:
        stored = (await s.exec(select(Attachment).where(col(Attachment.added_by) == g01_code))).one()
    assert (stored.kind, stored.label, stored.local_path.endswith(".png")) == ("image", "清运后", True)
    assert (await events_of(client, number))[-1].id == photo["event_id"]
    detail = await g01.get(f"/tickets/{number}")
    shown = next(a for a in detail["attachments"] if a["id"] == stored.id)
    assert (shown["added_by"], shown["added_by_label"], shown["photo"]) == (
        g01_code, "王芳（G01）", f"/api/v1/tickets/{number}/attachments/{stored.id}")
    assert await g01.call("GET", shown["photo"].removeprefix("/api/v1"), 200) == PNG
    assert g01.last.headers["Content-Type"] == "image/png"
    assert await last_audit(client, number) == (g01_code, "view", number, "allowed", f"查看照片（API） {stored.id}")
    not_image = FormData()
    not_image.add_field("file", b"GIF8 not really", filename="x.gif", content_type="image/gif")
    assert await g01.call("POST", f"/tickets/{number}/photos", 400, data=not_image) == error(
        "invalid_request", "只能上传 JPG、PNG 或 GIF 照片")
    no_file = FormData(default_to_multipart=True)
    no_file.add_field("label", "没有文件")
    assert await g01.call("POST", f"/tickets/{number}/photos", 400, data=no_file) == error(
        "invalid_parameter", "缺少字段 file（照片文件）")

    # 合并重复: another resident's report of the same problem, closed into the first.
    duplicate = await new_ticket(client, sender, new_openid(), WITH_PHONE)
    d01 = Api(client, await token_for(capsys, "D01"))
    assert await d01.post(f"/tickets/{duplicate}/actions", {"action": "merge"}, expect=400) == error(
        "invalid_request", "合并重复请填写要合并到的工单编号（用合并功能）")  # never without the other ticket
    assert await d01.post(f"/tickets/{duplicate}/merge", {"into": duplicate}, expect=400) == error(
        "invalid_request", "不能合并到工单自身")
    assert await d01.post(f"/tickets/{duplicate}/merge", {"into": "20990101-0001"}, expect=400) == error(
        "invalid_request", "没有工单 20990101-0001")
    merged = await d01.post(f"/tickets/{duplicate}/merge", {"into": number})
    assert (merged["from_status"], merged["to_status"]) == ("dispatched", "merged")
    original = await ticket_by_number(client, number)
    closed = await ticket_by_number(client, duplicate)
    assert (closed.status, closed.duplicate_of_id, original.status) == ("merged", original.id, "dispatched")
    assert [e[:3] for e in await staff_events(client, duplicate, "D01")] == [("merge", "dispatched", "merged")]
    # The merged ticket is closed: nothing merges into it, and it cannot be merged again.
    assert await d01.post(f"/tickets/{number}/merge", {"into": duplicate}, expect=409) == error(
        "conflict", f"工单 {duplicate} 已办结或已合并，不能作为合并目标")
    assert (await ticket_by_number(client, number)).status == "dispatched"


async def test_a_co_department_works_its_part_through_the_api(client, sender, new_openid, cli_env, capsys):
    number = await new_ticket(client, sender, new_openid(), FUMES)
    ticket = await ticket_by_number(client, number)
    assert (ticket.department, ticket.co_departments) == ("environment", ["urban_mgmt"])
    assert [(p.department, p.status) for p in await parts_of(client, number)] == [("urban_mgmt", "assigned")]
    l03, l05 = Api(client, await token_for(capsys, "L03")), Api(client, await token_for(capsys, "L05"))
    l03_code, l05_code = await actor_code(client, "L03"), await actor_code(client, "L05")
    path = f"/tickets/{number}/parts"

    def part_actions(detail: dict) -> list[tuple]:
        return [(a["department"], a["department_name"], a["word"], a["label"]) for a in detail["part_actions"]]

    # 城管's liaison may take its part (接单, or 办结 straight away); the lead's liaison has no part to work.
    assert part_actions(await l03.get(f"/tickets/{number}")) == [("urban_mgmt", "城管", "accept", "协办接单"),
                                                                  ("urban_mgmt", "城管", "done", "协办办结")]
    assert part_actions(await l05.get(f"/tickets/{number}")) == []

    # The lead department's liaison may not work 城管's part: refused, audited, nothing moves.
    reason = (f"这不是您部门（生态环境）在工单 {number} 中的协办任务；"
              "您对此工单只能：接单、请群众补充、上传照片、内部备注、办结、继续处置、退回、开始处置、查看")
    refused = await l05.post(path, {"department": "urban_mgmt", "action": "done"}, expect=403)
    assert refused == error("forbidden", reason)
    assert await last_audit(client, number) == (l05_code, "part_done", number, "refused", reason)
    assert [(p.status, p.handler_id) for p in await parts_of(client, number)] == [("assigned", None)]
    # Nor may someone who cannot view the ticket (G05, another street): the view refusal, audited as the part action.
    g05 = Api(client, await token_for(capsys, "G05"))
    hidden = await g05.post(path, {"department": "urban_mgmt", "action": "accept"}, expect=403)
    assert hidden["error"]["code"] == "forbidden"
    assert await last_audit(client, number) == (await actor_code(client, "G05"), "part_accept", number, "refused",
                                                hidden["error"]["message"])

    accepted = await l03.post(path, {"department": "urban_mgmt", "action": "accept"})
    assert accepted == {"number": number, "department": "urban_mgmt", "department_name": "城管",
                        "from_status": "assigned", "from_status_label": "待协办", "to_status": "accepted",
                        "to_status_label": "协办中", "all_done": False, "notices": 0}
    [part] = await parts_of(client, number)
    assert (part.status, f"staff:{part.handler_id}", part.done_at) == ("accepted", l03_code, None)
    assert part.accepted_at is not None
    assert part_actions(await l03.get(f"/tickets/{number}")) == [("urban_mgmt", "城管", "done", "协办办结")]

    done = await l03.post(path, {"department": "urban_mgmt", "action": "done", "note": "已取缔露天烧烤"})
    assert {k: v for k, v in done.items() if k != "notices"} == {
        "number": number, "department": "urban_mgmt", "department_name": "城管", "from_status": "accepted",
        "from_status_label": "协办中", "to_status": "done", "to_status_label": "协办已办结", "all_done": True}
    assert done["notices"] >= 1  # the lead is told every part is done
    [part] = await parts_of(client, number)
    assert (part.status, f"staff:{part.handler_id}", part.note) == ("done", l03_code, "已取缔露天烧烤")
    assert part.done_at is not None
    assert await staff_events(client, number, "L03") == [
        ("part_accept", "dispatched", "dispatched", "城管：协办接单"),
        ("part_done", "dispatched", "dispatched", "城管：协办办结，已取缔露天烧烤")]
    detail = await l03.get(f"/tickets/{number}")
    assert part_actions(detail) == []
    assert [(p["department"], p["status"], p["handler"]["login"]) for p in detail["parts"]] == [
        ("urban_mgmt", "done", "L03")]

    # Done twice: the part's state does not allow it (409).
    again = await l03.post(path, {"department": "urban_mgmt", "action": "done"}, expect=409)
    assert again == error("conflict", "城管的协办任务当前为「协办已办结」，不能「协办办结」")

    # An unknown department (codes only, not names), a department with no part of the ticket, an unknown word: 400.
    assert await l03.post(path, {"department": "nope", "action": "done"}, expect=400) == error(
        "invalid_request", "没有部门代码 nope（部门见 GET /categories）")
    assert await l03.post(path, {"department": "城管", "action": "done"}, expect=400) == error(
        "invalid_request", "没有部门代码 城管（部门见 GET /categories）")
    assert await l03.post(path, {"department": "police", "action": "accept"}, expect=400) == error(
        "invalid_request", f"工单 {number} 没有公安的协办任务")
    with pytest.raises(DeskError) as expected:
        await parts.act_on_part(services_of(client).case, number, "urban_mgmt", "fly",
                                Actor.of_staff(await staff_member(client, "L03")))
    assert await l03.post(path, {"department": "urban_mgmt", "action": "fly"}, expect=400) == error(
        "invalid_request", str(expected.value))
    assert await l03.post(path, {"action": "done"}, expect=400) == error("invalid_body", "缺少字段 department")
    assert len(await staff_events(client, number, "L03")) == 2
    assert await staff_events(client, number, "L05") == []


# ---------------------------------------------------------------- exports and filters

async def test_an_export_has_no_phone_numbers_and_no_openids(client, sender, new_openid, cli_env, capsys):
    openid = new_openid()
    number = await new_ticket(client, sender, openid, WITH_PHONE)
    d01 = Api(client, await token_for(capsys, "D01"))
    d01_code = await actor_code(client, "D01")
    masked = "枫林小区垃圾桶满了没人清运，有事打我电话138****5678"

    raw = await d01.call("GET", "/tickets/export", 200, params={"queue": "all", "format": "csv"})
    assert d01.last.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert d01.last.headers["X-Export-Rows"] == "1"
    text = raw.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 2 and rows[1][0] == number and rows[1][12] == masked
    assert "13812345678" not in text and openid not in text
    assert await last_audit(client, "all") == (d01_code, "export", "all", "allowed", "导出 1 条（csv，API）")

    raw = await d01.call("GET", "/tickets/export", 200, params={"queue": "all", "format": "xlsx"})
    sheet = load_workbook(io.BytesIO(raw)).active
    cells = [[c for c in row] for row in sheet.iter_rows(values_only=True)]
    assert len(cells) == 2 and cells[1][0] == number and cells[1][12] == masked
    flat = json.dumps(cells, ensure_ascii=False, default=str)
    assert "13812345678" not in flat and openid not in flat

    # The list's excerpt is masked too; only the (audited) ticket view has the number.
    listed = await d01.get("/tickets", queue="all")
    assert [t["excerpt"] for t in listed["tickets"]] == [masked]
    assert (await d01.get(f"/tickets/{number}"))["description"] == WITH_PHONE
    assert await last_audit(client, number) == (d01_code, "view", number, "allowed", VIEW_NOTE)


async def test_queue_filters_dates_and_pages(client, sender, new_openid, cli_env, capsys):
    numbers = [await new_ticket(client, sender, new_openid(), text) for text in (GARBAGE, STREETLIGHT, SEWER)]
    d01 = Api(client, await token_for(capsys, "D01"))
    today = to_local(utcnow()).date()
    tomorrow = today + timedelta(days=1)

    async def listed(**params: str) -> list[str]:
        return sorted(t["number"] for t in (await d01.get("/tickets", queue="all", **params))["tickets"])

    assert await listed(created_to=today.isoformat()) == sorted(numbers)  # a bare date: the whole day
    assert await listed(created_from=tomorrow.isoformat()) == []
    assert await listed(created_from=f"{today.isoformat()}T00:00:00+08:00", created_to=f"{tomorrow.isoformat()}T00:00Z") == sorted(numbers)
    assert await listed(category="garbage") == [numbers[0]]
    assert await listed(status="dispatched", area_code="420199001") == sorted(numbers)
    assert await listed(area_code="420199002") == []
    assert await listed(search=numbers[1]) == [numbers[1]]
    assert await listed(search="下水道") == [numbers[2]]
    assert await listed(search="100%_\\") == []
    page = await d01.get("/tickets", queue="all", page_size="2", page="2")
    assert (page["total"], page["pages"], page["page"], page["page_size"], len(page["tickets"])) == (3, 2, 2, 2, 1)


# ---------------------------------------------------------------- bad input

BAD_QUERIES = [
    ({"page": "0"}, "参数 page 不能小于 1"),
    ({"page": "abc"}, "参数 page 应为整数"),
    ({"page": "1e3"}, "参数 page 应为整数"),
    ({"page_size": "201"}, "参数 page_size 不能大于 200"),
    ({"page": "99999999999999999999"}, "参数 page 应为整数"),
    ({"status": "nope"}, "参数 status 的取值 nope 不存在"),
    ({"category": ""}, "参数 category 不能为空（不需要时请省略）"),
    ({"queue": "nope"}, "参数 queue 的取值 nope 不存在"),
    ({"queue": "triage"}, "队列 triage 不对您的角色开放；可用：mine、grid、overdue、all"),
    ({"created_from": "2026-13-01"}, "参数 created_from 不是 ISO 8601 日期或时间（如 2026-01-05 或 2026-01-05T09:30）"),
    ({"created_from": "9999-01-01"}, "参数 created_from 的年份应在 2000–2099 之间"),
    ({"created_to": "0001-01-01T00:00+23:59"}, "参数 created_to 的年份应在 2000–2099 之间"),
    ({"search": "a\x00b"}, "参数 search 含有控制字符"),
    ({"search": "字" * 101}, "参数 search 最长 100 个字符"),
]


@pytest.mark.parametrize(("params", "message"), BAD_QUERIES)
async def test_bad_query_parameters_are_400(client, cli_env, capsys, params, message):
    g01 = Api(client, await token_for(capsys, "G01"))
    assert await g01.get("/tickets", expect=400, **params) == error("invalid_parameter", message)
    if not {"page", "page_size"} & set(params):  # an export has no pages
        assert await g01.get("/tickets/export", expect=400, **params) == error("invalid_parameter", message)


async def test_garbage_bodies_get_json_errors(client, sender, new_openid, cli_env, capsys):
    number = await new_ticket(client, sender, new_openid(), GARBAGE)
    g01 = Api(client, await token_for(capsys, "G01"))
    path = f"/tickets/{number}/actions"
    as_json = {"Content-Type": "application/json"}

    async def raw(body: bytes, expect: int, headers: dict[str, str] = as_json) -> Any:
        return await g01.call("POST", path, expect, data=body, headers=headers)

    assert await raw(b"not json", 400) == error("bad_json", "请求体不是有效的 UTF-8 JSON")
    assert await raw(b"\xff\xfe{}", 400) == error("bad_json", "请求体不是有效的 UTF-8 JSON")
    assert await raw(b'{"action": "\\ud800"}', 400) == error("bad_json", "请求体含有无效的 Unicode 字符（孤立的代理项）")
    assert await raw(b"[" * 100000, 413) == error("payload_too_large", "请求体不能超过 64 KB")
    assert await raw(b"[" * 60000, 400) == error("bad_json", "请求体不是有效的 UTF-8 JSON")
    assert await raw(b"[1, 2]", 400) == error("invalid_body", "请求体应为 JSON 对象")
    assert await raw(b'{"action": "accept"}', 415, {"Content-Type": "text/plain"}) == error(
        "unsupported_media_type", "请求体须为 JSON（Content-Type: application/json）")
    assert await g01.post(path, {}, 400) == error("invalid_body", "缺少字段 action")
    assert await g01.post(path, {"action": 5}, 400) == error("invalid_body", "字段 action 应为字符串")
    assert await g01.post(path, {"action": "accept", "note": ["x"]}, 400) == error("invalid_body", "字段 note 应为字符串")
    assert await g01.post(path, {"action": "dispatch", "category": ""}, 400) == error(
        "invalid_body", "字段 category 不能为空（不需要时请省略或给 null）")
    assert await g01.post(path, {"action": "accept", "extra": 1}, 400) == error("invalid_body", "不认识的字段：extra")
    assert await g01.post(path, {"action": "accept", "note": "a\x00b"}, 400) == error("invalid_body", "字段 note 含有控制字符")
    assert await g01.post(path, {"action": "accept", "note": "字" * 2001}, 400) == error(
        "invalid_body", "字段 note 最长 2000 个字符")
    with pytest.raises(DeskError) as expected:
        desk.check_request(services_of(client).case, "fly", None, None)
    assert await g01.post(path, {"action": "fly"}, 400) == error("invalid_request", str(expected.value))
    bulk = await g01.post("/tickets/dispatch", {"numbers": ["not-a-number"]}, 400)
    assert bulk == error("invalid_body", "字段 numbers 中的 not-a-number 不是工单编号（如 20260105-0001）")
    assert await g01.post("/tickets/dispatch", {"numbers": []}, 400) == error(
        "invalid_body", "字段 numbers 至少要有 1 个工单编号")
    assert await g01.post("/tickets/dispatch", {"numbers": [number, number]}, 400) == error(
        "invalid_body", "字段 numbers 中有重复的工单编号")

    # Paths and methods the API does not have.
    assert await g01.get("/nope", expect=404) == error("not_found", "没有这个接口或资源")
    assert await g01.get("/tickets/not-a-number", expect=404) == error("not_found", "没有这个接口或资源")
    assert await g01.get("/tickets/20990101-0001", expect=404) == error("not_found", "没有工单 20990101-0001")
    assert await g01.call("PUT", path, 405, json={}) == error("method_not_allowed", "此接口不支持该请求方法")
    assert g01.last.headers["Allow"] == "POST"
    assert await g01.call("DELETE", f"/tickets/{number}", 405) == error("method_not_allowed", "此接口不支持该请求方法")

    # None of it touched the ticket.
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.handler_id) == ("dispatched", None)
    assert await staff_events(client, number, "G01") == []


# ---------------------------------------------------------------- reference data

async def test_me_queues_and_reference_data(client, cli_env, capsys):
    services = services_of(client)
    g01 = Api(client, await token_for(capsys, "G01"))
    g01_staff = await staff_member(client, "G01")
    me = await g01.get("/me")
    assert me == {"id": g01_staff.id, "login": "G01", "name": "王芳", "role": "grid_worker", "role_label": "网格员",
                  "area_code": G01_GRID, "area_name": "西山街道 枫林社区 枫林第一网格", "department": None,
                  "department_name": None, "wechat_bound": True,
                  "queues": [{"code": "mine", "label": "我的工单", "open_only": True, "count": 0},
                             {"code": "grid", "label": "本网格", "open_only": True, "count": 0},
                             {"code": "overdue", "label": "已超时", "open_only": True, "count": 0},
                             {"code": "all", "label": "全部", "open_only": False, "count": 0}]}
    d01 = Api(client, await token_for(capsys, "D01"))
    assert [q["code"] for q in (await d01.get("/queues"))["queues"]] == ["mine", "triage", "overdue", "escalated", "all"]
    assert (await d01.get("/me"))["role_label"] == "调度员"

    case = services.case
    categories = await g01.get("/categories")
    assert [c["code"] for c in categories["categories"]] == list(case.router.taxonomy.categories)
    assert categories["urgencies"] == list(case.router.urgency.order)
    assert [a["code"] for a in (await g01.get("/areas"))["areas"]] == list(case.areas.nodes)
    flow = await g01.get("/workflow")
    assert [s["code"] for s in flow["states"]] == list(case.workflow.states)
    assert [t["action"] for t in flow["transitions"]] == list(case.workflow.transitions)
    assert flow["reroute_action"] == case.workflow.reroute_action

    # The document names every route, with its method, and a 401 for those that need a token.
    document = await Api(client).get("/openapi.json")
    assert document["servers"] == [{"url": "/api/v1"}]
    operations = {(path, method.upper()): op for path, item in document["paths"].items() for method, op in item.items()}
    assert set(operations) == {(r.path, r.method) for r in ROUTES}
    for route in ROUTES:
        op = operations[(route.path, route.method)]
        assert op["operationId"] == route.name
        assert ("401" in op["responses"]) == (route.name != "openapi"), route.name


async def test_tickets_of_an_unrouted_report_are_not_a_5xx(client, cli_env, capsys):
    """A ticket without grid, department or deadlines serialises (the fields are nullable)."""
    services = services_of(client)
    now = utcnow()
    async with services.db.transaction() as s:
        s.add(Ticket(number="20000101-0001", openid="o-test", appeal_type="咨询", category="retired_code",
                     urgency="一般", status="submitted", description="", created_at=now, updated_at=now))
    d01 = Api(client, await token_for(capsys, "D01"))
    listed = await d01.get("/tickets", queue="all")
    assert [(t["number"], t["area_code"], t["countdown"]["level"]) for t in listed["tickets"]] == [
        ("20000101-0001", None, "on_time")]
    detail = await d01.get("/tickets/20000101-0001")
    assert (detail["polygon"], detail["category_label"], detail["timeline"]) == (None, "retired_code", [])
    async with services.db.session() as s:
        assert (await s.exec(select(TicketEvent))).all() == []


def test_the_api_works_tickets_only_through_casework():
    """bot/api is an HTTP face of bot/casework: it never reaches into the WeChat boundary,
    the dialogs, the console or the simulator."""
    from tests.test_layers import ROOT, imports_of

    forbidden = ("bot.wechat", "bot.dialogs", "bot.console", "bot.sim")
    found = {path.name: sorted(n for n in imports_of(path) if n.startswith(forbidden))
             for path in sorted((ROOT / "bot" / "api").glob("*.py"))}
    assert len(found) >= 8
    assert {name: bad for name, bad in found.items() if bad} == {}
