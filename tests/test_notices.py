"""Staff notices (config/notices.toml): a template message when the account has a
template for the kind ([wechat] notice_templates), else a text; offline they are
recorded; a template WeChat refuses for good goes as a customer-service text."""

from __future__ import annotations

from typing import Any

from bot.clock import format_local
from bot.casework.notify import notice_rows, notices_of, parse_templates
from tests import wechat
from tests.conftest import services_of
from tests.fake_wechat import (CUSTOM_SEND, TEMPLATE_SEND, fake, fake_server, outbox_rows, settle,  # noqa: F401
                               start_app)
from tests.steps import follow, report, staff_member, ticket_by_number

ELEVATOR = "幸福里小区3号楼电梯坏了，老人下不了楼"  # 幸福里第一网格, 市场监管
TRAPPED = "幸福里小区3号楼电梯困人了，里面有老人，快来人"  # 特急: a red warning too
GRID_WORKER = "o-demo-grid-05"  # G05, 幸福里第一网格
LIAISON = "o-demo-liaison-market"  # L04, 市场监管
DUTY = {"o-demo-dispatch-01", "o-demo-supervisor-01"}
NEW_TICKET_TEMPLATE = "TPL-new-ticket-0001"
RED_TEMPLATE = "TPL-red-warning-0001"


async def reported(client: Any, openid: str, text: str = ELEVATOR) -> str:
    sender = wechat.Sender(client)
    await follow(sender, openid)
    number = await report(sender, openid, text)
    await settle(services_of(client))
    return number


async def expected_data(client: Any, number: str, why: str) -> dict[str, dict[str, str]]:
    services = services_of(client)
    ticket = await ticket_by_number(client, number)
    return {
        "first": {"value": f"您有一张新工单（{why}），请在时限内接单处理。"},
        "keyword1": {"value": number},
        "keyword2": {"value": services.router.taxonomy.label(ticket.category)},
        "keyword3": {"value": services.areas.full_name(ticket.area_code)},
        "keyword4": {"value": format_local(ticket.response_due_at)},
        "keyword5": {"value": ticket.urgency},
        "remark": {"value": ELEVATOR},
    }


async def test_a_configured_template_is_queued_and_sent_with_its_fields(start_app, fake, new_openid):
    client = await start_app(online=True, notice_templates=f"new_ticket={NEW_TICKET_TEMPLATE}")
    number = await reported(client, new_openid())
    services = services_of(client)
    rows = {row.openid: row for row in await outbox_rows(services, "template")}
    assert set(rows) == {GRID_WORKER, LIAISON}
    worker = rows[GRID_WORKER]
    data = await expected_data(client, number, "网格")
    assert worker.payload["notice"] == "new_ticket" and worker.payload["template_id"] == NEW_TICKET_TEMPLATE
    assert worker.payload["data"] == data
    assert worker.payload["content"].startswith(f"【新工单·网格】{number}")  # the plain text kept beside it
    assert rows[LIAISON].payload["data"]["first"]["value"] == "您有一张新工单（部门），请在时限内接单处理。"
    assert (worker.status, worker.channel) == ("sent", "template")

    [call] = [c for c in fake.delivered(TEMPLATE_SEND) if c.touser == GRID_WORKER]
    assert call.body["template_id"] == NEW_TICKET_TEMPLATE and call.body["data"] == data
    assert not [c for c in fake.calls_to(CUSTOM_SEND) if c.touser == GRID_WORKER]


async def test_without_a_template_the_notice_is_a_text(client, new_openid):
    number = await reported(client, new_openid())
    rows = [row for row in await outbox_rows(services_of(client)) if row.openid == GRID_WORKER]
    assert [(row.kind, row.status) for row in rows] == [("text", "offline")]
    assert rows[0].payload["content"].startswith(f"【新工单·网格】{number}\n类型：")
    assert rows[0].payload["title"] == f"新工单 {number}"


