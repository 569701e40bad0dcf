"""JSON errors for everything under /api/v1: one body shape, {"error": {"code", "message"}},
with the message in Chinese. Views raise `ApiError`; the middleware also turns aiohttp's
own HTTP errors (404 for unknown paths, 405, 408, 413 …) into that shape, and an
unexpected failure into a 500 that says nothing about the internals."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Mapping

from aiohttp import web

from bot.jsonhttp import json_response

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Every error code the API answers with, and its HTTP status (the OpenAPI document lists them).
CODES: dict[str, int] = {
    "bad_json": 400,  # the body is not JSON (or not UTF-8, or holds lone surrogates)
    "invalid_body": 400,  # JSON, but not what the operation takes
    "invalid_parameter": 400,  # a query or form parameter
    "invalid_request": 400,  # the ticket domain refused the values (unknown category, empty note …)
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "conflict": 409,  # the ticket's state does not allow it now
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "internal_error": 500,
    "unavailable": 503,
}

# What aiohttp's own exceptions become, by status.
DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("invalid_request", "请求格式不正确"),
    401: ("unauthorized", "需要 API 令牌"),
    403: ("forbidden", "无权访问"),
    404: ("not_found", "没有这个接口或资源"),
    405: ("method_not_allowed", "此接口不支持该请求方法"),
    408: ("request_timeout", "请求体接收超时"),
    409: ("conflict", "当前状态下不能这样做"),
    413: ("payload_too_large", "请求体过大"),
    415: ("unsupported_media_type", "不支持的请求体类型"),
    503: ("unavailable", "服务繁忙，请稍后重试"),
}
INTERNAL_MESSAGE = "服务内部错误，请稍后重试；如持续出现请联系管理员"
KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "Connection")


class ApiError(Exception):
    """An error answer: `code` is one of CODES, `message` Chinese."""

    def __init__(self, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.headers = code, message, dict(headers or {})

    @property
    def status(self) -> int:
        return CODES[self.code]


def bad_parameter(message: str) -> ApiError:
    return ApiError("invalid_parameter", message)


def bad_body(message: str) -> ApiError:
    return ApiError("invalid_body", message)


def not_found(message: str) -> ApiError:
    return ApiError("not_found", message)


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    response = json_response(error_body(code, message), status=CODES[code])
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


def from_http(exc: web.HTTPException) -> web.Response:
    code, message = DEFAULTS.get(exc.status, ("invalid_request", exc.reason or "请求无法处理"))
    if exc.status not in DEFAULTS and exc.status >= 500:
        code, message = "internal_error", INTERNAL_MESSAGE
    text = exc.text or ""
    # Texts minyi itself raised (bot/httpbody.py) are Chinese already: keep them.
    if text and not text.isascii() and exc.status in DEFAULTS:
        message = text
    headers = {name: exc.headers[name] for name in KEPT_HEADERS if name in exc.headers}
    return error_response(code, message, headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return from_http(exc)
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        return error_response("internal_error", INTERNAL_MESSAGE)
