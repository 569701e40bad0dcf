"""The tables. One class a table; workflow states and categories are codes that
config/ defines, so adding one is a config change, not a migration.

Times are timezone-aware UTC (see bot.clock); display converts to China time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel


def _json(default: Any = None) -> Any:
    return Field(default_factory=lambda: default() if callable(default) else default,
                 sa_column=Column(JSON, nullable=True))


class Area(SQLModel, table=True):
    """A node of the grid tree: district → street → community → grid.

    `code` is the stable 网格编码; it is the key everything else refers to.
    """

    __tablename__ = "area"
    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=100)
    level: str = Field(max_length=16, index=True)  # district / street / community / grid
    parent_code: Optional[str] = Field(default=None, foreign_key="area.code", max_length=32, index=True)
    polygon: Optional[list] = _json(None)  # [[lng, lat], ...] for grids
    center_lat: Optional[float] = None
    center_lng: Optional[float] = None
    places: Optional[list] = _json(list)  # estates, roads, landmarks named by residents
    households: Optional[int] = None


class Staff(SQLModel, table=True):
    """A staff member. `login` (工号) is how people and the CLI name them; their role's
    rights are rows of config/rights.toml; `area_code` is their node of the grid tree."""

    __tablename__ = "staff"
    id: Optional[int] = Field(default=None, primary_key=True)
    login: Optional[str] = Field(default=None, max_length=32, sa_column_kwargs={"unique": True})
    name: str = Field(max_length=50)
    role: str = Field(max_length=24, index=True)  # a role code of config/rights.toml
    area_code: Optional[str] = Field(default=None, foreign_key="area.code", max_length=32, index=True)
    department: Optional[str] = Field(default=None, max_length=32, index=True)
    openid: Optional[str] = Field(default=None, max_length=64, index=True)
    active: bool = True


class StaffInvite(SQLModel, table=True):
    """A one-time binding code (`minyi staff invite`): the staff member sends 「绑定 CODE」
    and their openid is bound. Only the code's hash is stored."""

    __tablename__ = "staff_invite"
    code_hash: str = Field(primary_key=True, max_length=64)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    created_at: datetime
    expires_at: datetime
    used_at: Optional[datetime] = None
    used_by: Optional[str] = Field(default=None, max_length=64)


class AuditEntry(SQLModel, table=True):
    """An action refused (or another security-relevant act): who, what, on what, why."""

    __tablename__ = "audit_entry"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str = Field(max_length=64, index=True)
    action: str = Field(max_length=32)
    target: Optional[str] = Field(default=None, max_length=64)
    outcome: str = Field(max_length=16)  # refused / allowed / bound …
    reason: Optional[str] = Field(default=None, max_length=300)


class Resident(SQLModel, table=True):
    """A follower of the account. Only what the dialogs need; no name, no phone."""

    __tablename__ = "resident"
    openid: str = Field(primary_key=True, max_length=64)
    subscribed: bool = True
    subscribed_at: Optional[datetime] = None
    unsubscribed_at: Optional[datetime] = None
    consent_at: Optional[datetime] = None
    home_area_code: Optional[str] = Field(default=None, foreign_key="area.code", max_length=32)
    scene: Optional[str] = Field(default=None, max_length=64)
    created_at: datetime
    # Last message from the resident: the 48-hour customer-service window runs from here.
    last_seen_at: Optional[datetime] = None
    # Set when staff ask this resident a question (a ticket enters a "waiting" state); while
    # set, the resident's next message is looked at as the answer (bot/dialogs/followup.py).
    awaiting_answer_since: Optional[datetime] = None


class DialogState(SQLModel, table=True):
    """Where a resident is in a multi-turn dialog; survives restarts."""

    __tablename__ = "dialog_state"
    openid: str = Field(primary_key=True, max_length=64)
    state: str = Field(default="idle", max_length=32)
    data: Optional[dict] = _json(dict)
    updated_at: datetime


