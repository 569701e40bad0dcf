"""Simulator sessions: one per browser, kept in memory (a dev/demo tool).

A session is named by a random cookie. It owns the resident openids it created (derived
from its id with a per-app key, so they cannot be guessed from each other) and the photos
it uploaded. The table is an LRU of `Limits.sessions` entries; an evicted session's
photos are deleted, and so are all of them when the app stops.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from bot.sim.errors import SimError, size_text

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


@dataclass
class Limits:
    sessions: int = 1000  # sessions kept (LRU)
    residents: int = 20  # openids per session
    upload_bytes: int = 5 * 1024 * 1024  # one photo
    uploads_per_minute: int = 10  # per session
    stored_bytes: int = 20 * 1024 * 1024  # all photos of one session


@dataclass
class Photo:
    name: str  # file name under the media folder, e.g. sim-0123456789abcdef.jpg
    size: int


@dataclass
class SimSession:
    id: str
    openids: list[str] = field(default_factory=list)
    photos: dict[str, Photo] = field(default_factory=dict)  # media_id -> photo
    uploads: deque[float] = field(default_factory=deque)  # monotonic times of upload attempts

    @property
    def stored_bytes(self) -> int:
        return sum(p.size for p in self.photos.values())

    def photo_named(self, name: str) -> Photo | None:
        return next((p for p in self.photos.values() if p.name == name), None)


class SimSessions:
    def __init__(self, folder: Path, limits: Limits | None = None) -> None:
        self.folder = folder
        self.limits = limits or Limits()
        self._key = secrets.token_bytes(32)
        self._sessions: OrderedDict[str, SimSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def resolve(self, cookie: str | None) -> tuple[SimSession, bool]:
        """The session the cookie names, or a new one: (session, is_new)."""
        if cookie and SESSION_ID.fullmatch(cookie) and cookie in self._sessions:
            self._sessions.move_to_end(cookie)
            return self._sessions[cookie], False
        return self._create(), True

    def _create(self) -> SimSession:
        session = SimSession(secrets.token_urlsafe(32))
        self._sessions[session.id] = session
        while len(self._sessions) > self.limits.sessions:
            _, oldest = self._sessions.popitem(last=False)
            self._delete_photos(oldest)
        return session

    def new_resident(self, session: SimSession) -> str:
        if len(session.openids) >= self.limits.residents:
            raise SimError(429, f"每个模拟会话最多 {self.limits.residents} 位居民，请继续使用已有身份")
        digest = hmac.new(self._key, f"{session.id}/{len(session.openids)}".encode(), hashlib.sha256)
        openid = "o-sim-" + digest.hexdigest()[:20]
        session.openids.append(openid)
        return openid

    def residents(self, session: SimSession) -> list[str]:
        """The session's openids; a new session gets its first resident."""
        if not session.openids:
            self.new_resident(session)
        return list(session.openids)

    def count_upload(self, session: SimSession, now: float | None = None) -> None:
        """One upload attempt; 429 past the per-minute limit."""
        now = time.monotonic() if now is None else now
        while session.uploads and now - session.uploads[0] >= 60:
            session.uploads.popleft()
        if len(session.uploads) >= self.limits.uploads_per_minute:
            raise SimError(429, f"上传太频繁：每分钟最多 {self.limits.uploads_per_minute} 张照片，请稍后再试")
        session.uploads.append(now)

    def store_photo(self, session: SimSession, data: bytes, extension: str) -> tuple[str, Photo]:
        """Write the photo for this session: (media_id, photo); 413 past the session's total."""
        if session.stored_bytes + len(data) > self.limits.stored_bytes:
            raise SimError(413, f"本会话上传的照片总量已达上限（{size_text(self.limits.stored_bytes)}）")
        media_id = "sim-" + secrets.token_hex(8)
        photo = Photo(f"{media_id}.{extension}", len(data))
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / photo.name).write_bytes(data)
        session.photos[media_id] = photo
        return media_id, photo

    def _delete_photos(self, session: SimSession) -> None:
        for photo in session.photos.values():
            try:
                (self.folder / photo.name).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("simulator photo %s not deleted: %s", photo.name, exc)
        session.photos.clear()

    def close(self) -> None:
        """Forget every session and delete their photos (the app stops)."""
        for session in self._sessions.values():
            self._delete_photos(session)
        self._sessions.clear()
