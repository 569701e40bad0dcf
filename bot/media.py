"""Fetching residents' photos, voice and video from WeChat after the reply is sent.

Media ids expire after three days, so this runs right after the ticket commits;
offline mode records the download it did not make in the outbox.
"""

from __future__ import annotations

import logging

from sqlmodel import col, select

from bot.services import Services
from bot.wechat.client import WeChatAPIError
from bot.wechat.outbox import record_offline
from storage.models import Attachment

log = logging.getLogger(__name__)

EXTENSIONS = {"image": "jpg", "voice": "amr", "video": "mp4", "shortvideo": "mp4"}


async def download_ticket_media(services: Services, ticket_id: int, only: list[int] | None = None) -> int:
    """Download the ticket's attachments not yet stored (or just those in `only`);
    returns how many were stored."""
    async with services.db.transaction() as s:
        statement = select(Attachment).where(
            Attachment.ticket_id == ticket_id, Attachment.media_id != None,  # noqa: E711
            Attachment.local_path == None)  # noqa: E711
        if only is not None:
            statement = statement.where(col(Attachment.id).in_(only))
        pending = list((await s.exec(statement)).all())
        if services.wechat is None:
            for item in pending:
                record_offline(s, "media", {"media_id": item.media_id, "ticket_id": ticket_id,
                                            "attachment_id": item.id, "kind": item.kind})
            return 0
    stored = 0
    folder = services.settings.data_dir / "media" / str(ticket_id)
    for item in pending:
        try:
            content = await services.wechat.download_media(item.media_id or "")
        except WeChatAPIError as exc:
            log.warning("media %s of ticket %s not downloaded: %s", item.media_id, ticket_id, exc)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{item.id}.{EXTENSIONS.get(item.kind, 'bin')}"
        path.write_bytes(content)
        async with services.db.transaction() as s:
            row = await s.get(Attachment, item.id)
            if row is not None:
                row.local_path = str(path.relative_to(services.settings.data_dir))
                s.add(row)
        stored += 1
    return stored
