"""Events that need no conversation: reported location, link clicks, template and
subscription-message receipts. They are stored or logged and answered 'success'."""

from __future__ import annotations

import logging

from bot.dialogs.session import Session
from bot.wechat.inbound import Inbound

log = logging.getLogger(__name__)


async def remember_location(msg: Inbound, session: Session) -> None:
    """LOCATION event (the account's location reporting): kept for the next report."""
    if msg.location:
        session.update(last_location=list(msg.location), last_location_at=session.now.isoformat())
    return None


async def ignore(msg: Inbound, session: Session) -> None:
    return None


async def template_finished(msg: Inbound, session: Session) -> None:
    status = msg.text("Status")
    if status != "success":
        log.warning("template message %s to %s: %s", msg.text("MsgID"), msg.openid, status)
    return None


async def subscribe_message_choice(msg: Inbound, session: Session) -> None:
    """subscribe_msg_popup/change events: remember which templates the resident accepts."""
    items = msg.fields.get("SubscribeMsgPopupEvent") or msg.fields.get("SubscribeMsgChangeEvent") or {}
    entries = items.get("List", []) if isinstance(items, dict) else []
    entries = entries if isinstance(entries, list) else [entries]
    accepted = set(session.data.get("subscribed_templates", []))
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        template = entry.get("TemplateId", "")
        if entry.get("SubscribeStatusString") == "accept":
            accepted.add(template)
        else:
            accepted.discard(template)
    session.update(subscribed_templates=sorted(accepted))
    return None


async def subscribe_message_sent(msg: Inbound, session: Session) -> None:
    items = msg.fields.get("SubscribeMsgSentEvent") or {}
    log.info("subscription message receipt for %s: %s", msg.openid, items)
    return None
