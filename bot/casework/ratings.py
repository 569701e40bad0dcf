"""回访: the resident rates the handling of a resolved ticket.

A ticket arriving in the workflow's rating `ask_state` gets a Rating row (round = rounds
so far + 1) and its resident one message: the first question with numbered options, and
a signed link to a small page (bot/rating_page.py). A resident who is idle in chat is put
in the RATING_STATE dialog (bot/dialogs/rating.py), so a bare 「1」 is the answer.

`record` is the one way an answer is stored, whichever channel it came by: the row is
claimed (an UPDATE that only succeeds while no channel is set, so a second answer finds
it taken), the ticket is rated by the resident, a dissatisfied answer inside the window
reopens it by the system — or, once it was reopened `reopen_limit` times, escalates it to
the supervisors above its grid — and the handler is told the answers. `expire_ratings`
(`minyi rating expire`, a leader-only scheduled job) records what was never answered as
未评价 and closes the ticket, and finishes chat answers whose comment never came.

Config: config/rating.toml, and the [rating] table of config/workflow.toml.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import update
from sqlmodel import col, func, select

from bot.casework import desk, parts
from bot.casework.actors import SYSTEM, Actor
from bot.casework.context import Casework
from bot.casework.notify import notice_rows, ticket_fields
from bot.clock import utcnow
from storage.models import AuditEntry, DialogState, Rating, Staff, Ticket, TicketEvent
from storage.outbox_rows import insert_rows

if TYPE_CHECKING:
    from bot.settings import Settings

RATING_FILE = "rating.toml"
WORKFLOW_FILE = "workflow.toml"
# The dialog state of a resident asked to rate (bot/dialogs/rating.py), and the state a
# resident with no dialog under way is in (the column default).
RATING_STATE = "rating"
IDLE = DialogState.model_fields["state"].default
ANSWER_FIELDS = frozenset({"satisfaction", "resolution"})  # Rating columns a question may fill
LINK_ROUTE = "/rating/{token}"
_TOKEN = re.compile(r"(\d{1,12})\.(\d{1,6})\.(\d{1,12})\.([A-Za-z0-9_-]{43})")
_KEY_LABEL = b"minyi/rating-link/v1"

# Outcomes of `record`.
RATED, REOPENED, ESCALATED, ALREADY = "rated", "reopened", "escalated", "already"


# ---------------------------------------------------------------- config

@dataclass(frozen=True)
class Question:
    field: str
    label: str
    text: str
    options: tuple[str, ...]
    reopen_on: frozenset[str]


@dataclass(frozen=True, eq=False)
class RatingPolicy:
    ask_state: str
    rate_action: str
    reopen_action: str
    unanswered_action: str
    answer_window: timedelta
    reopen_window: timedelta
    reopen_limit: int
    comment_wait: timedelta
    supervisor_role: str
    escalate_levels: frozenset[str]
    escalate_event: str
    unrated: str
    satisfied: frozenset[str]
    solved: frozenset[str]
    skip_words: frozenset[str]
    comment_max_chars: int
    dialog_states: frozenset[str]  # dialog states (besides idle) the question takes over
    result_notice: str  # the notice kind of config/notices.toml the handler gets
    channels: dict[str, str]
    questions: tuple[Question, ...]
    text: dict[str, str]

    @classmethod
    def load(cls, config_dir: Path) -> "RatingPolicy":
        with open(config_dir / RATING_FILE, "rb") as fh:
            raw = tomllib.load(fh)
        with open(config_dir / WORKFLOW_FILE, "rb") as fh:
            flow = tomllib.load(fh)["rating"]
        questions = tuple(Question(q["field"], q["label"], q["text"], tuple(q["options"]), frozenset(q["reopen_on"]))
                          for q in raw["question"])
        policy = cls(
            ask_state=flow["ask_state"], rate_action=flow["rate_action"], reopen_action=flow["reopen_action"],
            unanswered_action=flow["unanswered_action"], answer_window=timedelta(days=raw["answer_days"]),
            reopen_window=timedelta(days=raw["reopen_window_days"]), reopen_limit=int(raw["reopen_limit"]),
            comment_wait=timedelta(minutes=raw["comment_wait_minutes"]), supervisor_role=raw["supervisor_role"],
            escalate_levels=frozenset(raw["escalate_levels"]), escalate_event=raw["escalate_event"],
            unrated=raw["unrated"], satisfied=frozenset(raw["satisfied"]), solved=frozenset(raw["solved"]),
            skip_words=frozenset(raw["skip_words"]), comment_max_chars=int(raw["comment_max_chars"]),
            dialog_states=frozenset(raw["dialog_states"]), result_notice=raw["result_notice"],
            channels=dict(raw["channel"]), questions=questions, text=dict(raw["text"]))
        policy.check_questions()
        return policy

    def check_questions(self) -> None:
        fields = [q.field for q in self.questions]
        if not fields or set(fields) - ANSWER_FIELDS or len(set(fields)) != len(fields):
            raise ValueError(f"rating.toml: question fields must be distinct of {sorted(ANSWER_FIELDS)}: {fields}")
        for q in self.questions:
            if not q.options or q.reopen_on - set(q.options):
                raise ValueError(f"rating.toml: question {q.field}: reopen_on must be among its options")

    def check(self, workflow) -> None:  # type: ignore[no-untyped-def]
        """The workflow names it uses exist (called by the loader and by tests)."""
        if self.ask_state not in workflow.states:
            raise ValueError(f"workflow.toml [rating]: unknown ask_state {self.ask_state}")
        for action in (self.rate_action, self.reopen_action, self.unanswered_action):
            if action not in workflow.transitions:
                raise ValueError(f"workflow.toml [rating]: unknown action {action}")

    @property
    def chat(self) -> str:
        return self.channels["chat"]

    @property
    def link(self) -> str:
        return self.channels["link"]

    @property
    def default(self) -> str:
        return self.channels["default"]

    def is_dissatisfied(self, answers: dict[str, str | None]) -> bool:
        return any(answers.get(q.field) in q.reopen_on for q in self.questions)


def policy_of(case: Casework) -> RatingPolicy:
    return case.ratings


# ---------------------------------------------------------------- signed links

class LinkRefused(ValueError):
    """A rating link that is forged, damaged or expired; the message is shown (Chinese)."""


class LinkSigner:
    """Rating links: /rating/<ticket id>.<round>.<expiry>.<HMAC-SHA256>, the key derived
    from a secret (the WeChat token), so any worker or host with the settings can check
    one and nobody without them can make one."""

    def __init__(self, secret: str, base_url: str) -> None:
        self._key = hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()
        self.base_url = base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: "Settings") -> "LinkSigner":
        return cls(settings.server.link_secret or settings.wechat.token, settings.server.base_url)

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def token(self, ticket_id: int, round_: int, expires: datetime) -> str:
        body = f"{ticket_id}.{round_}.{int(expires.timestamp())}"
        return f"{body}.{self._mac(body)}"

    def url(self, token: str) -> str:
        return self.base_url + LINK_ROUTE.format(token=token)

    def verify(self, token: str, now: datetime) -> tuple[int, int]:
        """(ticket id, round) of a good link; LinkRefused otherwise."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise LinkRefused("评价链接无效，请从公众号消息中重新打开。")
        ticket_id, round_, expires, mac = match.groups()
        if not hmac.compare_digest(mac, self._mac(f"{ticket_id}.{round_}.{expires}")):
            raise LinkRefused("评价链接无效，请从公众号消息中重新打开。")
        if now.timestamp() > int(expires):
            raise LinkRefused("评价链接已过期，感谢您的关注。")
        return int(ticket_id), int(round_)


