"""What staff add to a ticket without moving it: an internal note (内部备注, staff only,
never sent to the resident), 督办 (the handler is told to hurry), and a photo (e.g. of
the finished work, attached before 办结). Rights as for every action: refused and
audited through desk."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlmodel import select

from bot.casework import rights
from bot.casework.actors import Actor
from bot.casework.context import Casework
from bot.casework.desk import DeskError, Refused, audit_refusal
from bot.casework.notify import members, notice_rows, ticket_fields
from bot.clock import utcnow
from storage.models import Attachment, Ticket, TicketEvent
from storage.outbox_rows import insert_rows

COMMENT, SUPERVISE, ATTACH = "comment", "supervise", "attach"
SUPERVISION_NOTICE = "supervision"  # config/notices.toml
MAX_NOTE_CHARS = 2000
IMAGE_TYPES = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png", b"GIF87a": "gif", b"GIF89a": "gif"}
MAX_PHOTO_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Added:
    number: str
    event_id: int
    notices: int = 0


async def _locked(session, number: str) -> Ticket:  # type: ignore[no-untyped-def]
    ticket = (await session.exec(select(Ticket).where(Ticket.number == number).with_for_update()
                                 .execution_options(populate_existing=True))).first()
    if ticket is None or ticket.id is None:
        raise DeskError(f"没有工单 {number}")
    return ticket


def _note(text: str | None, required: bool) -> str | None:
    text = (text or "").strip()
    if required and not text:
        raise DeskError("请填写内容")
    if len(text) > MAX_NOTE_CHARS:
        raise DeskError(f"内容最多 {MAX_NOTE_CHARS} 字")
    return text or None


async def _add(case: Casework, number: str, action: str, actor: Actor, note: str | None,
               after=None) -> Added:  # type: ignore[no-untyped-def]
    try:
        async with case.db.transaction() as session:
            ticket = await _locked(session, number)
            reason = rights.refusal(case, actor, ticket, action)
            if reason:
                raise Refused(reason)
            assert ticket.id is not None
            event = TicketEvent(ticket_id=ticket.id, at=utcnow(), action=action, from_status=ticket.status,
                                to_status=ticket.status, actor=actor.code, note=note)
            session.add(event)
            await session.flush()
            rows = after(session, ticket, event) if after else []
            if rows:
                await insert_rows(await session.connection(), rows)
    except Refused as exc:
        await audit_refusal(case, actor, action, number, str(exc))
        raise
    if rows:
        case.outbox.kick()
    return Added(number, event.id or 0, len(rows))


async def comment(case: Casework, number: str, actor: Actor, text: str | None) -> Added:
    """An internal note: in the ticket's timeline for staff, never sent to the resident."""
    return await _add(case, number, COMMENT, actor, _note(text, required=True))


async def supervise(case: Casework, number: str, actor: Actor, text: str | None) -> Added:
    """督办: the handler (or, before anyone accepted it, the grid and department) is told."""
    note = _note(text, required=False) or "请抓紧办理"
    if actor.staff is None:
        raise DeskError("督办须由工作人员发起")

    def notices(session, ticket: Ticket, event: TicketEvent) -> list[dict]:  # type: ignore[no-untyped-def]
        handler = case.org.record(ticket.handler_id) if ticket.handler_id else None
        people = [handler] if handler is not None and handler.active else [p for p, _ in members(case, ticket, "handlers")]
        fields = {**ticket_fields(case, ticket), "by": actor.label, "note": note}
        return notice_rows(case, SUPERVISION_NOTICE, people, fields)

    return await _add(case, number, SUPERVISE, actor, note, notices)


def photo_extension(content: bytes) -> str:
    """The file type of an uploaded photo by its first bytes (JPEG, PNG, GIF), else DeskError."""
    if not content:
        raise DeskError("照片是空的")
    if len(content) > MAX_PHOTO_BYTES:
        raise DeskError(f"照片不能超过 {MAX_PHOTO_BYTES // 1024 // 1024} MB")
    for magic, extension in IMAGE_TYPES.items():
        if content.startswith(magic):
            return extension
    raise DeskError("只能上传 JPG、PNG 或 GIF 照片")


async def attach_photo(case: Casework, number: str, actor: Actor, content: bytes, label: str | None = None) -> Added:
    """A staff photo on the ticket: stored under data_dir/media/<ticket id>/, an
    attachment row naming who added it, and an event in the timeline."""
    extension = photo_extension(content)
    stored: dict[str, str] = {}

    def store(session, ticket: Ticket, event: TicketEvent) -> list[dict]:  # type: ignore[no-untyped-def]
        folder = case.data_dir / "media" / str(ticket.id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"staff-{uuid.uuid4().hex}.{extension}"
        path.write_bytes(content)  # an orphan file if the transaction fails; the row is the record
        stored["path"] = str(path.relative_to(case.data_dir))
        assert ticket.id is not None
        session.add(Attachment(ticket_id=ticket.id, kind="image", local_path=stored["path"],
                               label=(label or "工作人员上传")[:300], created_at=event.at, added_by=actor.code))
        return []

    return await _add(case, number, ATTACH, actor, _note(label, required=False) or "上传照片", store)
