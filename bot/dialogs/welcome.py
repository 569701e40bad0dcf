"""Following, unfollowing, consent, privacy and data rights."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import select

from bot.clock import format_local
from bot.dialogs import texts
from bot.dialogs.session import Session
from bot.wechat.inbound import Inbound
from storage.models import Staff, Ticket

GRID_SCENE_PREFIX = "grid_"


def _bind_from_scene(session: Session, scene: str) -> str:
    """QR codes posted in a community carry scene 'grid_<code>': following binds that grid."""
    session.resident.scene = scene[:64] or session.resident.scene
    if scene.startswith(GRID_SCENE_PREFIX):
        code = scene[len(GRID_SCENE_PREFIX):]
        if session.services.areas.nodes.get(code):
            session.resident.home_area_code = code
            return "\n" + texts.BIND_DONE.format(area=session.services.areas.full_name(code))
    return ""


async def on_subscribe(msg: Inbound, session: Session) -> str:
    resident = session.resident
    resident.subscribed = True
    resident.subscribed_at = session.now
    resident.unsubscribed_at = None
    event_key = msg.text("EventKey")
    bound = _bind_from_scene(session, event_key.removeprefix("qrscene_")) if event_key else ""
    session.reset()
    if resident.consent_at:
        return texts.WELCOME + bound
    session.goto("consent")
    return f"{texts.WELCOME}{bound}\n\n{texts.PRIVACY}\n{texts.ASK_CONSENT}"


async def on_unsubscribe(msg: Inbound, session: Session) -> None:
    session.resident.subscribed = False
    session.resident.unsubscribed_at = session.now
    session.reset()
    return None


async def on_scan(msg: Inbound, session: Session) -> str | None:
    bound = _bind_from_scene(session, msg.text("EventKey"))
    return bound.strip() or None


async def privacy(msg: Inbound, session: Session) -> str:
    if session.consented:
        return texts.PRIVACY
    return f"{texts.PRIVACY}\n{texts.ASK_CONSENT}"


async def consent(msg: Inbound, session: Session) -> str:
    """'同意': record consent, then carry on with whatever the resident had started."""
    from bot.dialogs import report

    first_time = session.resident.consent_at is None
    if first_time:
        session.resident.consent_at = session.now
    pending, pending_evidence = session.data.get("pending"), session.data.get("pending_evidence")
    session.reset()
    if pending or pending_evidence:
        evidence = report.Evidence(**pending_evidence) if pending_evidence else None
        return texts.CONSENT_THANKS + "\n" + await report.begin(pending or "", session, evidence)
    return (texts.CONSENT_THANKS + "\n" + texts.HELP) if first_time else texts.HELP


async def my_data(msg: Inbound, session: Session) -> str:
    count = (await session.db.exec(select(func.count()).select_from(Ticket)
                                   .where(Ticket.openid == session.resident.openid))).one()
    area = session.services.areas.full_name(session.resident.home_area_code) or "未绑定"
    return texts.DATA_SUMMARY.format(subscribed=format_local(session.resident.subscribed_at) or "未知",
                                     area=area, tickets=count)


async def delete_my_data(msg: Inbound, session: Session) -> str:
    """Right to deletion (PIPL): a request the centre must act on, so it is queued to the
    centre's on-duty role ([hotline] notify_role, the dispatchers)."""
    role = session.services.settings.hotline.notify_role
    dispatchers = (await session.db.exec(select(Staff).where(Staff.role == role, Staff.active == True))).all()  # noqa: E712
    for person in dispatchers:
        if person.openid:
            session.services.outbox.queue_text(session.db, person.openid,
                         f"【个人信息删除申请】用户 {session.resident.openid[-6:]} 申请删除个人信息，请在15个工作日内处理。",
                         title="个人信息删除申请")
    session.after_commit(session.services.outbox.kick)
    return texts.DATA_DELETE_ACK
