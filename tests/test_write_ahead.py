"""Write-ahead intake: a delivery is recorded before it is answered, so nothing a
resident was answered for is ever forgotten — not by a crash, a late reply, an
exhausted pool or a poison message (bot/inbox.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlmodel import select

from bot.app import create_app
from bot.clock import utcnow
from bot.dialogs import texts
from bot.routes import INBOX
from storage.models import InboundMessage, Outbox
from tests import wechat
from tests.steps import follow as consented, tickets_of
from tests.conftest import services_of

COMPLAINT = "幸福里小区3号楼的电梯坏了三天了，老人下不了楼"




async def record_of(client: Any, message: dict[str, Any]) -> InboundMessage:
    async with services_of(client).db.session() as s:
        return (await s.exec(select(InboundMessage).where(
            InboundMessage.dedupe_key == f"m:{message['MsgId']}"))).one()




async def outbox_texts(client: Any, openid: str) -> list[str]:
    async with services_of(client).db.session() as s:
        rows = (await s.exec(select(Outbox).where(Outbox.openid == openid).order_by(Outbox.id))).all()
    return [r.payload["content"] for r in rows if r.kind == "text"]


async def left_by_a_dead_worker(client: Any, message: dict[str, Any], lease_left: float) -> None:
    """The row a worker killed right after the write-ahead commit leaves behind."""
    now = utcnow()
    async with services_of(client).db.engine.begin() as connection:
        await connection.execute(insert(InboundMessage), dict(
            dedupe_key=f"m:{message['MsgId']}", openid=message["FromUserName"], msg_type="text", event=None,
            received_at=now, reply=None, done_at=None, claim_token="dead-worker",
            lease_until=now + timedelta(seconds=lease_left), attempts=1, late=False,
            payload={k: str(v) for k, v in message.items()}))


def slow_submit(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    import bot.dialogs.report

    real_submit = bot.dialogs.report.submit

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(seconds)
        return await real_submit(*args, **kwargs)

    monkeypatch.setattr(bot.dialogs.report, "submit", slow)


def crash_in_ticket_creation(monkeypatch: pytest.MonkeyPatch, times: int) -> None:
    import bot.casework.tickets

    real_notify = bot.casework.tickets.notify_staff
    left = {"n": times}

    def crash(*args: Any, **kwargs: Any) -> Any:
        if left["n"]:
            left["n"] -= 1
            raise RuntimeError("simulated crash after the ticket row was written")
        return real_notify(*args, **kwargs)

    monkeypatch.setattr(bot.casework.tickets, "notify_staff", crash)


async def test_a_late_crash_is_finished_by_the_sweeper_with_its_reply(
        aiohttp_client, settings, new_openid, monkeypatch: pytest.MonkeyPatch):
    """'success' went out, then handling failed: the sweeper makes the ticket and queues
    the reply with its number in the same transaction."""
    client = await aiohttp_client(create_app(settings.replace(wechat={"reply_budget_seconds": "0.1"})))
    sender = wechat.Sender(client)
    openid = new_openid()
    await consented(sender, openid)
    slow_submit(monkeypatch, 0.3)
    crash_in_ticket_creation(monkeypatch, times=1)
    message = wechat.text(openid, COMPLAINT)
    assert await sender.reply(message) == ""  # acknowledged: WeChat will never retry it
    await services_of(client).tasks.drain()
    assert await tickets_of(client, openid) == []
    record = await record_of(client, message)
    assert (record.done_at, record.last_error) == (None, "RuntimeError")

    assert await client.server.app[INBOX].sweep() == 1
    [ticket] = await tickets_of(client, openid)
    [late_reply] = await outbox_texts(client, openid)
    assert ticket.number in late_reply
    record = await record_of(client, message)
    assert record.done_at is not None and record.late and record.attempts == 2
    assert await client.server.app[INBOX].sweep() == 0  # exactly once
    assert len(await tickets_of(client, openid)) == 1


async def test_a_delivery_left_by_a_killed_worker_is_finished_when_a_worker_starts(
        aiohttp_client, settings, new_openid):
    first = await aiohttp_client(create_app(settings))
    sender = wechat.Sender(first)
    openid = new_openid()
    await consented(sender, openid)
    message = wechat.text(openid, COMPLAINT)
    await left_by_a_dead_worker(first, message, lease_left=-1)
    await first.close()

    second = await aiohttp_client(create_app(settings))  # its sweeper runs at start
    for _ in range(100):
        if await tickets_of(second, openid):
            break
        await asyncio.sleep(0.05)
    [ticket] = await tickets_of(second, openid)
    await services_of(second).tasks.drain()
    assert [ticket.number in text for text in await outbox_texts(second, openid)] == [True]
    record = await record_of(second, message)
    assert record.done_at is not None and record.late and record.claim_token is None


async def test_a_retry_while_another_worker_holds_the_delivery_is_acknowledged_once(
        aiohttp_client, settings, new_openid):
    client = await aiohttp_client(create_app(settings.replace(wechat={"reply_budget_seconds": "0.3"})))
    sender = wechat.Sender(client)
    openid = new_openid()
    await consented(sender, openid)
    message = wechat.text(openid, COMPLAINT)
    await left_by_a_dead_worker(client, message, lease_left=60)  # a live claim elsewhere

    assert await sender.reply(message) == ""  # recorded by the other worker: 'success' is safe
    await services_of(client).tasks.drain()
    assert await tickets_of(client, openid) == []
    assert await client.server.app[INBOX].sweep() == 0  # its lease has not run out

    async with services_of(client).db.engine.begin() as connection:  # the other worker died
        await connection.exec_driver_sql(
            "UPDATE inbound_message SET lease_until = received_at WHERE claim_token = 'dead-worker'")
    assert await client.server.app[INBOX].sweep() == 1
    assert len(await tickets_of(client, openid)) == 1
    assert await sender.reply(message) == ""  # a later replay: the reply went by message
    assert len(await tickets_of(client, openid)) == 1


async def test_a_poison_delivery_is_given_up_and_the_resident_told(
        aiohttp_client, settings, new_openid, monkeypatch: pytest.MonkeyPatch):
    client = await aiohttp_client(create_app(settings.replace(
        wechat={"reply_budget_seconds": "0.3"}, intake={"max_attempts": "2"})))
    sender = wechat.Sender(client)
    openid = new_openid()
    await consented(sender, openid)
    crash_in_ticket_creation(monkeypatch, times=100)
    message = wechat.text(openid, COMPLAINT)
    assert [(await sender.post(message)).status for _ in range(2)] == [503, 503]
    assert await sender.reply(message) == ""  # no attempts left, but recorded: acknowledged
    await services_of(client).tasks.drain()
    assert (await record_of(client, message)).attempts == 2

    assert await client.server.app[INBOX].sweep() == 1
    assert await tickets_of(client, openid) == []
    assert await outbox_texts(client, openid) == [texts.INTAKE_FAILED]
    record = await record_of(client, message)
    assert record.done_at is not None and record.last_error == "gave up after 2 attempts"


async def test_an_exhausted_pool_answers_503_before_anything_is_recorded(aiohttp_client, settings, new_openid):
    client = await aiohttp_client(create_app(settings.replace(
        database={"pool_size": "1", "pool_timeout_seconds": "0.2"})))
    sender = wechat.Sender(client)
    openid = new_openid()
    await consented(sender, openid)
    engine = services_of(client).db.engine
    held = [await engine.connect() for _ in range(1 if services_of(client).db.is_sqlite else 2)]
    try:
        message = wechat.text(openid, COMPLAINT)
        refused = await sender.post(message)
        assert refused.status == 503
    finally:
        for connection in held:
            await connection.close()
    async with services_of(client).db.session() as s:
        assert (await s.exec(select(InboundMessage).where(
            InboundMessage.dedupe_key == f"m:{message['MsgId']}"))).first() is None
    assert "编号" in await sender.reply(message)  # WeChat's retry is served
    assert len(await tickets_of(client, openid)) == 1


async def test_of_two_attempts_only_the_claim_holder_commits(
        aiohttp_client, settings, database_url, new_openid, monkeypatch: pytest.MonkeyPatch):
    """A slow attempt loses its lease to another worker's sweeper: the sweeper's ticket
    stands, the slow attempt's completion finds its claim gone and rolls back."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite holds the write lock for the whole handling: the sweeper waits, it cannot race")
    fast_lease = settings.replace(intake={"lease_seconds": "0.2"}, wechat={"reply_budget_seconds": "0.1"})
    first = await aiohttp_client(create_app(fast_lease))
    second = await aiohttp_client(create_app(fast_lease.replace(database={"auto_migrate": "false"},
                                                                demo={"load": "false"})))
    sender = wechat.Sender(first)
    openid = new_openid()
    await consented(sender, openid)
    slow_submit(monkeypatch, 1.0)  # both apps share the patched module: the sweeper is slow too
    message = wechat.text(openid, COMPLAINT)
    assert await sender.reply(message) == ""
    await asyncio.sleep(0.4)  # the first attempt's lease has run out; it is still working
    assert await second.server.app[INBOX].sweep() == 1
    await services_of(first).tasks.drain()
    [ticket] = await tickets_of(first, openid)
    replies = await outbox_texts(first, openid)
    assert [ticket.number in text for text in replies] == [True]


