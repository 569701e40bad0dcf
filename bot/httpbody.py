"""Slow and many clients: request bodies within a size limit (413), a total read deadline
(408) and a cap on bodies still arriving at once (503); the HTTP server's connection
options; the open-file limit of a worker.

A body that has fully arrived with its head (every genuine WeChat callback: a few KB) is
read without taking a slot, so clients that drip their bodies cannot crowd it out.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

from bot.settings import ServerSettings

log = logging.getLogger(__name__)

# After a response to a request whose body has not finished arriving (408, 503, 413, 403
# before reading), aiohttp keeps reading and discarding it for this long so the client can
# still see the response; then it closes the connection. aiohttp's default is 10 s, which
# lets a dripping client hold its socket that much longer.
LINGERING_SECONDS = 1.0

TIMEOUT_TEXT = "请求体接收超时"
BUSY_TEXT = "服务繁忙，请稍后重试"


@dataclass
class BodyGate:
    """Per app: the read deadline and how many bodies are being read right now."""

    timeout_seconds: float
    max_inflight: int
    inflight: int = 0

    @classmethod
    def of(cls, server: ServerSettings) -> "BodyGate":
        return cls(server.body_read_timeout_seconds, server.max_inflight_bodies)


if hasattr(web, "RequestKey"):  # aiohttp >= 3.13
    BODY_GATE: Any = web.RequestKey("body_gate", BodyGate)
else:  # pragma: no cover
    BODY_GATE = "minyi.body_gate"

# Used when a request did not pass through body_limits() (an app built without it).
_DEFAULT_GATE = BodyGate.of(ServerSettings())

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def body_limits(server: ServerSettings) -> Any:
    """The middleware that hands read_limited() this app's gate (one per app, so the
    in-flight count is per worker)."""
    gate = BodyGate.of(server)

    @web.middleware
    async def body_limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[BODY_GATE] = gate
        return await handler(request)

    body_limits_middleware.gate = gate  # type: ignore[attr-defined]  # for tests and diagnostics
    return body_limits_middleware


def _refusal(cls: type[web.HTTPException], text: str) -> web.HTTPException:
    return cls(text=text, headers={"Connection": "close"})


async def read_limited(request: web.Request, max_bytes: int) -> bytes | None:
    """The body, or None when it is larger than `max_bytes` (checked before and while reading).

    Raises web.HTTPServiceUnavailable (503) at once when the body has not fully arrived and
    the app already reads its maximum of such bodies, and web.HTTPRequestTimeout (408) when
    the whole body has not arrived within the deadline. Both happen before anything is
    acknowledged, so WeChat retries the delivery."""
    if request.content_length is not None and request.content_length > max_bytes:
        return None
    if request.content.is_eof():  # all there already: no slot, no waiting
        return await _read(request, max_bytes)
    gate: BodyGate = request.get(BODY_GATE) or _DEFAULT_GATE
    if gate.inflight >= gate.max_inflight:
        raise _refusal(web.HTTPServiceUnavailable, BUSY_TEXT)
    gate.inflight += 1
    try:
        async with asyncio.timeout(gate.timeout_seconds):
            return await _read(request, max_bytes)
    except TimeoutError:
        raise _refusal(web.HTTPRequestTimeout, TIMEOUT_TEXT) from None
    finally:
        gate.inflight -= 1


async def _read(request: web.Request, max_bytes: int) -> bytes | None:
    body = bytearray()
    async for chunk in request.content.iter_chunked(16384):
        body += chunk
        if len(body) > max_bytes:
            return None
    return bytes(body)


def handler_options(server: ServerSettings) -> dict[str, Any]:
    """Connection options of aiohttp's request handler, for web.run_app / AppRunner /
    TestServer. aiohttp (3.14) has no header read timeout of its own: the keep-alive timer,
    armed when a connection opens and after every response, closes a connection whose next
    request head has not fully arrived in time, so it bounds a slow head as well."""
    return {"keepalive_timeout": server.keepalive_timeout_seconds, "lingering_time": LINGERING_SECONDS}


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each connection is a descriptor).
    Returns (soft, hard) as they are afterwards; (-1, -1) where the platform has no rlimits."""
    try:
        import resource
    except ImportError:  # pragma: no cover (not POSIX)
        return -1, -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    candidates = [hard] if hard != resource.RLIM_INFINITY else []
    # An unlimited hard limit cannot be the soft one on Linux (nr_open caps it).
    candidates += [_nr_open(), 1048576, 65536]
    for target in candidates:
        if target is None or (soft != resource.RLIM_INFINITY and target <= soft):
            continue
        if hard != resource.RLIM_INFINITY and target > hard:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _nr_open() -> int | None:
    try:
        with open("/proc/sys/fs/nr_open") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None
