"""Exactly-once handling of WeChat deliveries.

WeChat retries a message three times when no answer comes within 5 s, and an
attacker may replay one inside the timestamp window. Each delivery is keyed
(MsgId, or FromUserName+CreateTime+Event for events):
  * in this process, a retry that arrives while the first attempt runs awaits it
    and returns the same reply;
  * a delivery this process answered lately is answered again from memory;
  * across processes, the unique key in `inbound_message` is inserted in the same
    transaction as the ticket and the reply, so a second process's transaction
    waits on that key, fails, rolls back (its ticket with it) and returns the
    stored reply.
A crash mid-request rolls the whole transaction back, so WeChat's retry starts clean.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from bot.clock import utcnow
from bot.dialogs.dispatch import dispatch
from bot.services import Services
from bot.wechat.inbound import Inbound
from storage.models import InboundMessage

log = logging.getLogger(__name__)

SENSITIVE_FIELDS = ("Encrypt",)


RECENT_REPLIES = 4096

# Built once; the values come as execute() parameters (cheaper than .values() each time).
_INSERT_INBOUND = insert(InboundMessage)


class Inbox:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._inflight: dict[str, asyncio.Future[str | None]] = {}
        # Replies this process gave lately: WeChat's retries and replays are answered
        # from here without touching the database.
        self._recent: OrderedDict[str, str | None] = OrderedDict()

    async def handle(self, msg: Inbound) -> str | None:
        """The reply text for this delivery (None = 'success'), computed once."""
        key = msg.dedupe_key
        while True:
            running = self._inflight.get(key)
            if running is not None:
                try:
                    return await asyncio.shield(running)
                except Exception:
                    continue  # the first attempt failed; try ourselves
            if key in self._recent:
                return self._recent[key]
            future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            try:
                reply = await self._process(msg, key)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters re-run, nobody else needs it
                raise
            else:
                future.set_result(reply)
                self._remember(key, reply)
                return reply
            finally:
                del self._inflight[key]

    def _remember(self, key: str, reply: str | None) -> None:
        self._recent[key] = reply
        if len(self._recent) > RECENT_REPLIES:
            self._recent.popitem(last=False)

    async def _stored_reply(self, key: str) -> tuple[bool, str | None]:
        async with self.services.db.session() as s:
            row = (await s.exec(select(InboundMessage.reply).where(InboundMessage.dedupe_key == key))).first()
        if row is None:
            return False, None
        return True, row or None

    async def _process(self, msg: Inbound, key: str) -> str | None:
        try:
            async with self.services.db.transaction() as db:
                reply, session = await dispatch(self.services, db, msg, key)
                # Written last, with the reply: if another worker committed this key
                # first, the unique index fails this insert and everything rolls back.
                # A Core insert: one per delivery, and nothing reads the row back here.
                connection = await db.connection()
                await connection.execute(_INSERT_INBOUND, dict(
                    dedupe_key=key, openid=msg.openid, msg_type=msg.msg_type, event=msg.event or None,
                    received_at=utcnow(), reply=reply or "",
                    payload={k: v for k, v in msg.fields.items() if k not in SENSITIVE_FIELDS}))
        except IntegrityError:
            found, reply = await self._stored_reply(key)
            if found:
                return reply
            raise
        session.run_after_commit()
        return reply