async def test_offline_template_notices_are_recorded_not_sent(start_app, fake, new_openid):
    client = await start_app(online=False, notice_templates=f"new_ticket={NEW_TICKET_TEMPLATE}")
    await reported(client, new_openid())
    rows = [row for row in await outbox_rows(services_of(client), "template") if row.openid == GRID_WORKER]
    assert [(row.status, row.payload["template_id"]) for row in rows] == [("offline", NEW_TICKET_TEMPLATE)]
    assert fake.calls_to(TEMPLATE_SEND) == []


async def test_a_template_refused_for_good_goes_as_text(start_app, fake, new_openid):
    fake.fail(TEMPLATE_SEND, 40037, times=None)  # invalid template_id
    client = await start_app(online=True, notice_templates=f"new_ticket={NEW_TICKET_TEMPLATE}")
    number = await reported(client, new_openid())
    [row] = [row for row in await outbox_rows(services_of(client), "template") if row.openid == GRID_WORKER]
    assert (row.status, row.channel) == ("sent", "custom")
    [call] = [c for c in fake.delivered(CUSTOM_SEND) if c.touser == GRID_WORKER]
    assert call.body["text"]["content"] == row.payload["content"] and number in row.payload["content"]


async def test_a_template_quota_defers_instead_of_falling_back(start_app, fake, new_openid):
    fake.fail(TEMPLATE_SEND, 45009, times=None)  # daily API quota: try the template again later
    client = await start_app(online=True, notice_templates=f"new_ticket={NEW_TICKET_TEMPLATE}")
    await reported(client, new_openid())
    [row] = [row for row in await outbox_rows(services_of(client), "template") if row.openid == GRID_WORKER]
    assert row.status == "deferred" and "45009" in (row.last_error or "")
    assert not [c for c in fake.calls_to(CUSTOM_SEND) if c.touser == GRID_WORKER]


async def test_a_red_warning_goes_to_the_district_duty_staff_by_its_own_template(start_app, fake, new_openid):
    client = await start_app(online=True, notice_templates=f"red_warning={RED_TEMPLATE}")
    number = await reported(client, new_openid(), TRAPPED)
    red = [row for row in await outbox_rows(services_of(client), "template") if row.payload["notice"] == "red_warning"]
    assert {row.openid for row in red} == DUTY
    assert all(row.payload["template_id"] == RED_TEMPLATE and row.payload["data"]["keyword1"]["value"] == number
               for row in red)
    assert {c.touser for c in fake.delivered(TEMPLATE_SEND)} == DUTY
    # The grid's new-ticket notice has no template here: a text, as before.
    texts = [row for row in await outbox_rows(services_of(client), "text") if row.openid == GRID_WORKER]
    assert len(texts) == 1 and texts[0].payload["content"].startswith(f"【新工单·网格】{number}")


async def test_residents_get_text_even_for_a_kind_with_a_template(start_app, new_openid):
    client = await start_app(online=False, notice_templates=f"new_ticket={NEW_TICKET_TEMPLATE}")
    case = services_of(client).case
    worker = await staff_member(client, "G05")
    rows = notice_rows(case, "new_ticket", [worker, "oSomeResident"], {"number": "20260101-0001", "why": "网格"})
    assert [(row["kind"], row["openid"]) for row in rows] == [("template", GRID_WORKER), ("text", "oSomeResident")]
    assert rows[0]["payload"]["data"]["keyword1"] == {"value": "20260101-0001"}
    assert rows[0]["payload"]["data"]["keyword2"] == {"value": ""}  # a value not given is left empty
    assert notices_of(case).kind("new_ticket").template_id == NEW_TICKET_TEMPLATE


def test_template_ids_are_read_from_the_setting():
    assert parse_templates(" new_ticket = A1 ,red_warning=B2,, bad") == {"new_ticket": "A1", "red_warning": "B2"}
