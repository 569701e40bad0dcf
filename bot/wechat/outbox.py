"""The transactional outbox: messages are written with the change that causes them
and delivered after commit, so a crash can delay a message but never lose one.

With no app secret (offline mode) rows are marked `offline` instead of sent: the
outbox is then the record of what minyi would have sent.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import utcnow
from bot.settings import WeChatSettings
from bot.wechat.client import (API_DAILY_LIMIT, CUSTOM_QUOTA, SYSTEM_BUSY, TOKEN_INVALID, WINDOW_CLOSED, WeChatAPIError,
                               WeChatClient)
from storage.db import Database
from storage.models import Outbox
from storage.outbox_rows import enqueue_text, text_row

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
STALE_SENDING = timedelta(minutes=5)
RETRIES_EXHAUSTED = -2  # the client's code for network errors after its retries
# Template errors worth retrying as a template (the client already retried busy and token
# errors); any other refusal (bad template id, data, not following…) falls back to text.
TEMPLATE_RETRY = frozenset({SYSTEM_BUSY, API_DAILY_LIMIT, RETRIES_EXHAUSTED, *TOKEN_INVALID})


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(3600, 30 * 2 ** max(0, attempts - 1)))


class OutboxSender:
    def __init__(self, db: Database, settings: WeChatSettings, client: WeChatClient | None) -> None:
        self.db = db
        self.settings = settings
        self.client = client
        self._wake = asyncio.Event()
        self._running: asyncio.Task[None] | None = None

    @property
    def offline(self) -> bool:
        return self.client is None or self.settings.offline

    def queue_text(self, session: AsyncSession, openid: str, content: str, *, title: str = "",
                   url: str | None = None) -> Outbox:
        """Queue a message in the caller's transaction; offline it is recorded, not sent."""
        return enqueue_text(session, openid, content, title=title, url=url, status=self.new_status)

    @property
    def new_status(self) -> str:
        """Status of a newly queued message: offline mode records instead of sending."""
        return "offline" if self.offline else "pending"

    def text_row(self, openid: str, content: str, *, title: str = "", url: str | None = None) -> dict[str, Any]:
        """Like queue_text, but the row's values, for insert_rows."""
        return text_row(openid, content, title=title, url=url, status=self.new_status)

    def kick(self) -> None:
        """Deliver pending rows soon (called after a commit that queued some)."""
        if self.offline:
            return
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self.deliver_pending(), name="outbox")
        else:
            self._wake.set()

    async def close(self) -> None:
        if self._running is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._running), timeout=10)
            except asyncio.TimeoutError:
                self._running.cancel()

    async def deliver_pending(self, limit: int = 100) -> int:
        """Deliver due rows until none are left; returns how many were handled."""
        handled = 0
        while True:
            self._wake.clear()
            now = utcnow()
            async with self.db.transaction() as s:
                await s.exec(update(Outbox).where(Outbox.status == "sending",
                                                  Outbox.next_attempt_at < now - STALE_SENDING)
                             .values(status="pending"))
                rows = (await s.exec(
                    select(Outbox).where(
                        or_(Outbox.status == "pending",
                            (Outbox.status == "deferred") & (Outbox.next_attempt_at <= now)))
                    .order_by(Outbox.id).limit(limit))).all()
                claimed = []
                for row in rows:
                    result = await s.exec(update(Outbox).where(Outbox.id == row.id, Outbox.status == row.status)
                                          .values(status="sending", next_attempt_at=now))
                    if result.rowcount == 1:
                        claimed.append(row)
            if not claimed:
                if self._wake.is_set():
                    continue
                return handled
            for row in claimed:
                await self._deliver(row)
                handled += 1

    async def _deliver(self, row: Outbox) -> None:
        values: dict[str, Any]
        if self.offline:
            values = {"status": "offline"}
        else:
            try:
                channel = await self._send(row)
                values = {"status": "sent", "channel": channel, "sent_at": utcnow(), "attempts": row.attempts + 1}
            except WeChatAPIError as exc:
                attempts = row.attempts + 1
                give_up = attempts >= MAX_ATTEMPTS and exc.errcode != API_DAILY_LIMIT
                delay = timedelta(hours=1) if exc.errcode == API_DAILY_LIMIT else _backoff(attempts)
                values = {"status": "failed" if give_up else "deferred", "attempts": attempts,
                          "last_error": str(exc)[:300], "next_attempt_at": utcnow() + delay}
                log.warning("outbox %s: %s", row.id, exc)
        async with self.db.transaction() as s:
            await s.exec(update(Outbox).where(Outbox.id == row.id).values(**values))

    async def _send(self, row: Outbox) -> str:
        assert self.client is not None
        payload = row.payload or {}
        if row.kind == "text":
            try:
                await self.client.send_custom_text(row.openid or "", payload["content"])
                return "custom"
            except WeChatAPIError as exc:
                if exc.errcode not in (WINDOW_CLOSED, CUSTOM_QUOTA):
                    raise
            return await self._fallback(row.openid or "", payload)
        if row.kind == "template":
            return await self._send_template(row.openid or "", payload)
        raise WeChatAPIError(-4, f"unknown outbox kind {row.kind}")

    async def _send_template(self, openid: str, payload: dict[str, Any]) -> str:
        """A staff notice as a template message; refused for good (a wrong template id or
        data, …), its plain text as a customer-service message instead."""
        assert self.client is not None
        try:
            await self.client.send_template(openid, payload["template_id"], payload.get("data") or {},
                                            payload.get("url"))
            return "template"
        except WeChatAPIError as exc:
            if exc.errcode in TEMPLATE_RETRY:
                raise
            log.warning("template %s (%s) refused (%s): sent as text", payload.get("notice"),
                        payload.get("template_id"), exc.errcode)
        await self.client.send_custom_text(openid, payload["content"])
        return "custom"

    async def _fallback(self, openid: str, payload: dict[str, Any]) -> str:
        """Window closed or quota used: a template message, else a subscription message."""
        assert self.client is not None
        data = {"first": {"value": payload.get("title", "")}, "remark": {"value": payload["content"][:200]}}
        if self.settings.fallback_template_id:
            try:
                await self.client.send_template(openid, self.settings.fallback_template_id, data, payload.get("url"))
                return "template"
            except WeChatAPIError as exc:
                if not self.settings.fallback_subscribe_template_id:
                    raise
                log.info("template fallback failed (%s), trying subscription message", exc.errcode)
        if self.settings.fallback_subscribe_template_id:
            sub_data = {"thing1": {"value": payload.get("title", "")[:20]},
                        "thing2": {"value": payload["content"][:20]}}
            await self.client.send_subscribe(openid, self.settings.fallback_subscribe_template_id, sub_data,
                                             payload.get("url"))
            return "subscribe"
        raise WeChatAPIError(WINDOW_CLOSED, "window closed and no fallback template configured")
