"""回访 in chat: a resident asked to rate a resolved ticket answers in one tap.

bot.casework.ratings puts an idle resident in the RATING state when it asks (the
question itself went out as a message). Here each reply is the next answer: a number
(or the option's words) for each question of config/rating.toml, then an optional
comment (「0」 skips). Answers are kept on the Rating row as they come; the comment
records the rating (channel chat) through bot.casework.ratings.record, which rates,
reopens or escalates the ticket and tells its handler. A reply that answers nothing is
not trapped: `answer` returns None and the registry understands it afresh, the question
still open.
"""

from __future__ import annotations

from bot.casework import ratings
from bot.casework.ratings import Question, RatingPolicy
from bot.dialogs import emergency, texts
from bot.dialogs.choices import parse_choice
from bot.dialogs.session import Session
from bot.wechat.inbound import Inbound
from storage.models import Rating, Ticket

REPORT_INTENT = "report"  # the intent code (config/intents.toml) of a new problem

RATING = ratings.RATING_STATE


def option(question: Question, reply: str) -> str | None:
    """The option a reply names: its number (1 …) or its exact words; else None."""
    words = reply.strip().rstrip("。.!！").strip()
    if words in question.options:
        return words
    number = parse_choice(words, len(question.options))
    return question.options[number - 1] if number else None


async def answer(msg: Inbound, session: Session) -> str | None:
    """The next question, the comment prompt or the thanks; None when the reply answers
    nothing (understood afresh by the registry)."""
    policy = ratings.policy_of(session.services.case)
    step = int(session.data.get("step", 0))
    rating = await session.db.get(Rating, session.data.get("rating") or 0)
    if rating is None or rating.channel is not None:  # answered by link, or expired
        session.reset()
        return _already(policy, step, msg.content)
    if step < len(policy.questions):
        return _answered(msg, session, policy, rating, step)
    return await _commented(msg, session, policy, rating)


def _already(policy: RatingPolicy, step: int, reply: str) -> str | None:
    question = policy.questions[min(step, len(policy.questions) - 1)]
    return policy.text["already"] if option(question, reply) else None


def _answered(msg: Inbound, session: Session, policy: RatingPolicy, rating: Rating, step: int) -> str | None:
    question = policy.questions[step]
    chosen = option(question, msg.content)
    if chosen is None:
        return None
    following = step + 1
    ratings.save_partial(session.db, rating, question.field, chosen, following == len(policy.questions), session.now)
    session.update(step=following)
    if following < len(policy.questions):
        return ratings.question_text(policy, following)
    return policy.text["comment"]


async def _commented(msg: Inbound, session: Session, policy: RatingPolicy, rating: Rating) -> str | None:
    """The comment (or 0): the rating is recorded. A danger is not a comment: the rating
    is recorded without one and the message understood afresh (the emergency first)."""
    danger = emergency.danger(msg.content, session) is not None
    words = msg.content.strip()
    comment = None if danger or words.rstrip("。.").strip() in policy.skip_words else words
    case = session.services.case
    outcome = await ratings.record(case, session.db, rating.id or 0, ratings.answers_of(policy, rating), comment,
                                   policy.chat, session.now)
    session.reset()
    session.after_commit(case.outbox.kick)
    if danger:
        return None
    # A comment often reads like a complaint. When the ticket was not reopened for it, it
    # may be a new problem: the resident can send it again (the dialog is idle now) and it
    # becomes a ticket — nothing is lost.
    new_problem = comment is not None and outcome.kind == ratings.RATED and await _another_problem(session, rating, words)
    return outcome.reply + (texts.RATING_COMMENT_OR_NEW if new_problem else "") + await _next(session)


async def _another_problem(session: Session, rating: Rating, words: str) -> bool:
    """A report in its own right about something else than the rated ticket: read as a
    report, and routed (confidently) to another category. 「清运挺快的，谢谢」 on a garbage
    ticket is a comment; 「路灯坏了好几天了」 is not."""
    services = session.services
    if services.intents.classify(words).intent != REPORT_INTENT:
        return False
    ticket = await session.db.get(Ticket, rating.ticket_id)
    routing = services.router.route(words, None, session.resident.home_area_code)
    return ticket is not None and not routing.needs_triage(services.router.threshold) \
        and routing.category != ticket.category


async def _next(session: Session) -> str:
    """Another of the resident's tickets waiting for a rating: asked next."""
    waiting = await ratings.pending_for(session.db, session.resident.openid)
    if waiting is None:
        return ""
    session.goto(RATING, rating=waiting.id, step=0)
    return "\n\n" + await ratings.ask_message(session.services.case, session.db, waiting)