def links_of(case: Casework) -> LinkSigner:
    return case.rating_links


# ---------------------------------------------------------------- texts

def question_text(policy: RatingPolicy, index: int) -> str:
    question = policy.questions[index]
    options = "\n".join(policy.text["option"].format(index=i, label=label)
                        for i, label in enumerate(question.options, 1))
    return policy.text["question"].format(text=question.text, options=options)


def ask_text(policy: RatingPolicy, number: str, url: str | None) -> str:
    text = policy.text["ask"].format(number=number, question=question_text(policy, 0))
    return text + (policy.text["ask_link"].format(url=url) if url else "")


def answers_of(policy: RatingPolicy, rating: Rating) -> dict[str, str | None]:
    return {q.field: getattr(rating, q.field) for q in policy.questions}


def answers_line(policy: RatingPolicy, answers: dict[str, str | None]) -> str:
    return "；".join(f"{q.label}：{answers.get(q.field) or '—'}" for q in policy.questions)


def reply_for(policy: RatingPolicy, outcome: str) -> str:
    return policy.text[{RATED: "thanks", REOPENED: "reopened", ESCALATED: "escalated", ALREADY: "already"}[outcome]]


# ---------------------------------------------------------------- asking

async def on_move(case: Casework, session, ticket: Ticket, before: str, after: str,  # type: ignore[no-untyped-def]
                  actor: Actor, now: datetime) -> list[dict]:
    """A reopen is counted; a ticket arriving in the ask state is asked to be rated.
    Returns the outbox rows it queues."""
    workflow = case.workflow
    if not workflow.is_open(before) and workflow.is_open(after):
        ticket.reopen_count = (ticket.reopen_count or 0) + 1
    policy = policy_of(case)
    if after != policy.ask_state or before == after:
        return []
    return await ask(case, session, ticket, now)


