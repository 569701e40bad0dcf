"""Rows of the transactional outbox, written in the caller's transaction.

The ticket domain (bot/casework) queues messages through these functions and never
imports the WeChat boundary; bot/wechat/outbox.py delivers the rows after commit.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import utcnow
from storage.models import Outbox

_INSERT_OUTBOX = insert(Outbox)


def text_row(openid: str, content: str, *, title: str = "", url: str | None = None,
             status: str = "pending") -> dict[str, Any]:
    """The column values of a queued text message: one definition for the ORM path
    (enqueue_text) and the bulk Core insert a new ticket uses (insert_rows)."""
    return {"kind": "text", "openid": openid, "payload": {"content": content, "title": title or content[:20], "url": url},
            "status": status, "attempts": 0, "created_at": utcnow()}


def template_row(openid: str, notice: str, template_id: str, data: dict[str, Any], text: str, *,
                 title: str = "", url: str | None = None, status: str = "pending") -> dict[str, Any]:
    """A template message (a staff notice): `notice` names its kind (config/notices.toml),
    `data` holds the template's keyword fields, `text` is the plain version kept for the
    record and for a customer-service message when the template cannot be sent."""
    return {"kind": "template", "openid": openid,
            "payload": {"notice": notice, "template_id": template_id, "data": data, "content": text,
                        "title": title or text[:20], "url": url},
            "status": status, "attempts": 0, "created_at": utcnow()}


def enqueue_text(session: AsyncSession, openid: str, content: str, *, title: str = "",
                 url: str | None = None, status: str = "pending") -> Outbox:
    """Queue a message to one person. The sender picks the channel: customer-service
    message first, then template, then subscription message."""
    row = Outbox(**text_row(openid, content, title=title, url=url, status=status))
    session.add(row)
    return row


async def insert_rows(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Queue several messages with one Core executemany in the caller's transaction:
    on the hot path (a new ticket) this is several times cheaper than ORM objects."""
    if rows:
        await connection.execute(_INSERT_OUTBOX, rows)


def record_offline(session: AsyncSession, kind: str, payload: dict[str, Any], openid: str | None = None) -> Outbox:
    """A direct call (menu push, media download) that offline mode did not make."""
    row = Outbox(kind=kind, openid=openid, payload=payload, status="offline", created_at=utcnow())
    session.add(row)
    return row


class OutboxPort(Protocol):
    """What the ticket domain needs of the outbox: rows in the right initial status
    (offline mode records instead of sending) and a nudge after commit."""

    @property
    def new_status(self) -> str: ...

    def text_row(self, openid: str, content: str, *, title: str = "", url: str | None = None) -> dict[str, Any]: ...

    def kick(self) -> None: ...