class InboundMessage(SQLModel, table=True):
    """Every accepted callback, recorded before it is handled (write-ahead), keyed for
    exactly-once handling.

    The row is committed first, with a claim (token + lease) of the worker handling it.
    Handling commits the ticket, dialog state, outbox rows and the reply together with
    `done_at`, guarded by the claim token, so exactly one attempt ever completes. A row
    with no `done_at` past its lease was left by a crash: the sweeper finishes it.
    """

    __tablename__ = "inbound_message"
    __table_args__ = (Index("ix_inbound_message_undone", "done_at", "lease_until"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=160, sa_column_kwargs={"unique": True})
    openid: str = Field(max_length=64, index=True)
    msg_type: str = Field(max_length=32)
    event: Optional[str] = Field(default=None, max_length=64)
    payload: Optional[dict] = _json(dict)
    reply: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    received_at: datetime
    done_at: Optional[datetime] = None
    claim_token: Optional[str] = Field(default=None, max_length=32)
    lease_until: Optional[datetime] = None
    attempts: int = 0
    # The reply went out as a customer-service message (the callback had answered 'success').
    late: bool = False
    last_error: Optional[str] = Field(default=None, max_length=300)


class Ticket(SQLModel, table=True):
    __tablename__ = "ticket"
    # Newest first: a resident's tickets (also the repeat candidates), and a grid's originals
    # of one category (the duplicate candidates, bot.casework.tickets).
    __table_args__ = (Index("ix_ticket_openid_created", "openid", "created_at"),
                      Index("ix_ticket_duplicate_candidates", "area_code", "category", "duplicate_of_id",
                            "created_at"),
                      # The SLA clock's scans (bot/casework/sla_clock.py): open tickets past a
                      # warning point or deadline, without reading the closed history.
                      Index("ix_ticket_sla_response", "status", "accepted_at", "response_due_at"),
                      Index("ix_ticket_sla_closure_warn", "status", "closure_warn_at"),
                      Index("ix_ticket_sla_closure_due", "status", "closure_due_at"))
    id: Optional[int] = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, sa_column_kwargs={"unique": True})
    openid: str = Field(max_length=64)  # indexed with created_at, see __table_args__
    appeal_type: str = Field(max_length=8)  # 投诉 / 求助 / 咨询 / 建议 / 举报
    category: str = Field(max_length=48, index=True)
    department: Optional[str] = Field(default=None, max_length=32, index=True)
    co_departments: Optional[list] = _json(list)
    urgency: str = Field(max_length=8)  # 特急 / 紧急 / 一般
    area_code: Optional[str] = Field(default=None, foreign_key="area.code", max_length=32, index=True)
    status: str = Field(max_length=24, index=True)
    description: str = Field(sa_column=Column(Text, nullable=False))
    lat: Optional[float] = None
    lng: Optional[float] = None
    address: Optional[str] = Field(default=None, max_length=200)
    confidence: Optional[float] = None
    keywords: Optional[list] = _json(list)
    source_key: Optional[str] = Field(default=None, max_length=160)
    created_at: datetime = Field(index=True)
    updated_at: datetime
    response_due_at: Optional[datetime] = None
    closure_due_at: Optional[datetime] = None
    accepted_at: Optional[datetime] = None
    resolved_at: Optional[datetime] = None
    closed_at: Optional[datetime] = None
    # MinHash of the description (nlp.similarity, an encoded string); None when too short.
    signature: Optional[str] = _json(None)
    # Another resident's open ticket that already covers this one (its staff handle it).
    duplicate_of_id: Optional[int] = Field(default=None, foreign_key="ticket.id")
    # The same resident's earlier open ticket on the same problem (二次投诉).
    repeat_of_id: Optional[int] = Field(default=None, foreign_key="ticket.id")
    # The SLA clock (bot/casework/sla_clock.py): 80 % points of the deadlines, the pause
    # in progress and the time paused so far (deadlines move on by each pause), the
    # overdue mark and how far up the grid tree the ticket has been escalated.
    clock_started_at: Optional[datetime] = None  # creation, or the last reopen (restarts_clock)
    response_warn_at: Optional[datetime] = None
    closure_warn_at: Optional[datetime] = None
    paused_since: Optional[datetime] = None
    paused_seconds: int = 0
    overdue: bool = False
    escalation_level: int = 0
    # The staff member who accepted it (handles it) and how often it was reopened.
    handler_id: Optional[int] = Field(default=None, foreign_key="staff.id", index=True)
    reopen_count: int = 0


class TicketEvent(SQLModel, table=True):
    """The audit trail of a ticket: every state change and who made it."""

    __tablename__ = "ticket_event"
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    at: datetime
    action: str = Field(max_length=32)
    from_status: Optional[str] = Field(default=None, max_length=24)
    to_status: Optional[str] = Field(default=None, max_length=24)
    actor: str = Field(max_length=64)
    note: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))