async def ask(case: Casework, session, ticket: Ticket, now: datetime) -> list[dict]:  # type: ignore[no-untyped-def]
    """A new rating round for `ticket` and the message asking its resident."""
    policy = policy_of(case)
    latest = (await session.exec(select(func.max(Rating.round)).where(Rating.ticket_id == ticket.id))).one()
    # An earlier round still open (reopened by staff before it was answered) is over.
    await session.exec(update(Rating).where(col(Rating.ticket_id) == ticket.id, col(Rating.channel).is_(None))
                       .values(channel=policy.default, satisfaction=func.coalesce(Rating.satisfaction, policy.unrated)))
    rating = Rating(ticket_id=ticket.id or 0, round=(latest or 0) + 1, asked_at=now)
    session.add(rating)
    await session.flush()
    await session.exec(update(DialogState)
                       .where(col(DialogState.openid) == ticket.openid,
                              # not one answering another rating: that one finishes, then
                              # the next pending rating is asked (bot/dialogs/rating.py)
                              col(DialogState.state).in_(sorted({IDLE, *policy.dialog_states} - {RATING_STATE})))
                       .values(state=RATING_STATE, data={"rating": rating.id, "step": 0}, updated_at=now))
    return [case.outbox.text_row(ticket.openid, _ask(case, ticket.number, rating), title=f"诉求 {ticket.number} 回访")]


def _ask(case: Casework, number: str, rating: Rating) -> str:
    """The question with its link, valid until the rating is recorded as unanswered."""
    policy, links = policy_of(case), links_of(case)
    expires = _aware(rating.asked_at) + policy.answer_window
    return ask_text(policy, number, links.url(links.token(rating.ticket_id, rating.round, expires)))


async def ask_message(case: Casework, session, rating: Rating) -> str:  # type: ignore[no-untyped-def]
    """The question of a rating asked earlier (another ticket's, after one is answered)."""
    return _ask(case, await number_of(session, rating), rating)


# ---------------------------------------------------------------- answers

@dataclass(frozen=True)
class Outcome:
    kind: str  # RATED / REOPENED / ESCALATED / ALREADY
    reply: str  # what the resident reads


def save_partial(session, rating: Rating, field: str, answer: str, complete: bool,  # type: ignore[no-untyped-def]
                 now: datetime) -> None:
    """One chat answer kept on the row as it comes; `complete` (all questions answered)
    stamps answered_at, so an answer whose comment never comes is still recorded."""
    setattr(rating, field, answer)
    if complete:
        rating.answered_at = now
    session.add(rating)


async def record(case: Casework, session, rating_id: int, answers: dict[str, str | None],  # type: ignore[no-untyped-def]
                 comment: str | None, channel: str, now: datetime) -> Outcome:
    """Store the answers once, rate the ticket, reopen or escalate when dissatisfied, tell
    the handler; in the caller's transaction (the caller kicks the outbox)."""
    policy = policy_of(case)
    rating = await session.get(Rating, rating_id)
    ticket = None
    if rating is not None:  # locked first, as desk.act_in will (no stale status in between)
        ticket = (await session.exec(select(Ticket).where(Ticket.id == rating.ticket_id).with_for_update())).first()
    if rating is None or ticket is None:
        return Outcome(ALREADY, reply_for(policy, ALREADY))
    answered_at = rating.answered_at or now
    comment = (comment or "").strip()[:policy.comment_max_chars] or None
    claimed = await session.exec(update(Rating).where(col(Rating.id) == rating_id, col(Rating.channel).is_(None))
                                 .values(channel=channel, comment=comment, answered_at=answered_at, **answers))
    if claimed.rowcount != 1:
        return Outcome(ALREADY, reply_for(policy, ALREADY))
    await session.refresh(rating)
    kind = RATED
    rated = await _move(case, session, ticket, policy.rate_action, Actor.resident(ticket.openid), None)
    late = _aware(answered_at) - _aware(rating.asked_at) > policy.reopen_window
    if rated and policy.is_dissatisfied(answers) and not late:
        kind = await _reopen_or_escalate(case, session, ticket, rating, now)
    await insert_rows(await session.connection(), _result_rows(case, ticket, rating, kind))
    if channel != policy.chat:
        await _leave_dialog(session, ticket.openid, rating_id)
    return Outcome(kind, reply_for(policy, kind))


