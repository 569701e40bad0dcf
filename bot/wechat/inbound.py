"""An inbound message or event, reduced to what the dialogs need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class BadMessage(ValueError):
    """Parsed XML that lacks the fields every WeChat message has."""


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Inbound:
    account: str  # ToUserName: our official account
    openid: str  # FromUserName: the resident
    create_time: int
    msg_type: str  # text, image, voice, ..., event
    event: str = ""  # lower-case event name for msg_type == "event"
    msg_id: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> "Inbound":
        try:
            account = str(fields["ToUserName"])
            openid = str(fields["FromUserName"])
            create_time = int(str(fields["CreateTime"]).strip())
            msg_type = str(fields["MsgType"]).strip().lower()
        except (KeyError, ValueError) as exc:
            raise BadMessage(f"missing or invalid field: {exc}") from None
        if not openid or not msg_type or len(openid) > 64:
            raise BadMessage("empty FromUserName or MsgType")
        event = str(fields.get("Event") or "").strip().lower() if msg_type == "event" else ""
        return cls(account, openid, create_time, msg_type, event, str(fields.get("MsgId") or ""), fields)

    @property
    def kind(self) -> str:
        """The registry key: 'text', 'image', ... or 'event:subscribe', 'event:click', ..."""
        return f"event:{self.event}" if self.msg_type == "event" else self.msg_type

    @property
    def dedupe_key(self) -> str:
        """MsgId for messages; FromUserName+CreateTime+Event for events (they carry no id)."""
        if self.msg_id:
            return f"m:{self.msg_id}"
        return f"e:{self.openid}:{self.create_time}:{self.event}:{self.fields.get('EventKey') or ''}"[:160]

    def text(self, name: str) -> str:
        value = self.fields.get(name)
        return value.strip() if isinstance(value, str) else ""

    @property
    def content(self) -> str:
        """What the resident said: typed text, or the voice recognition result."""
        if self.msg_type == "text":
            return self.text("Content")
        if self.msg_type == "voice":
            return self.text("Recognition")
        return ""

    @property
    def location(self) -> tuple[float, float] | None:
        """(lat, lng) of a location message or LOCATION event."""
        if self.msg_type == "location":
            lat, lng = _float(self.fields.get("Location_X")), _float(self.fields.get("Location_Y"))
        else:
            lat, lng = _float(self.fields.get("Latitude")), _float(self.fields.get("Longitude"))
        if lat is None or lng is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
            return None
        return lat, lng
