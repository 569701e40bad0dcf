"""What a resident does, as steps tests share: follow and consent, report, and look at
what came of it (their tickets, the messages queued to someone). One place, so a change
to the conversation changes one helper, not a dozen files."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from sqlmodel import col, select

from storage.models import AuditEntry, Outbox, Staff, Ticket
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


async def staff_member(client: Any, login: str) -> Staff:
    """A staff row by 工号, as the database has it now."""
    async with services_of(client).db.session() as s:
        return (await s.exec(select(Staff).where(Staff.login == login))).one()


async def actor_code(client: Any, login: str) -> str:
    """The audit-trail code of a staff member (bot.casework.actors), e.g. staff:9."""
    return f"staff:{(await staff_member(client, login)).id}"


async def audit_entries(client: Any, target: str | None = None) -> list[AuditEntry]:
    """Audit rows, oldest first; only those about `target` (e.g. a ticket number) when given."""
    statement = select(AuditEntry).order_by(col(AuditEntry.id))
    if target is not None:
        statement = statement.where(AuditEntry.target == target)
    async with services_of(client).db.session() as s:
        return list((await s.exec(statement)).all())


async def invite(client: Any, login: str) -> str:
    """A one-time binding code for the staff member with this 工号 (as `minyi staff invite` makes)."""
    from bot.casework.invites import create_invite
    from bot.clock import utcnow

    async with services_of(client).db.transaction() as s:
        staff = (await s.exec(select(Staff).where(Staff.login == login))).one()
        return await create_invite(s, staff, utcnow())


async def bind_staff(client: Any, sender: wechat.Sender, login: str, openid: str) -> str:
    """The staff member `login` binds the WeChat `openid` by chat (「绑定 CODE」); returns the reply."""
    code = await invite(client, login)
    reply = await sender.reply(wechat.text(openid, f"绑定 {code}"))
    assert "绑定成功" in reply, reply
    return reply


async def staff_act(capsys: pytest.CaptureFixture[str], number: str, login: str, *actions: str,
                    note: str | None = None) -> str:
    """`minyi ticket act NUMBER ACTION --by LOGIN` for each action in turn (each must
    succeed; `note` goes with the last); the output of the last."""
    out = ""
    for index, action in enumerate(actions):
        extra = ["--note", note] if note and index == len(actions) - 1 else []
        code, out, err = await minyi(capsys, "ticket", "act", number, action, "--by", login, *extra)
        assert code == 0, (action, err)
    return out


async def events_of(client: Any, number: str) -> list[Any]:
    """A ticket's audit trail (TicketEvent rows), oldest first."""
    from storage.models import TicketEvent

    ticket = await ticket_by_number(client, number)
    async with services_of(client).db.session() as s:
        return list((await s.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                                  .order_by(col(TicketEvent.id)))).all())


async def ratings_of(client: Any, number: str) -> list[Any]:
    """A ticket's 回访 rounds (Rating rows), oldest first."""
    from storage.models import Rating

    ticket = await ticket_by_number(client, number)
    async with services_of(client).db.session() as s:
        return list((await s.exec(select(Rating).where(Rating.ticket_id == ticket.id).order_by(col(Rating.round)))).all())


async def parts_of(client: Any, number: str) -> list[Any]:
    """A joint ticket's co-department parts (TicketPart rows), in creation order."""
    from storage.models import TicketPart

    ticket = await ticket_by_number(client, number)
    async with services_of(client).db.session() as s:
        return list((await s.exec(select(TicketPart).where(TicketPart.ticket_id == ticket.id)
                                  .order_by(col(TicketPart.id)))).all())


# ---------------------------------------------------------------- the staff console

DEMO_PASSWORD = "minyi-demo-1"  # storage.seed.DEMO_PASSWORD, as the README documents it
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    found = CSRF_FIELD.search(page)
    assert found, page[:500]
    return found.group(1)


async def console_login(client: Any, login: str, password: str = DEMO_PASSWORD) -> Any:
    """Log in to /console as `login` (the client keeps the session cookie); the response
    of the login POST (303 to the queue on success)."""
    page = await client.get("/console/login")
    return await client.post("/console/login", data={"csrf": csrf_of(await page.text()), "login": login,
                                                     "password": password, "next": ""}, allow_redirects=False)


async def console_form(client: Any, path: str, page: str, **fields: Any) -> Any:
    """POST a console form with the CSRF token of `page` (a page of the same session)."""
    return await client.post(path, data={"csrf": csrf_of(page), **fields}, allow_redirects=False)


def inbound_record(key: str, **changes: Any) -> dict[str, Any]:
    """The columns of a write-ahead delivery record (storage.models.InboundMessage), for
    tests of the storage layer that write them directly."""
    from bot.clock import utcnow

    return {"dedupe_key": key, "openid": "o-storage", "msg_type": "text", "event": None, "payload": {},
            "reply": None, "received_at": utcnow(), "done_at": None, "claim_token": "t", "lease_until": None,
            "attempts": 1, "late": False, "last_error": None, **changes}