async def _move(case: Casework, session, ticket: Ticket, action: str, actor: Actor,  # type: ignore[no-untyped-def]
                note: str | None) -> bool:
    """Take `action` if the ticket is where it applies; a refusal is audited, not raised."""
    if ticket.status not in case.workflow.transitions[action].sources:
        return False
    try:
        await desk.act_in(case, session, ticket.number, action, actor, note)
    except desk.Refused as exc:
        session.add(AuditEntry(at=utcnow(), actor=actor.code, action=action, target=ticket.number,
                               outcome=desk.REFUSED, reason=str(exc)[:300]))
        return False
    except desk.DeskError:
        return False
    return True


async def _reopen_or_escalate(case: Casework, session, ticket: Ticket, rating: Rating,  # type: ignore[no-untyped-def]
                              now: datetime) -> str:
    policy = policy_of(case)
    values = _note_values(policy, ticket, rating)
    if (ticket.reopen_count or 0) >= policy.reopen_limit:
        session.add(TicketEvent(ticket_id=ticket.id or 0, at=now, action=policy.escalate_event,
                                from_status=ticket.status, to_status=ticket.status, actor=SYSTEM.code,
                                note=policy.text["escalate_note"].format(**values)))
        await insert_rows(await session.connection(), _escalation_rows(case, ticket, values))
        return ESCALATED
    if await _move(case, session, ticket, policy.reopen_action, SYSTEM, policy.text["reopen_note"].format(**values)):
        return REOPENED
    return RATED


def _note_values(policy: RatingPolicy, ticket: Ticket, rating: Rating) -> dict[str, str | int]:
    return {"answers": answers_line(policy, answers_of(policy, rating)),
            "comment": rating.comment or policy.text["no_comment"], "count": ticket.reopen_count or 0}


def _result_rows(case: Casework, ticket: Ticket, rating: Rating, kind: str) -> list[dict]:
    policy = policy_of(case)
    lines = [policy.text["staff_comment"].format(comment=rating.comment or policy.text["no_comment"])]
    if kind == REOPENED:
        lines.append(policy.text["staff_reopened"].format(count=ticket.reopen_count))
    elif kind == ESCALATED:
        lines.append(policy.text["staff_escalated"].format(count=ticket.reopen_count))
    fields = {**ticket_fields(case, ticket), **{k: v or "—" for k, v in answers_of(policy, rating).items()},
              "comment": "\n".join(lines)}
    return notice_rows(case, policy.result_notice, parts.handlers_of(case, ticket), fields)


def supervisors(case: Casework, ticket: Ticket) -> list[Staff]:
    """Staff of the supervisor role sitting on the ticket's street or district (every
    supervisor when the ticket has no grid)."""
    policy = policy_of(case)
    above = {n.code for n in case.areas.ancestors(ticket.area_code) if n.level in policy.escalate_levels}
    return [p for p in case.org.staff if p.role == policy.supervisor_role and p.openid
            and (not above or p.area_code in above)]


def _escalation_rows(case: Casework, ticket: Ticket, values: dict[str, str | int]) -> list[dict]:
    policy = policy_of(case)
    fields = {**ticket_fields(case, ticket), **values}
    fields["comment"] = policy.text["staff_comment"].format(comment=values["comment"])
    text = policy.text["escalation"].format(**fields)
    title = policy.text["escalation_title"].format(number=ticket.number)
    return [case.outbox.text_row(p.openid, text, title=title) for p in supervisors(case, ticket) if p.openid]


