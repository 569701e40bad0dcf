"""The transactional outbox against the fake WeChat API: delivery after commit,
template/subscription fallbacks, deferral on quotas, and offline mode."""

from __future__ import annotations

import tomllib
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from bot.clock import utcnow
from bot.settings import CONFIG_DIR
from bot.wechat.outbox import MAX_ATTEMPTS
from storage.outbox_rows import enqueue_text
from storage.models import Outbox, Ticket
from tests import wechat
from tests.conftest import services_of
from tests.fake_wechat import (CUSTOM_SEND, STABLE_TOKEN, SUBSCRIBE_SEND, TEMPLATE_SEND, FakeWeChat,  # noqa: F401
                               fake, fake_server, outbox_rows, settle, start_app)

COMPLAINT = "幸福里小区3号楼电梯坏了三天了老人下不了楼，请尽快派人修理"
RESIDENT = "oResident0000000000000000001"

with open(CONFIG_DIR / "demo" / "staff.toml", "rb") as _fh:
    DEMO_STAFF = {person["openid"] for person in tomllib.load(_fh)["staff"]}


async def report_complaint(client, openid: str) -> str:  # type: ignore[no-untyped-def]
    sender = wechat.Sender(client)
    await sender.reply(wechat.event(openid, "subscribe"))
    await sender.reply(wechat.text(openid, "同意"))
    return await sender.reply(wechat.text(openid, COMPLAINT))


async def queue_to_resident(services, content: str = "您的诉求已办结，请评价。") -> int:  # type: ignore[no-untyped-def]
    async with services.db.transaction() as s:
        row = enqueue_text(s, RESIDENT, content, title="诉求办结", url="http://127.0.0.1:8080/t/1")
        await s.flush()
        row_id = row.id
    services.outbox.kick()
    await settle(services)
    return row_id


async def row_of(services, row_id: int) -> Outbox:  # type: ignore[no-untyped-def]
    async with services.db.session() as s:
        row = await s.get(Outbox, row_id)
        assert row is not None
        return row


def near(moment, expected, slack: timedelta = timedelta(minutes=1)) -> bool:  # type: ignore[no-untyped-def]
    if moment.tzinfo is None and expected.tzinfo is not None:
        expected = expected.replace(tzinfo=None)
    elif moment.tzinfo is not None and expected.tzinfo is None:
        moment = moment.replace(tzinfo=None)
    return abs(moment - expected) <= slack


# ---------------------------------------------------------------- end to end


async def test_ticket_notifies_staff_through_the_fake_api(start_app, fake: FakeWeChat, new_openid):
    client = await start_app()
    services = services_of(client)
    reply = await report_complaint(client, new_openid())
    assert "受理" in reply
    await settle(services)

    async with services.db.session() as s:
        tickets = (await s.exec(select(Ticket))).all()
    assert len(tickets) == 1
    rows = await outbox_rows(services, kind="text")
    assert rows, "creating a ticket queues a staff notification"
    assert {r.status for r in rows} == {"sent"} and {r.channel for r in rows} == {"custom"}
    assert all(r.sent_at is not None and r.attempts == 1 for r in rows)
    sends = fake.delivered(CUSTOM_SEND)
    recipients = {c.touser for c in sends}
    assert recipients == {r.openid for r in rows}
    assert recipients <= DEMO_STAFF
    number = tickets[0].number
    assert all(number in c.body["text"]["content"] for c in sends)
    assert all(c.body["msgtype"] == "text" for c in sends)
    assert fake.token_fetches == 1


async def test_offline_conversation_records_rows_and_calls_nothing(start_app, fake: FakeWeChat, new_openid):
    client = await start_app(online=False)
    services = services_of(client)
    assert services.wechat is None
    reply = await report_complaint(client, new_openid())
    assert "受理" in reply
    await settle(services)

    rows = await outbox_rows(services, kind="text")
    assert rows and {r.status for r in rows} == {"offline"}
    assert {r.openid for r in rows} <= DEMO_STAFF
    assert all(r.sent_at is None for r in rows)
    assert fake.calls == []


# ---------------------------------------------------------------- fallbacks


@pytest.mark.parametrize("errcode", [45015, 45047])
async def test_closed_window_or_quota_falls_back_to_template(start_app, fake: FakeWeChat, errcode):
    services = services_of(await start_app(fallback_template_id="TPL-NOTICE"))
    fake.fail(CUSTOM_SEND, errcode=errcode, openid=RESIDENT)
    row = await row_of(services, await queue_to_resident(services))

    assert (row.status, row.channel, row.attempts) == ("sent", "template", 1)
    assert [c.errcode for c in fake.calls_to(CUSTOM_SEND)] == [errcode]
    [template] = fake.delivered(TEMPLATE_SEND)
    assert template.touser == RESIDENT
    assert template.body["template_id"] == "TPL-NOTICE"
    assert template.body["url"] == "http://127.0.0.1:8080/t/1"
    assert "您的诉求已办结" in str(template.body["data"])
    assert fake.calls_to(SUBSCRIBE_SEND) == []


