"""The one place that says who answers what.

A handler is `async def handler(msg: Inbound, session: Session) -> str | None`:
the reply text, or None for a bare 'success'. Lookup order for a message:
  1. COMMANDS: exact words that work in any state (取消, 查询, 帮助 ...)
  2. STEPS: (dialog state, message type) while a dialog is under way
  3. MESSAGES: message type or event; menu clicks go through MENU_KEYS
Anything not listed gets 'success'.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from bot.dialogs import binding, events, report, status, texts, welcome
from bot.dialogs.session import Session
from bot.wechat.inbound import Inbound

Handler = Callable[[Inbound, Session], Awaitable[str | None]]


async def help_text(msg: Inbound, session: Session) -> str:
    return texts.HELP


async def my_ticket_by_number(msg: Inbound, session: Session) -> str:
    match = status.TICKET_NUMBER.search(msg.content)
    return await status.ticket_detail(match.group(1) if match else "", session)


async def menu_click(msg: Inbound, session: Session) -> str | None:
    handler = MENU_KEYS.get(msg.text("EventKey"))
    return await handler(msg, session) if handler else None


COMMANDS: dict[str, Handler] = {
    "取消": report.cancel,
    "查询": status.my_tickets,
    "进度": status.my_tickets,
    "我的诉求": status.my_tickets,
    "帮助": help_text,
    "菜单": help_text,
    "?": help_text,
    "？": help_text,
    "同意": welcome.consent,
    "隐私": welcome.privacy,
    "我的数据": welcome.my_data,
    "删除我的数据": welcome.delete_my_data,
    "绑定": binding.start,
    "绑定网格": binding.start,
}

# Words that submit a draft.
SUBMIT_WORDS = frozenset({"1", "１", "提交", "确认", "确定", "是"})

STEPS: dict[tuple[str, str], Handler] = {
    (report.DRAFTING, "text"): report.draft_text,
    (report.DRAFTING, "voice"): report.draft_media,
    (report.DRAFTING, "image"): report.draft_media,
    (report.DRAFTING, "video"): report.draft_media,
    (report.DRAFTING, "shortvideo"): report.draft_media,
    (report.DRAFTING, "location"): report.draft_media,
    (report.DRAFTING, "link"): report.draft_media,
    (report.AFTER_TICKET, "image"): report.supplement,
    (report.AFTER_TICKET, "voice"): report.supplement,
    (report.AFTER_TICKET, "video"): report.supplement,
    (report.AFTER_TICKET, "shortvideo"): report.supplement,
    (report.AFTER_TICKET, "location"): report.supplement,
    ("choosing_community", "text"): binding.choose_community,
    ("choosing_grid", "text"): binding.choose_grid,
}

MESSAGES: dict[str, Handler] = {
    "text": report.on_text,
    "voice": report.on_media,
    "image": report.on_media,
    "video": report.on_media,
    "shortvideo": report.on_media,
    "link": report.on_media,
    "location": report.on_location,
    "event:subscribe": welcome.on_subscribe,
    "event:unsubscribe": welcome.on_unsubscribe,
    "event:scan": welcome.on_scan,
    "event:location": events.remember_location,
    "event:click": menu_click,
    "event:view": events.ignore,
    "event:templatesendjobfinish": events.template_finished,
    "event:subscribe_msg_popup_event": events.subscribe_message_choice,
    "event:subscribe_msg_change_event": events.subscribe_message_choice,
    "event:subscribe_msg_sent_event": events.subscribe_message_sent,
}

MENU_KEYS: dict[str, Handler] = {
    "REPORT": report.start,
    "EMERGENCY": report.emergency,
    "MY_TICKETS": status.my_tickets,
    "BIND_GRID": binding.start,
    "HELP": help_text,
    "PRIVACY": welcome.privacy,
}

# Dialog states that expire after [dialog] timeout_minutes, telling the resident.
EXPIRING_STATES = frozenset({report.DRAFTING, "consent", "choosing_community", "choosing_grid"})
# States that end silently after a few minutes.
SHORT_STATES = {report.AFTER_TICKET: 10}


def find_handler(msg: Inbound, state: str) -> Handler | None:
    if msg.msg_type in ("text", "voice"):
        words = msg.content.strip().rstrip("。.!！")
        if words in COMMANDS:
            return COMMANDS[words]
        if state == report.DRAFTING and words in SUBMIT_WORDS:
            return report.submit
        if msg.msg_type == "text" and status.TICKET_NUMBER.fullmatch(words):
            return my_ticket_by_number
    step = STEPS.get((state, msg.msg_type))
    if step is not None:
        return step
    return MESSAGES.get(msg.kind)