async def _leave_dialog(session, openid: str, rating_id: int) -> None:  # type: ignore[no-untyped-def]
    """A resident whose chat still waits on this rating (answered by link, or expired) is idle again."""
    dialog = await session.get(DialogState, openid)
    if dialog is not None and dialog.state == RATING_STATE and (dialog.data or {}).get("rating") == rating_id:
        dialog.state, dialog.data = IDLE, {}
        session.add(dialog)


async def pending_for(session, openid: str) -> Rating | None:  # type: ignore[no-untyped-def]
    """The resident's oldest rating still waiting for an answer, if any."""
    rows = await session.exec(select(Rating).join(Ticket, col(Ticket.id) == col(Rating.ticket_id))
                              .where(Ticket.openid == openid, col(Rating.channel).is_(None),
                                     col(Rating.answered_at).is_(None))
                              .order_by(col(Rating.asked_at), col(Rating.id)).limit(1))
    return rows.first()


async def number_of(session, rating: Rating) -> str:  # type: ignore[no-untyped-def]
    ticket = await session.get(Ticket, rating.ticket_id)
    return ticket.number if ticket else ""


# ---------------------------------------------------------------- no answer

async def expire_ratings(case: Casework, now: datetime) -> int:
    """Ratings past their time: never answered → 未评价 (channel default) and the ticket
    takes the unanswered action; answered in chat without the comment → recorded as
    answered. Each in a transaction of its own; returns how many were recorded."""
    policy = policy_of(case)
    unanswered = col(Rating.answered_at).is_(None) & (col(Rating.asked_at) <= now - policy.answer_window)
    uncommented = col(Rating.answered_at).is_not(None) & (col(Rating.answered_at) <= now - policy.comment_wait)
    async with case.db.session() as s:
        due = list((await s.exec(select(Rating.id).where(col(Rating.channel).is_(None), unanswered | uncommented)
                                 .order_by(col(Rating.id)))).all())
    done = 0
    for rating_id in due:
        async with case.db.transaction() as session:
            done += await _expire_one(case, session, rating_id, now)  # type: ignore[arg-type]
    if done:
        case.outbox.kick()
    return done


async def _expire_one(case: Casework, session, rating_id: int, now: datetime) -> int:  # type: ignore[no-untyped-def]
    policy = policy_of(case)
    rating = await session.get(Rating, rating_id)
    if rating is None or rating.channel is not None:
        return 0
    answers = answers_of(policy, rating)
    if any(answers.values()):  # answered in chat, the comment never came
        outcome = await record(case, session, rating_id, answers, None, policy.chat, now)
        await _leave_dialog(session, (await session.get(Ticket, rating.ticket_id)).openid, rating_id)
        return int(outcome.kind != ALREADY)
    claimed = await session.exec(update(Rating).where(col(Rating.id) == rating_id, col(Rating.channel).is_(None))
                                 .values(channel=policy.default, satisfaction=policy.unrated))
    if claimed.rowcount != 1:
        return 0
    ticket = await session.get(Ticket, rating.ticket_id)
    if ticket is not None:
        if ticket.status == policy.ask_state:
            note = policy.text["unanswered_note"].format(days=policy.answer_window.days, unrated=policy.unrated)
            await _move(case, session, ticket, policy.unanswered_action, SYSTEM, note)
        await _leave_dialog(session, ticket.openid, rating_id)
    return 1


async def expire_job(case: Casework) -> int:
    """The scheduled job (leader only): `expire_ratings` now."""
    return await expire_ratings(case, utcnow())


# ---------------------------------------------------------------- counting

@dataclass(frozen=True)
class Tally:
    """Ratings counted for the indices: 满意率 = satisfied / answered (top-box), 解决率 =
    solved / answered; `unrated` (no answer, channel default) are never satisfied."""

    recorded: int
    answered: int
    satisfied: int
    solved: int
    unrated: int


def tally(policy: RatingPolicy, rows: Iterable[Rating]) -> Tally:
    recorded = answered = satisfied = solved = unrated = 0
    for row in rows:
        if row.channel is None:
            continue
        recorded += 1
        if row.channel == policy.default:
            unrated += 1
            continue
        answered += 1
        satisfied += row.satisfaction in policy.satisfied
        solved += row.resolution in policy.solved
    return Tally(recorded, answered, satisfied, solved, unrated)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
