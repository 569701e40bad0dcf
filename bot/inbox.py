"""Exactly-once, crash-safe handling of WeChat deliveries (write-ahead intake).

WeChat retries a message three times when no answer comes within 5 s, and never
again once it has been answered, even with a bare 'success'. So:
  1. Before anything is answered, the delivery is recorded in `inbound_message` in
     its own short transaction, with a claim (a random token and a lease) of the
     worker that handles it. The unique `dedupe_key` (MsgId, or sender+time+event)
     makes a second record of the same delivery impossible.
  2. Handling commits the ticket, dialog state, outbox rows, the reply and the
     record's `done_at` in one transaction; the completing UPDATE names the claim
     token, so of two attempts (a retry on another worker, the sweeper) exactly one
     commits and the other rolls back with everything it wrote.
  3. The callback may answer 'success' only once the record is committed. If its
     budget runs out it does so, and the handling, seeing it has gone late, queues
     the reply as a customer-service message in the same transaction.
  4. A record left unfinished past its lease (a crash, a killed worker, an error)
     is claimed and finished by a retry of the same delivery or by the sweeper;
     after `max_attempts` the resident is told, and the record kept for an operator.
In this process, a retry that arrives while the first attempt runs awaits it, and a
delivery answered lately is answered again from memory.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Awaitable, Callable

from sqlalchemy import Boolean, ColumnElement, and_, bindparam, or_, select, update

from bot.clock import utcnow
from bot.dialogs import texts
from bot.dialogs.dispatch import dispatch
from bot.services import Services
from bot.wechat.inbound import BadMessage, Inbound
from storage.group_insert import GroupInsert
from storage.models import InboundMessage
from storage.prepared import Prepared

log = logging.getLogger(__name__)

SENSITIVE_FIELDS = ("Encrypt",)
RECENT_REPLIES = 4096
POLL_SECONDS = 0.05  # how often a retry looks at a delivery another worker is handling
SWEEP_BATCH = 100

_T = InboundMessage.__table__.c  # type: ignore[attr-defined]


# The claimed delivery done, with its reply: exactly one attempt's UPDATE matches.
# late OR …: another attempt may have answered 'success' for it (_mark_late).
_COMPLETE = Prepared(
    update(InboundMessage.__table__)  # type: ignore[arg-type]
    .where(_T.dedupe_key == bindparam("key"), _T.claim_token == bindparam("token"), _T.done_at.is_(None))
    .values(done_at=bindparam("done_at"), reply=bindparam("reply"), late=or_(_T.late, bindparam("late", type_=Boolean)),
            claim_token=None)
    .returning(_T.late))


def _claimable() -> ColumnElement[bool]:
    """Unfinished, with no live claim, and attempts left (parameters: now, max_attempts)."""
    return and_(_T.done_at.is_(None),
                or_(_T.lease_until.is_(None), _T.lease_until < bindparam("now")),
                _T.attempts < bindparam("max_attempts"))


@dataclass(frozen=True)
class Outcome:
    """What handling produced: the reply text, and whether it already went out as a
    customer-service message (then the HTTP answer is a bare 'success')."""

    reply: str | None
    late: bool = False

    @property
    def response_text(self) -> str | None:
        return None if self.late else self.reply


ACKNOWLEDGED = Outcome(None, late=True)  # recorded; its owner or the sweeper replies


class Delivery:
    """The agreement between the callback and the handling of one delivery.

    Both methods run on the event loop without awaiting, so exactly one of 'the reply
    goes in the HTTP response' and 'the reply goes by customer-service message' happens,
    and 'success' is never sent for a delivery that is not recorded.
    """

    def __init__(self, late: bool = False) -> None:
        self.late = late
        self._recorded = asyncio.Event()
        if late:  # the sweeper's deliveries are recorded already
            self._recorded.set()
        self.sealed = False

    @property
    def recorded(self) -> bool:
        return self._recorded.is_set()

    @recorded.setter
    def recorded(self, value: bool) -> None:
        if value:
            self._recorded.set()

    async def wait_recorded(self) -> None:
        await self._recorded.wait()

    def abandon(self) -> None:
        """The callback gave up waiting (503): nobody reads an HTTP reply any more, so
        unless it is being committed now, the reply goes by customer-service message."""
        if not self.sealed:
            self.late = True

    def go_late(self) -> bool:
        """The callback's budget ran out: True if it may answer 'success' now."""
        if self.sealed or not self.recorded:
            return False
        self.late = True
        return True

    def seal(self) -> bool:
        """Handling is about to commit: True if its reply goes in the HTTP response."""
        if not self.late:
            self.sealed = True
        return not self.late


