"""The one place that says who answers what.

A handler is `async def handler(msg: Inbound, session: Session) -> str | None`:
the reply text, or None for a bare 'success'. Lookup order for a message:
  0. STAFF: whatever a bound staff member sends, and anyone's 「绑定 CODE」, is answered by
     bot/dialogs/staff.py (ticket commands; never a resident's report)
  1. COMMANDS: exact words that work in any state (取消, 查询, 帮助 ...)
  2. STEPS: (dialog state, message type) while a dialog is under way
  3. MESSAGES: message type or event; menu clicks go through MENU_KEYS
Anything not listed gets 'success'.

Free text and voice are *understood* first (`understand`, `understand_in_draft`):
a danger happening now becomes a ticket and a red warning before anything else
(bot/dialogs/emergency.py); then the intent classifier (nlp/intent.py,
config/intents.toml) says what the resident wants and INTENTS says who answers —
or, while a draft is open, ASIDES answers without touching the draft.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from bot.dialogs import binding, chat, emergency, events, followup, rating, report, staff, status, texts, welcome
from bot.dialogs.choices import parse_choice
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


async def understand(msg: Inbound, session: Session) -> str | None:
    """Free text or voice: emergencies first, then what the resident wants."""
    routing = emergency.danger(msg.content, session)
    if routing is not None:
        return await emergency.report_now(msg, session, routing)
    if session.state == emergency.AWAITING_LOCATION:
        placed = await emergency.place_named(msg, session)
        if placed is not None:
            return placed
        session.reset()
    result = session.services.intents.classify(msg.content)
    close = frozenset((result.intent, *result.alternatives))
    if result.alternatives and close not in SELF_SETTLED:
        return _ask_which(msg, session, (result.intent, *result.alternatives))
    if result.intent in ANSWER_INTENTS:  # a ticket waiting for the resident takes it as the answer
        answered = await followup.answer_if_waiting(msg, session)
        if answered is not None:
            return answered
    return await INTENTS[result.intent](msg, session)


async def understand_in_draft(msg: Inbound, session: Session) -> str | None:
    """Text while a draft is open: asides are answered and the draft kept; the rest is draft text."""
    routing = emergency.danger(msg.content, session)
    if routing is not None:
        return await emergency.report_now(msg, session, routing)
    aside = ASIDES.get(session.services.intents.classify(msg.content).intent)
    if aside is None:
        return await report.draft_text(msg, session)
    reply = await aside(msg, session)
    return f"{reply}\n{texts.DRAFT_HELD}" if session.state == report.DRAFTING and reply else reply


def _ask_which(msg: Inbound, session: Session, codes: tuple[str, ...]) -> str:
    """Two intents are close: one short question with numbered choices."""
    classifier = session.services.intents
    options = "\n".join(f"{i}. {classifier.label(code)}" for i, code in enumerate(codes, 1))
    session.goto(CHOOSING_INTENT, codes=list(codes), text=msg.content, kind=msg.msg_type,
                 fields={k: v for k, v in msg.fields.items() if isinstance(v, str)})
    return texts.CHOOSE_INTENT.format(options=options)


async def intent_chosen(msg: Inbound, session: Session) -> str | None:
    codes = session.data.get("codes", [])
    choice = parse_choice(msg.content, len(codes))
    if choice is None:  # not an answer to the question: understood afresh
        session.reset()
        return await understand(msg, session)
    original = Inbound(msg.account, msg.openid, msg.create_time, session.data.get("kind", "text"), "", msg.msg_id,
                       session.data.get("fields") or {})
    session.reset()
    return await INTENTS[codes[choice - 1]](original, session)


async def ticket_chosen(msg: Inbound, session: Session) -> str | None:
    """The reply to 「请问是哪一件？」: a number picks the ticket; anything else is understood afresh."""
    if followup.is_choice(msg, session):
        return await followup.ticket_chosen(msg, session)
    session.reset()
    return await understand(msg, session)


async def rating_reply(msg: Inbound, session: Session) -> str | None:
    """A reply while asked to rate (回访): the answer; anything else is understood afresh,
    the question left open."""
    answered = await rating.answer(msg, session)
    if answered is not None:
        return answered
    return await voice(msg, session) if msg.msg_type == "voice" else await understand(msg, session)


async def media(msg: Inbound, session: Session) -> str | None:
    """Photo, video, link from an idle resident: the answer to a waiting ticket, else a report."""
    answered = await followup.answer_if_waiting(msg, session)
    return answered if answered is not None else await report.on_media(msg, session)


async def voice(msg: Inbound, session: Session) -> str | None:
    """Voice with recognised text is understood like text; without, it is a recording."""
    return await understand(msg, session) if msg.content else await media(msg, session)


async def location(msg: Inbound, session: Session) -> str | None:
    answered = await followup.answer_if_waiting(msg, session)
    return answered if answered is not None else await report.on_location(msg, session)


async def supplement(msg: Inbound, session: Session) -> str | None:
    """「补充一下…」: onto the open ticket; with none open it is a report."""
    added = await followup.supplement_text(msg, session)
    return added if added is not None else await report.on_report(msg, session)


CHOOSING_INTENT = "choosing_intent"

# What free text wants (the intent codes of config/intents.toml) → who answers.
INTENTS: dict[str, Handler] = {
    "greeting": chat.greet,
    "thanks": chat.thanks,
    "goodbye": chat.goodbye,
    "help": help_text,
    "human": chat.human,
    "status": status.query,
    "urge": followup.urge,
    "cancel": report.cancel,
    "supplement": supplement,
    "nonsense": chat.no_substance,
    "report": report.on_report,
}
# Close intents not worth a question: the handler settles it (a supplement with no open
# ticket is a report).
SELF_SETTLED = frozenset({frozenset({"supplement", "report"})})
# Intents whose text is the answer when one of the resident's tickets waits for them.
ANSWER_INTENTS = frozenset({"report", "supplement"})
# While a draft is open these are answered aside (the draft kept); anything else is draft text.
ASIDES: dict[str, Handler] = {code: INTENTS[code] for code in
                              ("greeting", "thanks", "goodbye", "help", "human", "status", "cancel", "nonsense")}

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
    "继续": report.resume,
}

# Words that submit a draft.
SUBMIT_WORDS = frozenset({"1", "１", "提交", "确认", "确定", "是"})

STEPS: dict[tuple[str, str], Handler] = {
    (report.DRAFTING, "text"): understand_in_draft,
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
    (CHOOSING_INTENT, "text"): intent_chosen,
    (followup.CHOOSING_TICKET, "text"): ticket_chosen,
    (rating.RATING, "text"): rating_reply,
    (rating.RATING, "voice"): rating_reply,
    (emergency.AWAITING_LOCATION, "location"): emergency.location_given,
}

MESSAGES: dict[str, Handler] = {
    "text": understand,
    "voice": voice,
    "image": media,
    "video": media,
    "shortvideo": media,
    "link": media,
    "location": location,
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

# States whose replies are numbers: 「1」 there is a choice, not 提交.
NUMBERED_STATES = frozenset({"choosing_community", "choosing_grid", CHOOSING_INTENT, followup.CHOOSING_TICKET,
                             rating.RATING})
# Dialog states that expire after [dialog] timeout_minutes, telling the resident.
EXPIRING_STATES = frozenset({report.DRAFTING, "consent", "choosing_community", "choosing_grid"})
# States that end silently after a few minutes.
SHORT_STATES = {report.AFTER_TICKET: 10, CHOOSING_INTENT: 10, followup.CHOOSING_TICKET: 10,
                emergency.AWAITING_LOCATION: 60}


def find_handler(msg: Inbound, state: str) -> Handler | None:
    handler = _resident_handler(msg, state)
    return staff.first(handler) if msg.kind in staff.PERSONAL_KINDS else handler


def _resident_handler(msg: Inbound, state: str) -> Handler | None:
    if msg.msg_type in ("text", "voice"):
        words = msg.content.strip().rstrip("。.!！")
        if words in COMMANDS:
            return COMMANDS[words]
        if words in SUBMIT_WORDS and state not in NUMBERED_STATES:
            return report.submit if state == report.DRAFTING else report.nothing_to_submit
        if msg.msg_type == "text" and status.TICKET_NUMBER.fullmatch(words):
            return my_ticket_by_number
    step = STEPS.get((state, msg.msg_type))
    if step is not None:
        return step
    return MESSAGES.get(msg.kind)

