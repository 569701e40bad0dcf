"""Short answers to what is not a report: greetings, thanks, goodbyes, text with no
substance, and 转人工 (the hotline number and hours; on-duty staff told in service hours)."""

from __future__ import annotations

from datetime import datetime, time

from bot.clock import to_local
from bot.dialogs import texts
from bot.dialogs.session import Session
from bot.wechat.inbound import Inbound


async def greet(msg: Inbound, session: Session) -> str:
    return texts.GREETING


async def thanks(msg: Inbound, session: Session) -> str:
    return texts.THANKS


async def goodbye(msg: Inbound, session: Session) -> str:
    return texts.GOODBYE


async def no_substance(msg: Inbound, session: Session) -> str:
    """Gibberish, emoji, single characters: never a ticket, a friendly prompt instead."""
    return texts.NO_SUBSTANCE


def _in_service_hours(session: Session, now: datetime) -> bool:
    start_text, _, end_text = session.settings.hotline.hours.partition("-")
    local = to_local(now)
    start, end = time.fromisoformat(start_text.strip()), time.fromisoformat(end_text.strip())
    return session.services.sla.calendar.is_working_day(local.date()) and start <= local.time() < end


async def human(msg: Inbound, session: Session) -> str:
    """转人工: the hotline and its hours; inside them the on-duty staff hear of it."""
    hotline = session.settings.hotline
    if not _in_service_hours(session, session.now):
        return texts.HUMAN_OUT_OF_HOURS.format(number=hotline.number, hours=hotline.hours)
    who = session.resident.openid[-6:]
    for person in session.services.case.org.staff:
        if person.openid and person.role == hotline.notify_role:
            session.services.outbox.queue_text(session.db, person.openid, texts.HUMAN_NOTICE.format(who=who),
                                               title="转人工")
    session.after_commit(session.services.outbox.kick)
    return texts.HUMAN_IN_HOURS.format(number=hotline.number, hours=hotline.hours)
