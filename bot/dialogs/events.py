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
        log.warning("template message %s to %s: %s", msg.text("MsgID")[:32], "…" + msg.openid[-6:], status[:64])  # never a whole openid
    return None


# A template id is 43 characters; anything much longer is not one (and the list is kept
# in the dialog state, so it stays small).
MAX_TEMPLATE_ID = 128


async def subscribe_message_choice(msg: Inbound, session: Session) -> None:
    """subscribe_msg_popup/change events: remember which templates the resident accepts.
    One template or many (a <List> per template); entries without a usable id are skipped."""
    accepted = set(session.data.get("subscribed_templates", []))
    for entry in msg.entries("SubscribeMsgPopupEvent", "SubscribeMsgChangeEvent"):
        template = entry.get("TemplateId", "")
        if not template or len(template) > MAX_TEMPLATE_ID:
            continue
        if entry.get("SubscribeStatusString") == "accept":
            accepted.add(template)
        else:
            accepted.discard(template)
    session.update(subscribed_templates=sorted(accepted))
    return None


async def subscribe_message_sent(msg: Inbound, session: Session) -> None:
    """subscribe_msg_sent_event: delivery receipts, one per template sent."""
    for entry in msg.entries("SubscribeMsgSentEvent"):
        if entry.get("ErrorCode", "0") != "0":
            log.warning("subscription message %s to %s failed: %s %s", entry.get("MsgID", "")[:32], "…" + msg.openid[-6:],
                        entry.get("ErrorCode", "")[:16], entry.get("ErrorStatus", "")[:64])
    return None