@pytest.mark.parametrize("errcode", [45015, 45047])
async def test_closed_window_or_quota_falls_back_to_subscription_message(start_app, fake: FakeWeChat, errcode):
    services = services_of(await start_app(fallback_subscribe_template_id="SUB-NOTICE"))
    fake.fail(CUSTOM_SEND, errcode=errcode, openid=RESIDENT)
    row = await row_of(services, await queue_to_resident(services))

    assert (row.status, row.channel) == ("sent", "subscribe")
    [sub] = fake.delivered(SUBSCRIBE_SEND)
    assert sub.touser == RESIDENT and sub.body["template_id"] == "SUB-NOTICE"
    assert all(len(item["value"]) <= 20 for item in sub.body["data"].values())  # thing.DATA limit
    assert fake.calls_to(TEMPLATE_SEND) == []


async def test_failed_template_falls_through_to_subscription_message(start_app, fake: FakeWeChat):
    services = services_of(await start_app(fallback_template_id="TPL-NOTICE",
                                           fallback_subscribe_template_id="SUB-NOTICE"))
    fake.fail(CUSTOM_SEND, errcode=45015)
    fake.fail(TEMPLATE_SEND, errcode=43004)  # require subscribe
    row = await row_of(services, await queue_to_resident(services))
    assert (row.status, row.channel) == ("sent", "subscribe")
    assert [c.errcode for c in fake.calls_to(TEMPLATE_SEND)] == [43004]
    assert [c.touser for c in fake.delivered(SUBSCRIBE_SEND)] == [RESIDENT]


async def test_closed_window_without_fallback_is_deferred_then_failed_never_lost(start_app, fake: FakeWeChat):
    services = services_of(await start_app())
    fake.fail(CUSTOM_SEND, errcode=45015, times=None)
    row_id = await queue_to_resident(services)
    row = await row_of(services, row_id)
    assert (row.status, row.attempts) == ("deferred", 1)
    assert "45015" in (row.last_error or "")
    assert row.next_attempt_at is not None and near(row.next_attempt_at, utcnow() + timedelta(seconds=30))
    assert fake.calls_to(TEMPLATE_SEND) == [] and fake.calls_to(SUBSCRIBE_SEND) == []

    # Its last attempt, once due: it stops retrying but the row (and its text) stays.
    async with services.db.transaction() as s:
        await s.exec(update(Outbox).where(Outbox.id == row_id)
                     .values(attempts=MAX_ATTEMPTS - 1, next_attempt_at=utcnow() - timedelta(seconds=1)))
    assert await services.outbox.deliver_pending() == 1
    row = await row_of(services, row_id)
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    assert "45015" in (row.last_error or "")
    assert row.payload["content"] == "您的诉求已办结，请评价。"
    assert len(fake.calls_to(CUSTOM_SEND)) == 2


async def test_daily_api_limit_defers_an_hour_and_is_never_failed(start_app, fake: FakeWeChat):
    services = services_of(await start_app(fallback_template_id="TPL-NOTICE"))
    fake.fail(CUSTOM_SEND, errcode=45009, times=None)
    row_id = await queue_to_resident(services)
    row = await row_of(services, row_id)
    assert (row.status, row.attempts) == ("deferred", 1)
    assert "45009" in (row.last_error or "")
    assert near(row.next_attempt_at, utcnow() + timedelta(hours=1))
    assert fake.calls_to(TEMPLATE_SEND) == []  # the daily limit is not a reason to switch channel

    # Not due yet: a sweep leaves it alone.
    assert await services.outbox.deliver_pending() == 0
    # Even past MAX_ATTEMPTS the daily limit only defers.
    async with services.db.transaction() as s:
        await s.exec(update(Outbox).where(Outbox.id == row_id)
                     .values(attempts=MAX_ATTEMPTS + 2, next_attempt_at=utcnow() - timedelta(seconds=1)))
    assert await services.outbox.deliver_pending() == 1
    row = await row_of(services, row_id)
    assert row.status == "deferred" and row.attempts == MAX_ATTEMPTS + 3
    assert near(row.next_attempt_at, utcnow() + timedelta(hours=1))


async def test_deferred_row_is_sent_once_due(start_app, fake: FakeWeChat):
    services = services_of(await start_app())
    fake.fail(CUSTOM_SEND, errcode=45009, times=1)
    row_id = await queue_to_resident(services)
    assert (await row_of(services, row_id)).status == "deferred"
    async with services.db.transaction() as s:
        await s.exec(update(Outbox).where(Outbox.id == row_id).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    assert await services.outbox.deliver_pending() == 1
    row = await row_of(services, row_id)
    assert (row.status, row.channel, row.attempts) == ("sent", "custom", 2)
    assert [c.errcode for c in fake.calls_to(CUSTOM_SEND)] == [45009, 0]


async def test_unreachable_api_defers_the_row_instead_of_leaving_it_sending(start_app, fake: FakeWeChat):
    services = services_of(await start_app(max_retries=1))
    fake.drop(STABLE_TOKEN, times=None)
    row = await row_of(services, await queue_to_resident(services))
    assert row.status == "deferred" and row.attempts == 1 and row.last_error
    assert fake.calls_to(CUSTOM_SEND) == []


async def test_token_expiry_during_delivery_is_invisible_to_the_outbox(start_app, fake: FakeWeChat):
    services = services_of(await start_app())
    await queue_to_resident(services, "第一条")
    fake.expire_tokens()
    async with services.db.transaction() as s:
        for i in range(5):
            enqueue_text(s, f"oStaff{i}", f"新工单 {i}")
    services.outbox.kick()
    await settle(services)
    rows = await outbox_rows(services)
    assert [r.status for r in rows] == ["sent"] * 6
    assert fake.token_fetches == 2
    assert len(fake.delivered(CUSTOM_SEND)) == 6
