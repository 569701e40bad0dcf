"""The staff console (/console): login and sessions, CSRF, queues scoped by the rights
table, the ticket page and its actions through casework, exports, the view audit.

Residents report through /wechat (tests.steps.report); staff work in the console as a
browser would, with forms and their CSRF tokens. The demo staff (config/demo/staff.toml)
have the demo password: G01 枫林第一网格, G05 幸福里第一网格 (东湖街道), D01 the
district dispatcher, S01 the district supervisor.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest
from openpyxl import load_workbook
from sqlalchemy import update
from sqlmodel import col, select

from bot.access.tokens import digest
from bot.clock import utcnow
from bot.console.keys import SESSION_COOKIE
from storage.models import Attachment, ConsoleSession, Outbox, TicketChange
from tests.conftest import services_of
from tests.steps import (DEMO_PASSWORD, actor_code, audit_entries, console_form, console_login, csrf_of, events_of,
                         follow, messages_to, ratings_of, report, staff_member, ticket_by_number)

GARBAGE = "枫林小区垃圾桶满了好几天没人清运，臭气熏天"  # 枫林第一网格 (G01), 城管
EAST = "幸福里小区门口垃圾桶满了好几天没人清运"  # 幸福里第一网格 (G05), 东湖街道
VAGUE = "我想反映一下情况，这个事情很麻烦"  # low confidence: triage
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.fixture
async def staff(client: Any) -> AsyncIterator[Callable[..., Any]]:
    """Another browser on the same server: staff("D01") is a logged-in session of D01."""
    opened: list[aiohttp.ClientSession] = []

    async def open_session(login: str | None = None) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(base_url=str(client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True))
        opened.append(session)
        if login:
            response = await console_login(session, login)
            assert response.status == 303, await response.text()
        return session

    yield open_session
    for session in opened:
        await session.close()


async def page(session: Any, path: str, status: int = 200) -> str:
    response = await session.get(path, allow_redirects=False)
    text = await response.text()
    assert response.status == status, (path, response.status, text[:800])
    return text


async def new_report(client: Any, sender: Any, openid: str, text: str = GARBAGE) -> str:
    return await report(sender, await follow(sender, openid), text)


# ---------------------------------------------------------------- login and sessions

async def test_login_with_the_demo_password_opens_the_first_queue_and_audits_the_login(client, staff):
    browser = await staff()
    response = await console_login(browser, "G01")
    assert (response.status, response.headers["Location"]) == (303, "/console/")
    home = await browser.get("/console/", allow_redirects=False)
    assert (home.status, home.headers["Location"]) == (303, "/console/q/mine")
    text = await page(browser, "/console/q/mine")
    assert "· 网格员 ·" in text  # the frame names the role
    login_rows = [e for e in await audit_entries(client) if e.action == "login"]
    assert [(e.actor, e.outcome) for e in login_rows] == [(await actor_code(client, "G01"), "done")]



async def test_home_opens_the_first_queue_that_holds_tickets(client, sender, staff, new_openid):
    """A grid worker's new ticket waits in 本网格 until accepted: that is where they land,
    not on an empty 我的工单; once they accept it, 我的工单 comes first again."""
    number = await new_report(client, sender, new_openid())
    browser = await staff()
    await console_login(browser, "G01")
    home = await browser.get("/console/", allow_redirects=False)
    assert (home.status, home.headers["Location"]) == (303, "/console/q/grid")
    assert number in await page(browser, "/console/q/grid")
    ticket_page = await page(browser, f"/console/t/{number}")
    accepted = await console_form(browser, f"/console/t/{number}/act", ticket_page, action="accept", note="")
    assert accepted.status == 303 and (await ticket_by_number(client, number)).status == "accepted"
    home = await browser.get("/console/", allow_redirects=False)
    assert home.headers["Location"] == "/console/q/mine"

async def test_a_wrong_password_is_refused_and_five_failures_lock_the_account(client, staff):
    browser = await staff()
    for _ in range(4):
        response = await console_login(browser, "G01", "wrong-password-1")
        assert response.status == 401
        assert "工号或密码不正确" in await response.text()
    fifth = await console_login(browser, "G01", "wrong-password-1")
    assert fifth.status == 401
    # Locked now: even the right password is refused for a while, from any address.
    locked = await console_login(browser, "G01", DEMO_PASSWORD)
    assert locked.status == 429
    assert "登录失败次数过多" in await locked.text()
    assert SESSION_COOKIE not in {c.key for c in browser.cookie_jar}
    refused = [e for e in await audit_entries(client) if e.action == "login" and e.outcome == "refused"]
    assert len(refused) == 6 and refused[-1].reason == "登录失败次数过多，暂时锁定"
    # The address is locked too: guessing another account from it is refused as well.
    other = await staff()
    assert (await console_login(other, "G02")).status == 429


async def test_unknown_and_disabled_accounts_get_the_same_answer_as_a_wrong_password(client, staff, capsys, cli_env):
    from tests.steps import minyi

    browser = await staff()
    unknown = await console_login(browser, "NOBODY")
    assert unknown.status == 401
    code, _, err = await minyi(capsys, "staff", "disable", "G03")
    assert code == 0, err
    disabled = await console_login(browser, "G03")
    assert disabled.status == 401
    assert "工号或密码不正确" in await disabled.text() and "工号或密码不正确" in await unknown.text()


async def test_each_login_gets_a_fresh_session_id_and_the_old_one_ends(client, staff):
    browser = await staff("G01")
    first = next(c.value for c in browser.cookie_jar if c.key == SESSION_COOKIE)
    assert (await console_login(browser, "G01")).status == 303
    second = next(c.value for c in browser.cookie_jar if c.key == SESSION_COOKIE)
    assert first != second
    async with services_of(client).db.session() as s:
        rows = (await s.exec(select(ConsoleSession))).all()
    # Only the hash of the id is stored, and the first session is gone.
    assert [r.id_hash for r in rows] == [digest(second)]


async def test_logout_and_expiry_end_the_session(client, staff):
    browser = await staff("G01")
    text = await page(browser, "/console/q/mine")
    logout = await console_form(browser, "/console/logout", text)
    assert (logout.status, logout.headers["Location"]) == (303, "/console/login")
    again = await browser.get("/console/q/mine", allow_redirects=False)
    assert (again.status, again.headers["Location"]) == (303, "/console/login?next=/console/q/mine")

    idle = await staff("G02")
    await page(idle, "/console/q/mine")
    async with services_of(client).db.transaction() as s:  # unused for longer than the idle limit
        await s.exec(update(ConsoleSession).values(last_seen_at=utcnow() - timedelta(minutes=121)))  # type: ignore[call-overload]
    expired = await idle.get("/console/q/mine", allow_redirects=False)
    assert expired.status == 303 and expired.headers["Location"].startswith("/console/login")


async def test_login_redirects_only_inside_the_console(client, staff):
    browser = await staff()
    login_page = await page(browser, "/console/login?next=https://evil.example/")
    response = await browser.post("/console/login", data={"csrf": csrf_of(login_page), "login": "G01",
                                                           "password": DEMO_PASSWORD, "next": "//evil.example/x"},
                                   allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/console/")


# ---------------------------------------------------------------- CSRF

async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(client, sender, staff, new_openid):
    number = await new_report(client, sender, new_openid())
    browser = await staff("G01")
    await page(browser, f"/console/t/{number}")
    forged = await browser.post(f"/console/t/{number}/act", data={"action": "accept"}, allow_redirects=False)
    assert forged.status == 403
    assert "安全校验未通过" in await forged.text()
    wrong = await browser.post(f"/console/t/{number}/act", data={"action": "accept", "csrf": "x" * 43},
                               allow_redirects=False)
    assert wrong.status == 403
    assert (await ticket_by_number(client, number)).status == "dispatched"
    # The login form has its own token too.
    stranger = await staff()
    no_token = await stranger.post("/console/login", data={"login": "G01", "password": DEMO_PASSWORD},
                                   allow_redirects=False)
    assert no_token.status == 403


# ---------------------------------------------------------------- queues and scope

async def test_a_grid_worker_sees_only_their_grid_and_is_refused_another_grids_ticket(client, sender, staff,
                                                                                    new_openid):
    mine = await new_report(client, sender, new_openid())
    theirs = await new_report(client, sender, new_openid(), EAST)
    assert (await ticket_by_number(client, theirs)).area_code != (await ticket_by_number(client, mine)).area_code
    browser = await staff("G01")
    grid = await page(browser, "/console/q/grid")
    assert f'data-number="{mine}"' in grid and f'data-number="{theirs}"' not in grid
    everything = await page(browser, "/console/q/all")
    assert f'data-number="{theirs}"' not in everything
    refused = await page(browser, f"/console/t/{theirs}", status=403)
    assert "不在您负责的网格" in refused
    entry = (await audit_entries(client, theirs))[-1]
    assert (entry.actor, entry.action, entry.outcome) == (await actor_code(client, "G01"), "view", "refused")
    # The east grid's own worker sees it.
    east = await staff("G05")
    assert f'data-number="{theirs}"' in await page(east, "/console/q/grid")


async def test_filters_search_and_pages(client, sender, staff, new_openid):
    numbers = [await new_report(client, sender, new_openid(), f"枫林小区{n}号楼垃圾桶满了好几天没人清运") for n in range(3)]
    browser = await staff("G01")
    found = await page(browser, f"/console/q/grid?q={numbers[1]}")
    assert [n for n in numbers if f'data-number="{n}"' in found] == [numbers[1]]
    by_text = await page(browser, "/console/q/grid?q=2号楼")
    assert [n for n in numbers if f'data-number="{n}"' in by_text] == [numbers[2]]
    accepted = await page(browser, "/console/q/grid?status=accepted")
    assert not any(f'data-number="{n}"' in accepted for n in numbers)
    bad = await page(browser, "/console/q/grid?status=nonsense", status=400)
    assert "没有状态 nonsense" in bad
    bad_date = await page(browser, "/console/q/grid?from=99999-01-01", status=400)
    assert "日期格式应为" in bad_date
    unknown = await browser.get("/console/q/nosuchqueue", allow_redirects=False)
    assert unknown.status == 404


async def test_the_countdown_colour_follows_the_deadline(client, sender, staff, new_openid):
    on_time, warned, late = [await new_report(client, sender, new_openid(), f"枫林小区{n}栋垃圾桶满了好几天没人清运")
                             for n in (1, 2, 3)]
    now = utcnow()
    from storage.models import Ticket

    async with services_of(client).db.transaction() as s:
        await s.exec(update(Ticket).where(col(Ticket.number) == warned)  # type: ignore[call-overload]
                     .values(response_warn_at=now - timedelta(minutes=1), response_due_at=now + timedelta(minutes=30)))
        await s.exec(update(Ticket).where(col(Ticket.number) == late)  # type: ignore[call-overload]
                     .values(response_due_at=now - timedelta(hours=2)))
    text = await page(await staff("G01"), "/console/q/grid")

    def level(number: str) -> str:
        start = text.index(f'data-number="{number}"')
        return text[text.rindex("sla-", 0, start):].split('"')[0].split()[0]

    assert (level(on_time), level(warned), level(late)) == ("sla-on_time", "sla-warning", "sla-breached")
    assert "接单超时 2小时" in text or "接单超时 1小时59分" in text


# ---------------------------------------------------------------- ticket work

async def test_a_grid_worker_accepts_and_resolves_with_a_note_and_a_photo(client, sender, staff, new_openid):
    openid = new_openid()
    number = await new_report(client, sender, openid)
    browser = await staff("G01")
    ticket_page = await page(browser, f"/console/t/{number}")
    accepted = await console_form(browser, f"/console/t/{number}/act", ticket_page, action="accept", note="")
    assert (accepted.status, accepted.headers["Location"]) == (303, f"/console/t/{number}?done=accept")
    ticket_page = await page(browser, accepted.headers["Location"])
    assert "已完成：接单" in ticket_page
    form = aiohttp.FormData()
    form.add_field("csrf", csrf_of(ticket_page))
    form.add_field("action", "resolve")
    form.add_field("note", "已清运，垃圾桶已清洗")
    form.add_field("photo", PNG, filename="done.png", content_type="image/png")
    resolved = await browser.post(f"/console/t/{number}/act", data=form, allow_redirects=False)
    assert resolved.status == 303, await resolved.text()
    ticket = await ticket_by_number(client, number)
    g01 = await actor_code(client, "G01")
    assert (ticket.status, ticket.handler_id) == ("resolved", int(g01.split(":")[1]))
    events = await events_of(client, number)
    assert [(e.action, e.actor) for e in events[-3:]] == [("accept", g01), ("attach", g01), ("resolve", g01)]
    assert events[-1].note == "已清运，垃圾桶已清洗"
    async with services_of(client).db.session() as s:
        photos = (await s.exec(select(Attachment).where(Attachment.ticket_id == ticket.id))).all()
    assert [(p.kind, p.added_by) for p in photos] == [("image", g01)]
    stored = services_of(client).settings.data_dir / photos[0].local_path
    assert stored.read_bytes() == PNG
    shown = await browser.get(f"/console/media/{photos[0].id}")
    assert (shown.status, shown.headers["Content-Type"], await shown.read()) == (200, "image/png", PNG)
    # The resident is told, with the note, and asked to rate (回访).
    told = await messages_to(client, openid)
    assert any("已办结" in m and "已清运，垃圾桶已清洗" in m for m in told)
    assert [r.satisfaction for r in await ratings_of(client, number)] == [None]


async def test_an_upload_that_is_not_a_photo_is_refused(client, sender, staff, new_openid):
    number = await new_report(client, sender, new_openid())
    browser = await staff("G01")
    ticket_page = await page(browser, f"/console/t/{number}")
    form = aiohttp.FormData()
    form.add_field("csrf", csrf_of(ticket_page))
    form.add_field("photo", b"<html>not an image</html>", filename="x.png", content_type="image/png")
    response = await browser.post(f"/console/t/{number}/photo", data=form, allow_redirects=False)
    assert response.status == 400
    assert "只能上传 JPG、PNG 或 GIF 照片" in await response.text()
    assert [e.action for e in await events_of(client, number)][-1] != "attach"


async def test_a_dispatcher_reroutes_a_triage_ticket_with_the_pickers(client, sender, staff, new_openid):
    number = await new_report(client, sender, new_openid(), VAGUE)
    before = await ticket_by_number(client, number)
    assert before.status == "triage"
    browser = await staff("D01")
    triage = await page(browser, "/console/q/triage")
    assert f'data-number="{number}"' in triage
    ticket_page = await page(browser, f"/console/t/{number}")
    response = await console_form(browser, f"/console/t/{number}/act", ticket_page, action="dispatch",
                                  category="garbage", area_code="420199001001001", note="已分拨城管")
    assert response.status == 303, await response.text()
    after = await ticket_by_number(client, number)
    assert (after.status, after.category, after.area_code, after.department) == (
        "dispatched", "garbage", "420199001001001", "urban_mgmt")
    async with services_of(client).db.session() as s:
        changes = (await s.exec(select(TicketChange).where(TicketChange.ticket_id == after.id)
                                .order_by(col(TicketChange.id)))).all()
    d01 = await actor_code(client, "D01")
    assert {(c.field, c.old_value, c.new_value, c.actor) for c in changes} >= {
        ("status", "triage", "dispatched", d01), ("category", before.category, "garbage", d01),
        ("area_code", before.area_code, "420199001001001", d01)}


async def test_bulk_dispatch_moves_each_ticket_and_reports_each(client, sender, staff, new_openid):
    numbers = [await new_report(client, sender, new_openid(), VAGUE) for _ in range(2)]
    browser = await staff("D01")
    triage = await page(browser, "/console/q/triage")
    response = await browser.post("/console/bulk-dispatch", data=[
        ("csrf", csrf_of(triage)), ("number", numbers[0]), ("number", numbers[1]), ("number", "20990101-0001"),
        ("category", "garbage"), ("area_code", "420199001001001"), ("note", ""), ("back", "/console/q/triage")])
    text = await response.text()
    assert response.status == 200
    assert [(await ticket_by_number(client, n)).status for n in numbers] == ["dispatched", "dispatched"]
    assert "没有工单 20990101-0001" in text and text.count("已分拨，") == 2


async def test_an_internal_note_stays_with_staff(client, sender, staff, new_openid):
    openid = new_openid()
    number = await new_report(client, sender, openid)
    told_before = await messages_to(client, openid)
    browser = await staff("G01")
    ticket_page = await page(browser, f"/console/t/{number}")
    response = await console_form(browser, f"/console/t/{number}/comment", ticket_page, note="居民电话打不通，明早再联系")
    assert response.status == 303
    assert await messages_to(client, openid) == told_before
    last = (await events_of(client, number))[-1]
    assert (last.action, last.note, last.actor) == ("comment", "居民电话打不通，明早再联系", await actor_code(client, "G01"))
    assert 'class="internal"' in await page(browser, f"/console/t/{number}")


async def test_supervision_tells_the_handler(client, sender, staff, new_openid, capsys, cli_env):
    from tests.steps import bind_staff, staff_act

    number = await new_report(client, sender, new_openid())
    worker_wechat = new_openid()
    await bind_staff(client, sender, "G01", worker_wechat)
    await staff_act(capsys, number, "G01", "accept")
    browser = await staff("S01")
    ticket_page = await page(browser, f"/console/t/{number}")
    response = await console_form(browser, f"/console/t/{number}/supervise", ticket_page, note="今天下班前办结")
    assert response.status == 303
    last = (await events_of(client, number))[-1]
    assert (last.action, last.actor, last.note) == ("supervise", await actor_code(client, "S01"), "今天下班前办结")
    notice = (await messages_to(client, worker_wechat))[-1]
    assert notice.startswith(f"【督办】工单 {number}") and "督办意见：今天下班前办结" in notice
    # A grid worker may not 督办.
    worker = await staff("G01")
    refused = await console_form(worker, f"/console/t/{number}/supervise", await page(worker, f"/console/t/{number}"))
    assert refused.status == 403


async def test_merging_a_duplicate_closes_it_into_the_other_ticket(client, sender, staff, new_openid):
    first = await new_report(client, sender, new_openid(), VAGUE)
    second_openid = new_openid()
    second = await new_report(client, sender, second_openid, "我想反映一下情况，那个事情也很麻烦")
    browser = await staff("D01")
    ticket_page = await page(browser, f"/console/t/{second}")
    plain = await console_form(browser, f"/console/t/{second}/act", ticket_page, action="merge")
    assert plain.status == 400 and (await ticket_by_number(client, second)).status == "triage"
    response = await console_form(browser, f"/console/t/{second}/merge", ticket_page, into=first, note="")
    assert response.status == 303, await response.text()
    merged, target = await ticket_by_number(client, second), await ticket_by_number(client, first)
    assert (merged.status, merged.duplicate_of_id) == ("merged", target.id)
    told = (await messages_to(client, second_openid))[-1]
    assert "已合并" in told and first not in told  # never the other resident's number
    self_merge = await console_form(browser, f"/console/t/{first}/merge", await page(browser, f"/console/t/{first}"),
                                    into=first)
    assert self_merge.status == 400


# ---------------------------------------------------------------- what is shown

async def test_html_in_a_report_is_shown_inert(client, sender, staff, new_openid):
    number = await new_report(client, sender, new_openid(),
                              '枫林小区垃圾桶满了<script>alert("x")</script><img src=x onerror=alert(1)>没人清运')
    browser = await staff("G01")
    for path in (f"/console/t/{number}", "/console/q/grid"):
        text = await page(browser, path)
        assert "<script>alert" not in text and "<img src=x" not in text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text


async def test_every_view_of_a_ticket_is_audited_and_an_admin_reads_the_record(client, sender, staff, new_openid,
                                                                              capsys, cli_env, monkeypatch):
    from tests.steps import minyi

    number = await new_report(client, sender, new_openid())
    worker = await staff("G01")
    await page(worker, f"/console/t/{number}")
    await page(worker, f"/console/t/{number}")
    views = [e for e in await audit_entries(client, number) if e.action == "view"]
    assert [(e.actor, e.outcome) for e in views] == [(await actor_code(client, "G01"), "allowed")] * 2
    assert "您的角色不能「查看审计记录」" in await page(worker, "/console/admin/audit", status=403)
    code, _, err = await minyi(capsys, "staff", "add", "--login", "A01", "--name", "管理员甲", "--role", "admin")
    assert code == 0, err
    admin = await staff()
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = await minyi(capsys, "staff", "passwd", "A01", "--password-stdin")
    assert (code, err.strip()) == (1, "密码不符合要求：密码至少 8 位")
    monkeypatch.setattr("sys.stdin", io.StringIO("admin-pass-2026\n"))
    code, out, err = await minyi(capsys, "staff", "passwd", "A01", "--password-stdin")
    assert (code, out.strip()) == (0, "已设置 A01 管理员甲 的控制台密码；此前的登录已全部退出")
    assert (await console_login(admin, "A01", "admin-pass-2026")).status == 303
    record = await page(admin, f"/console/admin/audit?target={number}")
    assert record.count("查看工单（控制台）") == 2 and record.count("<td>允许</td>") == 2
    by_login = await page(admin, "/console/admin/audit?actor=A01")  # a 工号 is taken for the actor's code
    assert "<td>登录</td>" in by_login and "查看工单" not in by_login


# ---------------------------------------------------------------- exports

async def test_exports_mask_phone_and_id_numbers_and_never_hold_openids(client, sender, staff, new_openid):
    openid = new_openid()
    number = await new_report(client, sender, openid,
                              "枫林小区垃圾桶满了没人清运，我电话13812345678，身份证420102199001011234")
    browser = await staff("G01")
    csv_response = await browser.get("/console/q/grid/export.csv")
    assert csv_response.status == 200
    rows = list(csv.reader(io.StringIO((await csv_response.read()).decode("utf-8-sig"))))
    body = "\n".join(",".join(r) for r in rows)
    assert rows[0][0] == "工单编号" and [r[0] for r in rows[1:]] == [number]
    assert "138****5678" in body and "4201**********1234" in body
    assert "13812345678" not in body and "420102199001011234" not in body and openid not in body
    xlsx_response = await browser.get("/console/q/grid/export.xlsx")
    sheet = load_workbook(io.BytesIO(await xlsx_response.read())).active
    cells = [str(c.value) for row in sheet.iter_rows() for c in row if c.value is not None]
    assert number in cells and not any("13812345678" in c or openid in c for c in cells)
    assert any("138****5678" in c for c in cells)
    exports = [e for e in await audit_entries(client, "grid") if e.action == "export"]
    assert [e.reason for e in exports] == ["导出 1 条（csv）", "导出 1 条（xlsx）"]


# ---------------------------------------------------------------- admin

async def test_disabling_with_the_cli_logs_them_out_of_the_console_at_once(client, sender, staff, new_openid, capsys,
                                                                            cli_env):
    """`minyi staff disable` ends the member's console sessions in the same transaction, as
    the admin page does: no waiting for a worker's organisation cache to notice. It says
    how many open tickets the member still holds, so none is forgotten."""
    from tests.steps import minyi, staff_act

    held = await report(sender, await follow(sender, new_openid()), GARBAGE)
    await staff_act(capsys, held, "G01", "accept")
    done = await report(sender, await follow(sender, new_openid()), GARBAGE + "，第二处")
    await staff_act(capsys, done, "G01", "accept", "resolve", note="已清运")  # resolved: not open
    worker = await staff()
    assert (await console_login(worker, "G01")).status == 303
    await page(worker, "/console/q/mine")
    code, out, err = await minyi(capsys, "staff", "disable", "G01")
    assert (code, out) == (0, "已停用：G01 王芳。此人仍经办 1 件未办结工单：同网格或同部门的人员可继续办理；"
                              "尚未开始处置的工单，调度员也可退回重新派单\n"), err
    after = await worker.get("/console/q/mine", allow_redirects=False)
    assert after.status == 303 and after.headers["Location"].startswith("/console/login")
    member = await staff_member(client, "G01")
    async with services_of(client).db.session() as s:
        left = (await s.exec(select(ConsoleSession).where(ConsoleSession.staff_id == member.id))).all()
    assert (member.active, left) == (False, [])


async def test_admin_adds_a_staff_member_resets_a_password_and_disabling_logs_them_out(client, staff, capsys, cli_env):
    from tests.steps import minyi

    assert (await minyi(capsys, "staff", "add", "--login", "A01", "--name", "管理员甲", "--role", "admin"))[0] == 0
    from bot.access.passwords import set_password

    member = await staff_member(client, "A01")  # read first: on SQLite a transaction holds the one connection
    async with services_of(client).db.transaction() as s:
        await set_password(s, member.id, "admin-pass-2026")
    admin = await staff()
    assert (await console_login(admin, "A01", "admin-pass-2026")).status == 303
    listing = await page(admin, "/console/admin/staff")
    added = await console_form(admin, "/console/admin/staff", listing, login="G09", name="新网格员", role="grid_worker",
                               area="420199001001002", department="")
    assert added.status == 200 and "已添加：G09 新网格员" in await added.text()
    person = await staff_member(client, "G09")
    assert (person.role, person.area_code, person.active) == ("grid_worker", "420199001001002", True)
    reset = await console_form(admin, "/console/admin/staff/G09/password", listing, password="grid-pass-2026")
    assert "已重置 G09" in await reset.text()
    worker = await staff()
    assert (await console_login(worker, "G09", "grid-pass-2026")).status == 303
    await page(worker, "/console/q/grid")
    disabled = await console_form(admin, "/console/admin/staff/G09/disable", listing)
    assert "已停用：G09" in await disabled.text()
    after = await worker.get("/console/q/grid", allow_redirects=False)
    assert after.status == 303 and after.headers["Location"].startswith("/console/login")
    bad = await console_form(admin, "/console/admin/staff", listing, login="G10", name="x", role="grid_worker",
                             area="nowhere")
    assert bad.status == 400
    # Not for a grid worker.
    grid_worker = await staff("G01")
    assert (await grid_worker.get("/console/admin/staff")).status == 403
    assert "垃圾" in await page(grid_worker, "/console/admin/taxonomy")
    assert "接单时限" in await page(grid_worker, "/console/admin/sla")


async def test_outbox_rows_are_not_touched_by_page_views(client, sender, staff, new_openid):
    number = await new_report(client, sender, new_openid())
    async with services_of(client).db.session() as s:
        before = len((await s.exec(select(Outbox))).all())
    await page(await staff("G01"), f"/console/t/{number}")
    async with services_of(client).db.session() as s:
        assert len((await s.exec(select(Outbox))).all()) == before


async def test_pages_are_never_cached_or_framed_and_expired_sessions_are_purged(client, staff):
    from bot.access.sessions import purge_sessions_job

    browser = await staff("G01")
    response = await browser.get("/console/q/mine")
    assert (response.headers["Cache-Control"], response.headers["X-Frame-Options"]) == ("no-store", "DENY")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    login_page = await browser.get("/console/login")
    assert login_page.headers["X-Frame-Options"] == "DENY"
    async with services_of(client).db.transaction() as s:
        await s.exec(update(ConsoleSession).values(expires_at=utcnow() - timedelta(seconds=1)))  # type: ignore[call-overload]
    assert await purge_sessions_job(services_of(client).db) == 1
    async with services_of(client).db.session() as s:
        assert (await s.exec(select(ConsoleSession))).all() == []


async def test_a_liaison_sees_their_departments_tickets_lead_or_co_department(client, sender, staff, new_openid):
    fumes = await new_report(client, sender, new_openid(), "枫林小区楼下烧烤摊油烟太大，窗户都不敢开")  # 生态环境 leads, 城管 joins
    garbage = await new_report(client, sender, new_openid())  # 城管 alone
    elevator = await new_report(client, sender, new_openid(), "幸福里小区3号楼电梯坏了，老人下不了楼")  # 市场监管, 住建
    text = await page(await staff("L03"), "/console/q/department")  # 城管
    assert [n for n in (fumes, garbage, elevator) if f'data-number="{n}"' in text] == [fumes, garbage]


async def test_a_co_department_liaison_accepts_and_completes_their_part(client, sender, staff, new_openid):
    from tests.steps import parts_of

    number = await new_report(client, sender, new_openid(), "枫林小区楼下烧烤摊油烟太大，窗户都不敢开")  # 生态环境 + 城管
    # The lead department's liaison may not take 城管's part (refused, audited, nothing moves).
    lead = await staff("L05")
    lead_page = await page(lead, f"/console/t/{number}")
    assert "data-part=" not in lead_page
    refused = await console_form(lead, f"/console/t/{number}/part", lead_page, department="urban_mgmt", word="done")
    assert refused.status == 403
    assert f"这不是您部门（生态环境）在工单 {number} 中的协办任务" in await refused.text()
    assert [p.status for p in await parts_of(client, number)] == ["assigned"]
    liaison = await staff("L03")  # 城管
    ticket_page = await page(liaison, f"/console/t/{number}")
    # 待协办: accept it, or report it done at once (config/workflow.toml part transitions).
    assert ticket_page.count('data-part="urban_mgmt"') == 2 and 'data-word="accept"' in ticket_page
    accepted = await console_form(liaison, f"/console/t/{number}/part", ticket_page, department="urban_mgmt",
                                  word="accept", note="")
    assert (accepted.status, accepted.headers["Location"]) == (303, f"/console/t/{number}?done=part_accept")
    assert "已完成：协办接单" in await page(liaison, accepted.headers["Location"])
    ticket_page = await page(liaison, f"/console/t/{number}")
    assert ticket_page.count('data-part="urban_mgmt"') == 1 and 'data-word="accept"' not in ticket_page
    done = await console_form(liaison, f"/console/t/{number}/part", ticket_page, department="urban_mgmt", word="done",
                              note="已清理烧烤摊占道")
    assert done.status == 303
    [part] = await parts_of(client, number)
    assert (part.department, part.status, part.handler_id) == (
        "urban_mgmt", "done", int((await actor_code(client, "L03")).split(":")[1]))


async def test_moving_a_ticket_on_comes_before_turning_it_away(client, sender, staff, new_openid, capsys, cli_env):
    from tests.steps import staff_act

    number = await new_report(client, sender, new_openid())
    await staff_act(capsys, number, "G01", "accept")
    text = await page(await staff("G01"), f"/console/t/{number}")
    order = [a for a in ("start", "ask_resident", "resolve", "send_back") if f'data-action="{a}"' in text]
    assert sorted(order, key=lambda a: text.index(f'data-action="{a}"')) == ["start", "ask_resident", "resolve", "send_back"]


def test_a_console_config_naming_an_unknown_action_is_refused_at_start(tmp_path):
    import dataclasses
    import shutil

    from bot.console import create_console
    from bot.settings import CONFIG_DIR, load_settings

    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    path = config / "console.toml"
    path.write_text(path.read_text(encoding="utf-8").replace('photo_actions = ["resolve"]', 'photo_actions = ["fly"]'),
                    encoding="utf-8")
    with pytest.raises(ValueError, match="fly"):
        create_console(dataclasses.replace(load_settings({}), config_dir=config))


async def test_demo_passwords_exist_only_where_the_demo_loads(client, database_url):
    from bot.settings import load_settings
    from storage.models import Staff, StaffCredential

    async with services_of(client).db.session() as s:
        staff = (await s.exec(select(Staff))).all()
        credentials = (await s.exec(select(StaffCredential))).all()
    assert {c.staff_id for c in credentials} == {p.id for p in staff} and len(staff) == 17
    # The default (demo.load = auto) loads the demo, with its password, on SQLite only.
    embedded = load_settings({})
    assert embedded.load_demo is True
    production = embedded.replace(database={"url": "postgresql+asyncpg://minyi@db/minyi"})
    assert production.load_demo is False