class TicketChange(SQLModel, table=True):
    """One field of a ticket changed (django-helpdesk's TicketChange): status, category,
    area_code, department, urgency, handler_id …, beside the event that made it.
    Retraining reads re-categorisations from here."""

    __tablename__ = "ticket_change"
    __table_args__ = (Index("ix_ticket_change_field_at", "field", "at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    event_id: Optional[int] = Field(default=None, foreign_key="ticket_event.id")
    field: str = Field(max_length=32)
    old_value: Optional[str] = Field(default=None, max_length=200)
    new_value: Optional[str] = Field(default=None, max_length=200)
    actor: str = Field(max_length=64)
    at: datetime


class SlaMark(SQLModel, table=True):
    """A warning or escalation the SLA clock made, once per ticket, clock and level:
    the unique key is what makes a tick idempotent on any number of workers."""

    __tablename__ = "sla_mark"
    __table_args__ = (Index("ux_sla_mark_once", "ticket_id", "round", "kind", "clock", "level", unique=True),)
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")
    kind: str = Field(max_length=16)  # warn / breach / escalate
    clock: str = Field(max_length=16)  # response / closure
    level: int = 0  # escalation level (1 = parent node of the grid, 2 = next …)
    round: int = 0  # the ticket's reopen_count: a reopened ticket's clocks warn and escalate anew
    area_code: Optional[str] = Field(default=None, max_length=32)  # the node escalated to
    at: datetime


class TicketPart(SQLModel, table=True):
    """A co-department's part of a joint dispatch (联合派单): told, accepts, reports done;
    the lead department closes when every part is done."""

    __tablename__ = "ticket_part"
    __table_args__ = (Index("ux_ticket_part", "ticket_id", "department", unique=True),)
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    department: str = Field(max_length=32)
    status: str = Field(max_length=24)  # a part state of config/workflow.toml
    handler_id: Optional[int] = Field(default=None, foreign_key="staff.id")
    note: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime
    accepted_at: Optional[datetime] = None
    done_at: Optional[datetime] = None


class Rating(SQLModel, table=True):
    """The resident's 回访 answer for one resolution of a ticket (round 1, 2 … after a
    reopen). channel: chat / link / default (no answer in time → 未评价, never satisfied)."""

    __tablename__ = "rating"
    __table_args__ = (Index("ux_rating_round", "ticket_id", "round", unique=True),)
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    round: int = 1
    channel: Optional[str] = Field(default=None, max_length=16)  # set when answered
    satisfaction: Optional[str] = Field(default=None, max_length=8)  # 满意 / 基本满意 / 不满意 / 未评价
    resolution: Optional[str] = Field(default=None, max_length=8)  # 已解决 / 部分解决 / 未解决
    comment: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    asked_at: datetime
    answered_at: Optional[datetime] = None


class Attachment(SQLModel, table=True):
    """Photo, voice, video, location or link a resident added to a ticket."""

    __tablename__ = "attachment"
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    kind: str = Field(max_length=16)  # image / voice / video / shortvideo / location / link
    media_id: Optional[str] = Field(default=None, max_length=160)
    url: Optional[str] = Field(default=None, max_length=500)
    local_path: Optional[str] = Field(default=None, max_length=300)
    label: Optional[str] = Field(default=None, max_length=300)
    lat: Optional[float] = None
    lng: Optional[float] = None
    created_at: datetime
    added_by: Optional[str] = Field(default=None, max_length=64)  # an actor code; None: the resident


class StaffCredential(SQLModel, table=True):
    """A staff member's console password (argon2 hash), apart from the staff row the
    organisation caches in every worker."""

    __tablename__ = "staff_credential"
    staff_id: int = Field(foreign_key="staff.id", primary_key=True)
    password_hash: str = Field(max_length=200)
    changed_at: datetime


class ConsoleSession(SQLModel, table=True):
    """A console login. The cookie holds the session id; only its hash is stored."""

    __tablename__ = "console_session"
    id_hash: str = Field(primary_key=True, max_length=64)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime = Field(index=True)


class ApiToken(SQLModel, table=True):
    """A bearer token of the JSON API (`minyi token create`), scoped like its staff member."""

    __tablename__ = "api_token"
    id: Optional[int] = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    prefix: str = Field(max_length=16)  # shown in lists to tell tokens apart
    staff_id: int = Field(foreign_key="staff.id", index=True)
    label: Optional[str] = Field(default=None, max_length=100)
    created_at: datetime
    last_used_at: Optional[datetime] = None
    revoked_at: Optional[datetime] = None


class LoginThrottle(SQLModel, table=True):
    """Failed console logins per account and per client address, for throttling."""

    __tablename__ = "login_throttle"
    key: str = Field(primary_key=True, max_length=100)  # "login:<login>" or "ip:<address>"
    failures: int = 0
    window_start: datetime
    locked_until: Optional[datetime] = None


class Outbox(SQLModel, table=True):
    """Every outbound WeChat call, written in the same transaction as the change
    that caused it (transactional outbox), then delivered by the sender.

    status: pending → sent | failed | deferred (quota, retried later) | offline
    (no app secret: recorded here instead of the network).
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(max_length=24)  # custom / template / subscribe / menu / media
    openid: Optional[str] = Field(default=None, max_length=64, index=True)
    payload: Optional[dict] = _json(dict)
    status: str = Field(default="pending", max_length=16)
    channel: Optional[str] = Field(default=None, max_length=24)  # what finally carried it
    attempts: int = 0
    last_error: Optional[str] = Field(default=None, max_length=300)
    created_at: datetime
    next_attempt_at: Optional[datetime] = None
    sent_at: Optional[datetime] = None


class Counter(SQLModel, table=True):
    """Named counters, e.g. the per-day ticket sequence."""

    __tablename__ = "counter"
    name: str = Field(primary_key=True, max_length=64)
    value: int = 0