async def test_a_retry_acknowledged_elsewhere_makes_the_slow_attempt_reply_by_message(
        aiohttp_client, settings, database_url, new_openid, monkeypatch: pytest.MonkeyPatch):
    """WeChat gave up on the first attempt's connection and retried on another worker,
    which answered 'success'. The first attempt, still within its own budget, must not
    put its reply only in an HTTP answer nobody reads: it goes by customer-service message."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite holds the write lock for the whole handling: the retry waits, it cannot join")
    first = await aiohttp_client(create_app(settings.replace(wechat={"reply_budget_seconds": "4"})))
    second = await aiohttp_client(create_app(settings.replace(
        wechat={"reply_budget_seconds": "0.3"}, database={"auto_migrate": "false"}, demo={"load": "false"})))
    openid = new_openid()
    await consented(wechat.Sender(first), openid)
    slow_submit(monkeypatch, 1.5)
    message = wechat.text(openid, COMPLAINT)
    original = asyncio.ensure_future(wechat.Sender(first).reply(message))
    await asyncio.sleep(0.5)  # recorded by the first worker, still handling
    assert await wechat.Sender(second).reply(message) == ""  # the retry: acknowledged
    await original  # whatever it answers, WeChat no longer listens on that connection
    await services_of(first).tasks.drain()
    [ticket] = await tickets_of(first, openid)
    assert [ticket.number in text for text in await outbox_texts(first, openid)] == [True]
    assert (await record_of(first, message)).late is True
