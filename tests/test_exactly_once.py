"""Exactly once: concurrent WeChat retries, replays and crashes mid-request."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import func, select

from bot.app import create_app
from storage.models import DialogState, InboundMessage, Ticket
from tests import wechat
from tests.steps import follow as consented
from tests.conftest import services_of

COMPLAINT = "桃源新村5栋楼道里有人用飞线给电动车充电，电线从四楼拉下来，很危险"




async def count(client, model, **where) -> int:  # type: ignore[no-untyped-def]
    statement = select(func.count()).select_from(model)
    for key, value in where.items():
        statement = statement.where(getattr(model, key) == value)
    async with services_of(client).db.session() as s:
        return (await s.exec(statement)).one()


async def inbound_record(client, message) -> InboundMessage:  # type: ignore[no-untyped-def]
    async with services_of(client).db.session() as s:
        return (await s.exec(select(InboundMessage).where(InboundMessage.dedupe_key == f"m:{message['MsgId']}"))).one()


async def test_three_concurrent_deliveries_make_one_ticket_and_identical_replies(client, mode, new_openid):
    sender = wechat.Sender(client, mode=mode)
    openid = new_openid()
    await consented(sender, openid)
    message = wechat.text(openid, COMPLAINT)
    # WeChat's retries carry the same MsgId but a fresh timestamp, nonce and signature.
    replies = await asyncio.gather(*(sender.reply(message) for _ in range(3)))
    assert len(set(replies)) == 1
    assert "编号" in replies[0]
    assert await count(client, Ticket, openid=openid) == 1


async def test_concurrent_duplicates_across_two_workers_make_one_ticket(aiohttp_client, settings, new_openid):
    """Two app instances on one database stand in for two worker processes."""
    first = await aiohttp_client(create_app(settings))
    second = await aiohttp_client(create_app(settings.replace(database={"auto_migrate": "false"},
                                                              demo={"load": "false"})))
    a, b = wechat.Sender(first), wechat.Sender(second)
    openid = new_openid()
    await consented(a, openid)
    message = wechat.text(openid, COMPLAINT)
    replies = await asyncio.gather(a.reply(message), b.reply(message), a.reply(message), b.reply(message))
    assert len(set(replies)) == 1
    assert await count(first, Ticket, openid=openid) == 1


async def test_duplicate_events_are_deduplicated_by_sender_time_and_event(client, sender, new_openid):
    openid = new_openid()
    subscribe = wechat.event(openid, "subscribe", create_time=1700000000)
    first = await sender.reply(subscribe)
    again = await sender.reply(subscribe)
    assert first == again
    assert await count(client, InboundMessage, openid=openid) == 1
    # The same event type at another time is a new event.
    await sender.reply(wechat.event(openid, "subscribe", create_time=1700000100))
    assert await count(client, InboundMessage, openid=openid) == 2


async def test_crash_mid_request_loses_nothing_and_the_retry_creates_the_ticket(client, sender, new_openid,
                                                                                 monkeypatch: pytest.MonkeyPatch):
    openid = new_openid()
    await consented(sender, openid)
    import bot.casework.tickets

    real_notify = bot.casework.tickets.notify_staff
    crashes = {"left": 1}

    def crash_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("simulated crash after the ticket row was written")
        return real_notify(*args, **kwargs)

    monkeypatch.setattr(bot.casework.tickets, "notify_staff", crash_once)
    message = wechat.text(openid, COMPLAINT)
    failed = await sender.post(message)
    assert failed.status == 503  # WeChat will retry
    assert "retry" in await failed.text()
    # Nothing half-done is left behind: no ticket; the delivery is recorded, undone and free
    # to be claimed by the retry (write-ahead intake).
    assert await count(client, Ticket, openid=openid) == 0
    record = await inbound_record(client, message)
    assert (record.done_at, record.claim_token, record.attempts, record.last_error) == (None, None, 1,
                                                                                        "RuntimeError")
    retry = await sender.reply(message)
    assert "编号" in retry
    assert await count(client, Ticket, openid=openid) == 1
    record = await inbound_record(client, message)
    assert record.done_at is not None and record.attempts == 2 and record.reply == retry


async def test_dialog_state_survives_a_restart(aiohttp_client, settings, new_openid):
    openid = new_openid()
    first = await aiohttp_client(create_app(settings))
    sender = wechat.Sender(first)
    await consented(sender, openid)
    started = await sender.reply(wechat.text(openid, "我家楼下"))  # too vague: a draft starts
    assert "回复「1」提交" in started
    await sender.reply(wechat.image(openid, media_id="media-before-restart"))
    await first.close()  # the process goes away mid-dialog

    second = await aiohttp_client(create_app(settings))
    resumed = wechat.Sender(second)
    await resumed.reply(wechat.text(openid, "垃圾桶满了好几天没人清运，味道很大"))
    done = await resumed.reply(wechat.text(openid, "1"))
    assert "编号" in done
    async with services_of(second).db.session() as s:
        ticket = (await s.exec(select(Ticket).where(Ticket.openid == openid))).one()
        dialog = await s.get(DialogState, openid)
    assert "我家楼下" in ticket.description and "垃圾桶" in ticket.description
    assert ticket.category == "garbage"
    assert dialog is not None and dialog.state == "after_ticket"


async def test_slow_handling_answers_success_in_time_and_replies_by_customer_service_message(
        aiohttp_client, settings, new_openid, monkeypatch: pytest.MonkeyPatch):
    client = await aiohttp_client(create_app(settings.replace(wechat={"reply_budget_seconds": "0.3"})))
    sender = wechat.Sender(client)
    openid = new_openid()
    await consented(sender, openid)
    import bot.dialogs.report

    real_submit = bot.dialogs.report.submit

    async def slow_submit(*args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.8)  # e.g. a lock held by another worker
        return await real_submit(*args, **kwargs)

    monkeypatch.setattr(bot.dialogs.report, "submit", slow_submit)
    started = asyncio.get_running_loop().time()
    quick = await sender.reply(wechat.text(openid, COMPLAINT))
    assert quick == ""  # a bare 'success' inside WeChat's 5 s
    assert asyncio.get_running_loop().time() - started < 0.7
    services = services_of(client)
    await services.tasks.drain()
    from storage.models import Outbox

    async with services.db.session() as s:
        rows = (await s.exec(select(Outbox).where(Outbox.openid == openid))).all()
    [late] = rows
    assert "编号" in late.payload["content"]  # the ticket reply, sent as a customer-service message
    assert await count(client, Ticket, openid=openid) == 1
