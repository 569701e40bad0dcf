"""Logging: one format in every process (the CLI, each `serve` worker, spawned or not).

Each record carries time, level, worker, pid, request id, logger and message, as a text
line (default) or a JSON object per line (`[log] format = "json"`). Openids, Chinese
mobile numbers and access tokens are masked in every message and traceback. The request
id comes from request_id_middleware (a contextvar, so tasks spawned while handling a
request carry it too). Repeated "out of file descriptors" accept errors from asyncio are
let through at most once a second.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import secrets
import sys
import time
from typing import Any, Awaitable, Callable, Iterable, TextIO

from aiohttp import web

from bot.settings import LogSettings

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
REQUEST_ID_HEADER = "X-Request-Id"
# An incoming id is kept when it is short and made of safe characters only (it goes into
# log lines and a response header); anything else is replaced by a fresh one.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- masking

# An openid: 'o' and 27 characters of [A-Za-z0-9_-], not part of a longer such word.
_OPENID = re.compile(r"(?<![A-Za-z0-9_-])o[A-Za-z0-9_-]{27}(?![A-Za-z0-9_-])")
# A mainland mobile number, 11 digits from 13x-19x, optionally +86 and grouped 3-4-4.
_MOBILE = re.compile(r"(?<![\d+])(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?!\d)")
_ACCESS_TOKEN = re.compile(r"(access_token=)[^&\s'\"]+")
OPENID_MASK = "<openid>"
MOBILE_MASK = "<mobile>"


def mask(text: str) -> str:
    """`text` with openids, mobile numbers and access tokens replaced."""
    text = _OPENID.sub(OPENID_MASK, text)
    text = _MOBILE.sub(MOBILE_MASK, text)
    return _ACCESS_TOKEN.sub(r"\1***", text)


# ---------------------------------------------------------------- formatters

class _Identity:
    """Which worker this process is: set once by setup_logging."""

    worker: str = "main"


def _time(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """`2026-05-09T07:35:25.123+08:00 INFO worker=1 pid=4242 req=ab12… minyi.x: message`"""

    def format(self, record: logging.LogRecord) -> str:
        line = (f"{_time(record)} {record.levelname} worker={_Identity.worker} pid={record.process} "
                f"req={REQUEST_ID.get() or '-'} {record.name}: {record.getMessage()}")
        extra = _exception_text(self, record)
        return mask(line + ("\n" + extra if extra else ""))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, worker, pid, request_id, logger, message
    (and exc when there is a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "worker": _Identity.worker,
            "pid": record.process,
            "request_id": REQUEST_ID.get(),
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        extra = _exception_text(self, record)
        if extra:
            entry["exc"] = mask(extra)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    parts = []
    if record.exc_info:
        if not record.exc_text:
            record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


def formatter_for(fmt: str) -> logging.Formatter | None:
    """The formatter named by `[log] format`, None for an unknown name."""
    name = str(fmt).strip().lower()
    if name == "text":
        return TextFormatter()
    if name == "json":
        return JsonFormatter()
    return None


def level_of(level: str) -> int | None:
    """A level name or number from `[log] level`, None when it is neither."""
    value = str(level).strip().upper()
    if value.isdigit():
        return int(value)
    number = logging.getLevelName(value)
    return number if isinstance(number, int) else None


# ---------------------------------------------------------------- rate limiting

ACCEPT_ERROR_PREFIXES = ("socket.accept() out of system resource",)


class RateLimitFilter(logging.Filter):
    """At most one record a `interval` seconds among those whose message starts with one
    of `prefixes`; the next one let through says how many were dropped. Other records
    pass untouched. (asyncio logs an accept error for every failed accept, which at the
    open-file limit is hundreds of thousands a minute.)"""

    def __init__(self, prefixes: Iterable[str], interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)
        self.interval = interval
        self.clock = clock
        self.suppressed = 0
        self._next = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefixes):
            return True
        now = self.clock()
        if now < self._next:
            self.suppressed += 1
            return False
        self._next = now + self.interval
        if self.suppressed:
            record.msg = f"{record.getMessage()}\n[{self.suppressed} similar records suppressed]"
            record.args = None
            self.suppressed = 0
        return True


# ---------------------------------------------------------------- setup

class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (tests replace it)."""

    _minyi = True

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


# Libraries that are too talkative at INFO (apscheduler: two lines per job run, every few
# seconds per worker; its job failures are errors and still show).
QUIET_LOGGERS = {"jieba": logging.WARNING, "apscheduler": logging.WARNING}


def setup_logging(settings: LogSettings, worker: str | int | None = None, verbose: bool = False) -> None:
    """Configure the root logger of this process; safe to call again (it replaces its own
    handler, never anyone else's). An unknown format or level falls back to text / INFO
    with a warning rather than stopping the service."""
    if worker is not None:
        _Identity.worker = str(worker)
    formatter, level = formatter_for(settings.format), level_of(settings.level)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_minyi", False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(formatter or TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else (level if level is not None else logging.INFO))
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet)
    if not verbose:  # alembic announces every plugin and step at INFO; `migrate` prints its own summary
        logging.getLogger("alembic").setLevel(logging.WARNING)
    install_accept_error_filter()
    if formatter is None:
        log.warning("unknown [log] format %r (text or json): logging as text", settings.format)
    if level is None:
        log.warning("unknown [log] level %r (DEBUG, INFO, WARNING, ERROR): logging at INFO", settings.level)


def install_accept_error_filter(interval: float = 1.0) -> RateLimitFilter:
    """On the asyncio logger (where the records are made); replaces an earlier one."""
    logger = logging.getLogger("asyncio")
    for old in list(logger.filters):
        if isinstance(old, RateLimitFilter):
            logger.removeFilter(old)
    limiter = RateLimitFilter(ACCEPT_ERROR_PREFIXES, interval)
    logger.addFilter(limiter)
    return limiter


# ---------------------------------------------------------------- request id

def request_id_for(incoming: str | None) -> str:
    if incoming and _SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return secrets.token_hex(8)


@web.middleware
async def request_id_middleware(request: web.Request,
                                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                ) -> web.StreamResponse:
    """Sets REQUEST_ID for the request (an incoming X-Request-Id if short and safe, else a
    new one) and returns it in the X-Request-Id response header."""
    request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))
    token = REQUEST_ID.set(request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        REQUEST_ID.reset(token)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response
