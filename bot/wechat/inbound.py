"""An inbound message or event, reduced to what the dialogs need.

This is the boundary between what WeChat (or anyone holding the token) sends and the
dialogs and tables. `Inbound.from_fields` takes the generic shape `parse_xml` returns
(text, nested dict, or a list when an element repeats) and:
  * refuses (BadMessage → 400) what no WeChat message looks like: header fields that
    are missing or not text, a CreateTime that is not a Unix time, a MsgId that is not
    a 64-bit number, an empty or overlong FromUserName;
  * treats an overlong or malformed MsgType or Event as an unknown type ('success');
  * reduces every field the dialogs read as text to one string (a repeated element
    gives its first text, a nested one none) and cuts or drops it to the width of the
    column it ends up in, the same on every backend;
so handlers read `msg.text(name)` and `msg.entries(container)` and never see the
protocol's shapes. `from_fields(from_fields(x).fields)` is the same message: the
fields are stored and may be read back (a delivery finished later).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

# Widths of the columns these values are written to (storage/models.py).
OPENID_WIDTH = 64  # resident.openid, inbound_message.openid, ticket.openid
MSG_TYPE_WIDTH = 32  # inbound_message.msg_type
EVENT_WIDTH = 64  # inbound_message.event
DEDUPE_KEY_WIDTH = 160  # inbound_message.dedupe_key, ticket.source_key

# Message fields copied into columns, and the width each may have there. Human text is
# cut; an identifier or URL that does not fit is not a real one and is dropped.
CUT_TO_WIDTH: dict[str, int] = {
    "Label": 200,  # attachment.label (300) and ticket.address (200)
    "Title": 300,  # attachment.label; a link's title also starts a report
    # attachment.label of a voice message. WeChat voice messages last at most 60 s, which
    # recognition turns into fewer characters than this.
    "Recognition": 300,
}
DROP_OVER_WIDTH: dict[str, int] = {
    "MediaId": 160,  # attachment.media_id
    "ThumbMediaId": 160,
    "PicUrl": 500,  # attachment.url
    "Url": 500,
}
# Fields read as one text value: a repeated element counts once, a nested one is empty.
TEXT_FIELDS = frozenset({
    "ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId", "Event", "EventKey", "Ticket",
    "Content", "Format", "Location_X", "Location_Y", "Scale", "Latitude", "Longitude", "Precision",
    "Description", "Status", "MsgID", *CUT_TO_WIDTH, *DROP_OVER_WIDTH,
})

UNKNOWN = "unknown"  # the msg_type / event of something no WeChat message is
_TYPE_NAME = re.compile(r"[a-z0-9_]+")
_CREATE_TIME = re.compile(r"[0-9]{1,12}")  # a Unix time (10 digits until the year 2286)
_MSG_ID = re.compile(r"[0-9]{1,20}")  # WeChat's MsgId is a 64-bit number
_MAX_MSG_ID = 2**64 - 1


class BadMessage(ValueError):
    """Parsed XML that lacks the fields every WeChat message has."""


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def text_of(value: Any) -> str:
    """One text value from a parsed element: its text, the first text of a repeated
    element, '' for nested elements or nothing."""
    if isinstance(value, list):
        value = next((item for item in value if isinstance(item, str)), "")
    return value.strip() if isinstance(value, str) else ""


def _dicts(value: Any) -> list[dict[str, Any]]:
    """One element with children, or several: always a list of dicts."""
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, dict)]


def _type_name(value: str, width: int) -> str:
    """A well-formed, lower-case MsgType/Event, or UNKNOWN."""
    name = value.lower()
    if not name:
        return ""
    return name if len(name) <= width and _TYPE_NAME.fullmatch(name) else UNKNOWN


def _normalised(raw: dict[str, Any]) -> dict[str, Any]:
    fields = dict(raw)
    for name in TEXT_FIELDS & fields.keys():
        value = text_of(fields[name])
        if name in CUT_TO_WIDTH:
            value = value[:CUT_TO_WIDTH[name]].rstrip()
        elif name in DROP_OVER_WIDTH and len(value) > DROP_OVER_WIDTH[name]:
            value = ""
        fields[name] = value
    return fields


def _required(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise BadMessage(f"missing or invalid field: {name}")
    return value.strip()


@dataclass(frozen=True)
class Inbound:
    account: str  # ToUserName: our official account
    openid: str  # FromUserName: the resident
    create_time: int
    msg_type: str  # text, image, voice, ..., event; UNKNOWN when malformed
    event: str = ""  # lower-case event name for msg_type == "event"; UNKNOWN when malformed
    msg_id: str = ""  # ASCII digits, or '' (events carry none)
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> "Inbound":
        if not isinstance(fields, dict):
            raise BadMessage("not a message")
        # Header fields must be text: a repeated or nested one is no WeChat message.
        account = _required(fields, "ToUserName")
        openid = _required(fields, "FromUserName")
        create_time = _required(fields, "CreateTime")
        raw_type = _required(fields, "MsgType")
        if not openid or len(openid) > OPENID_WIDTH:
            raise BadMessage("empty or overlong FromUserName")
        if not _CREATE_TIME.fullmatch(create_time):
            raise BadMessage("CreateTime is not a Unix time")
        msg_type = _type_name(raw_type, MSG_TYPE_WIDTH)
        if not msg_type:
            raise BadMessage("empty MsgType")
        msg_id = fields.get("MsgId")
        if msg_id is not None and not isinstance(msg_id, str):
            raise BadMessage("invalid field: MsgId")
        msg_id = (msg_id or "").strip()
        if msg_id and not (_MSG_ID.fullmatch(msg_id) and int(msg_id) <= _MAX_MSG_ID):
            raise BadMessage("MsgId is not a 64-bit number")
        normalised = _normalised(fields)
        event = _type_name(normalised.get("Event", ""), EVENT_WIDTH) if msg_type == "event" else ""
        return cls(account, openid, int(create_time), msg_type, event, msg_id, normalised)

    @property
    def kind(self) -> str:
        """The registry key: 'text', 'image', ... or 'event:subscribe', 'event:click', ..."""
        return f"event:{self.event}" if self.msg_type == "event" else self.msg_type

    @property
    def dedupe_key(self) -> str:
        """MsgId for messages; FromUserName+CreateTime+Event(+EventKey) for events (they
        carry no id). At most DEDUPE_KEY_WIDTH characters: a longer key is replaced by a
        digest of all of it ('h:' + SHA-256), never cut, so two deliveries share a key only
        when they are the same delivery."""
        if self.msg_id:
            return f"m:{self.msg_id}"
        event = self.text("Event").lower() if self.msg_type == "event" else ""
        key = f"e:{self.openid}:{self.create_time}:{event}:{self.text('EventKey')}"
        if len(key) <= DEDUPE_KEY_WIDTH:
            return key
        return "h:" + hashlib.sha256(key.encode("utf-8")).hexdigest()

    def text(self, name: str) -> str:
        """A field as one stripped string ('' when absent or not text); the fields written
        to columns (CUT_TO_WIDTH, DROP_OVER_WIDTH) already fit them."""
        return text_of(self.fields.get(name))

    def entries(self, *containers: str, item: str = "List") -> list[dict[str, str]]:
        """The items of a list-carrying event, one or many, e.g. the <List> elements of
        <SubscribeMsgPopupEvent>: a list of {child: text}. A container repeated, an item
        given once or repeated, or a container holding an item's fields directly all
        give the same list; nested values inside an item are reduced to text."""
        found: list[dict[str, str]] = []
        for name in containers:
            for container in _dicts(self.fields.get(name)):
                items = _dicts(container[item]) if item in container else [container]
                found.extend({key: text_of(value) for key, value in entry.items()} for entry in items)
        return found

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
            lat, lng = _float(self.text("Location_X")), _float(self.text("Location_Y"))
        else:
            lat, lng = _float(self.text("Latitude")), _float(self.text("Longitude"))
        if lat is None or lng is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
            return None
        return lat, lng
