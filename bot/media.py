"""Fetching residents' photos, voice and video from WeChat after the reply is sent.

Media ids expire after three days, so this runs right after the ticket commits;
offline mode records the download it did not make in the outbox.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services import Services
from bot.wechat.client import WeChatAPIError
from storage.outbox_rows import record_offline
from storage.models import Attachment

log = logging.getLogger(__name__)

EXTENSIONS = {"image": "jpg", "voice": "amr", "video": "mp4", "shortvideo": "mp4"}


def fetch_media(services: Services, db: AsyncSession, ticket_id: int, attachments: list[Attachment],
                after_commit: Callable[[Callable[[], Any]], None]) -> None:
    """New attachments with a media id: downloaded after commit, or, offline, recorded
    in the outbox in this same transaction."""
    with_media = [a for a in attachments if a.media_id]
    if not with_media:
        return
    if services.wechat is None:
        for item in with_media:
            record_offline(db, "media", {"media_id": item.media_id, "ticket_id": ticket_id,
                                         "attachment_id": item.id, "kind": item.kind})
        return
    only = [a.id for a in with_media if a.id is not None]
    after_commit(lambda: services.tasks.spawn(download_ticket_media(services, ticket_id, only),
                                              name=f"media-{ticket_id}"))


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
