"""What a resident does, as steps tests share: follow and consent, report, and look at
what came of it (their tickets, the messages queued to someone). One place, so a change
to the conversation changes one helper, not a dozen files."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from sqlmodel import col, select

from storage.models import Outbox, Ticket
from tests import wechat
from tests.conftest import services_of

NUMBER = re.compile(r"\d{8}-\d{4}")


async def follow(sender: wechat.Sender, openid: str) -> str:
    """Subscribe and agree to the privacy notice; returns the openid."""
    await sender.reply(wechat.event(openid, "subscribe"))
    await sender.reply(wechat.text(openid, "同意"))
    return openid


async def report(sender: wechat.Sender, openid: str, text: str) -> str:
    """The ticket number of a report; a draft that asks for more is submitted with 「1」."""
    reply = await sender.reply(wechat.text(openid, text))
    if not NUMBER.search(reply):
        reply = await sender.reply(wechat.text(openid, "1"))
    found = NUMBER.search(reply)
    assert found, reply
    return found.group(0)


async def tickets_of(client: Any, openid: str) -> list[Ticket]:
    async with services_of(client).db.session() as s:
        return list((await s.exec(select(Ticket).where(Ticket.openid == openid).order_by(col(Ticket.id)))).all())


async def ticket_by_number(client: Any, number: str) -> Ticket:
    async with services_of(client).db.session() as s:
        return (await s.exec(select(Ticket).where(Ticket.number == number))).one()


async def messages_to(client: Any, openid: str) -> list[str]:
    """Texts queued (or recorded offline) to one person, oldest first."""
    async with services_of(client).db.session() as s:
        rows = (await s.exec(select(Outbox).where(Outbox.openid == openid).order_by(col(Outbox.id)))).all()
    return [row.payload["content"] for row in rows if row.payload and "content" in row.payload]


async def minyi(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`minyi …` in a thread (it runs its own event loop) while the app keeps serving
    (with the `cli_env` fixture it uses the app's database)."""
    from bot.cli import main

    def run() -> int:
        try:
            return main(list(argv))
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1

    code = await asyncio.to_thread(run)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