class _ClaimLost(Exception):
    """Another attempt completed this delivery first."""


class Inbox:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.db = services.db
        self.settings = services.settings.intake
        self._journal = GroupInsert(self.db.engine, InboundMessage.__table__, "dedupe_key",  # type: ignore[arg-type]
                                    begin=self.db.begin)
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}
        # Outcomes this process gave lately: WeChat's retries and replays are answered
        # from here without touching the database.
        self._recent: OrderedDict[str, Outcome] = OrderedDict()

    # ------------------------------------------------------------ entry points

    async def handle(self, msg: Inbound, delivery: Delivery) -> Outcome:
        """Handle one delivery once; the callback answers with the outcome."""
        key = msg.dedupe_key
        if key in self._recent:
            return self._recent[key]
        return await self._once(key, lambda: self._receive(msg, key, delivery))

    async def sweep(self) -> int:
        """Finish deliveries left undone past their lease (crashes, errors). Returns how many."""
        now = utcnow()
        async with self.db.engine.connect() as connection:
            rows = (await connection.execute(
                select(_T.dedupe_key, _T.payload, _T.attempts).where(
                    _T.done_at.is_(None), or_(_T.lease_until.is_(None), _T.lease_until < now))
                .order_by(_T.id).limit(SWEEP_BATCH))).all()
        finished = 0
        for key, payload, attempts in rows:
            if key in self._inflight:
                continue
            try:
                if attempts >= self.settings.max_attempts:
                    await self._give_up(key, payload)
                else:
                    await self._once(key, lambda k=key, p=payload: self._resume(k, p))
                finished += 1
            except Exception:
                log.exception("sweeping delivery %s failed; it stays for the next sweep", _short(key))
        return finished

    # ------------------------------------------------------------ single flight

    async def _once(self, key: str, work: Callable[[], Awaitable[Outcome]]) -> Outcome:
        while True:
            running = self._inflight.get(key)
            if running is None:
                break
            try:
                outcome = await asyncio.shield(running)
            except Exception:
                continue  # the first attempt failed; try ourselves
            # That attempt's reply went (or goes) through its own channel.
            return ACKNOWLEDGED if outcome.late else outcome
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            outcome = await work()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-run, nobody else needs it
            raise
        else:
            future.set_result(outcome)
            self._remember(key, outcome)
            return outcome
        finally:
            del self._inflight[key]

    def _remember(self, key: str, outcome: Outcome) -> None:
        self._recent[key] = ACKNOWLEDGED if outcome.late else outcome
        if len(self._recent) > RECENT_REPLIES:
            self._recent.popitem(last=False)

    # ------------------------------------------------------------ the steps

    async def _receive(self, msg: Inbound, key: str, delivery: Delivery) -> Outcome:
        token = secrets.token_hex(8)
        if not await self._record(msg, key, token):
            outcome = await self._join(key, token, delivery)
            if outcome is not None:
                return outcome
        delivery.recorded = True
        return await self._complete(msg, key, token, delivery)

    async def _resume(self, key: str, payload: dict | None) -> Outcome:
        """The sweeper finishes a recorded delivery; its reply goes as a customer-service message."""
        token = secrets.token_hex(8)
        if not await self._take_over(key, token):
            return ACKNOWLEDGED  # someone else has it now
        try:
            msg = Inbound.from_fields(dict(payload or {}))
        except BadMessage:
            await self._give_up(key, payload)
            return ACKNOWLEDGED
        log.warning("finishing delivery %s left undone by an earlier attempt", _short(key))
        return await self._complete(msg, key, token, Delivery(late=True))

    async def _record(self, msg: Inbound, key: str, token: str) -> bool:
        """Write-ahead: the delivery, claimed by us, committed (with whatever other
        deliveries arrive meanwhile: group commit). False if it was recorded before."""
        now = utcnow()
        return await self._journal.insert(dict(
            dedupe_key=key, openid=msg.openid, msg_type=msg.msg_type, event=msg.event or None,
            received_at=now, reply=None, done_at=None, claim_token=token,
            lease_until=now + timedelta(seconds=self.settings.lease_seconds), attempts=1, late=False,
            last_error=None, payload={k: v for k, v in msg.fields.items() if k not in SENSITIVE_FIELDS}))

    async def _join(self, key: str, token: str, delivery: Delivery) -> Outcome | None:
        """The delivery was recorded before (a retry or a replay). Its stored outcome; or
        None once we have claimed it (its earlier attempt failed or died); or, while a
        live attempt elsewhere is still on it, ACKNOWLEDGED when our budget runs out."""
        marked = False
        while True:
            row = await self._stored(key)
            if row is not None and row.done_at is not None:
                return ACKNOWLEDGED if row.late else Outcome(row.reply or None)
            if await self._take_over(key, token):
                return None
            if not marked:
                # A live attempt elsewhere owns it. Before we may answer 'success', it must
                # be bound to reply by customer-service message: its own HTTP answer may
                # be gone (WeChat retried), and once we acknowledge WeChat sends no retry.
                if not await self._mark_late(key):
                    continue  # it finished meanwhile: its stored outcome
                marked = True
                delivery.recorded = True  # it is, by another attempt: 'success' is safe now
            if delivery.late:
                return ACKNOWLEDGED
            await asyncio.sleep(POLL_SECONDS)

    async def _mark_late(self, key: str) -> bool:
        """Whoever completes this delivery replies by customer-service message. False if it is done."""
        async with self.db.engine.begin() as connection:
            result = await connection.execute(
                update(InboundMessage.__table__)  # type: ignore[arg-type]
                .where(_T.dedupe_key == key, _T.done_at.is_(None)).values(late=True))
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def _take_over(self, key: str, token: str) -> bool:
        now = utcnow()
        async with self.db.engine.begin() as connection:
            result = await connection.execute(
                update(InboundMessage.__table__)  # type: ignore[arg-type]
                .where(_T.dedupe_key == key, _claimable())
                .values(claim_token=token, lease_until=now + timedelta(seconds=self.settings.lease_seconds),
                        attempts=_T.attempts + 1),
                {"now": now, "max_attempts": self.settings.max_attempts})
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def _complete(self, msg: Inbound, key: str, token: str, delivery: Delivery) -> Outcome:
        """Handle the claimed delivery: everything it changes, its reply and its completion
        in one transaction."""
        try:
            async with self.db.transaction() as s:
                reply, session = await dispatch(self.services, s, msg, key)
                late = not delivery.seal()
                connection = await s.connection()
                # late OR …: another attempt may have answered 'success' for this delivery
                # (_mark_late); then the reply goes by customer-service message whatever
                # this attempt's own callback is waiting for.
                completed = (await _COMPLETE.run(connection, {
                    "key": key, "token": token, "done_at": utcnow(), "reply": reply or "", "late": late})).first()
                if completed is None:
                    raise _ClaimLost()
                late = bool(completed.late)
                if late and reply:
                    self.services.outbox.queue_text(s, msg.openid, reply, title="回复")
        except _ClaimLost:
            row = await self._stored(key)
            return ACKNOWLEDGED if row is None or row.late else Outcome(row.reply or None)
        except BaseException as exc:
            await self._release(key, token, exc)
            raise
        session.run_after_commit()
        if late and reply:
            self.services.outbox.kick()
        return Outcome(reply, late)

    async def _release(self, key: str, token: str, exc: BaseException) -> None:
        """After a failed attempt: the record may be claimed again at once (by WeChat's
        retry or the sweeper). Best effort: if even this fails, the lease runs out."""
        try:
            async with self.db.engine.begin() as connection:
                await connection.execute(
                    update(InboundMessage.__table__)  # type: ignore[arg-type]
                    .where(_T.dedupe_key == key, _T.claim_token == token)
                    .values(claim_token=None, lease_until=utcnow(), last_error=type(exc).__name__[:300]))
        except Exception:
            log.warning("could not release delivery %s; its lease will run out", _short(key))

    async def _give_up(self, key: str, payload: dict | None) -> None:
        """Too many failed attempts: tell the resident, keep the record for an operator."""
        openid = str((payload or {}).get("FromUserName") or "")
        async with self.db.transaction() as s:
            result = await (await s.connection()).execute(
                update(InboundMessage.__table__)  # type: ignore[arg-type]
                .where(_T.dedupe_key == key, _T.done_at.is_(None))
                .values(done_at=utcnow(), late=True, claim_token=None,
                        last_error=f"gave up after {self.settings.max_attempts} attempts"))
            if result.rowcount == 1 and openid:  # type: ignore[attr-defined]
                self.services.outbox.queue_text(s, openid, texts.INTAKE_FAILED, title="提示")
        log.error("gave up on delivery %s after %d attempts", _short(key), self.settings.max_attempts)
        self.services.outbox.kick()

    async def _stored(self, key: str):  # type: ignore[no-untyped-def]
        async with self.db.engine.connect() as connection:
            return (await connection.execute(
                select(_T.done_at, _T.reply, _T.late).where(_T.dedupe_key == key))).first()


def _short(key: str) -> str:
    """A delivery key for logs, without the openid events carry."""
    return key if key.startswith("m:") else key.split(":", 1)[0] + ":…" + key[-12:]
