"""What requests bring, checked before anything reaches the ticket domain: query
parameters, JSON bodies and the photo upload, each against the same specification the
OpenAPI document is built from (bot/api/openapi.py), so the document and the checks
cannot drift apart. Bad input is an ApiError (400, 413, 415), never a 5xx."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from aiohttp import web

from bot.api.errors import ApiError, bad_body, bad_parameter
from bot.casework.context import Casework
from bot.clock import from_local
from bot.httpbody import read_limited

MAX_JSON_BYTES = 64 * 1024
# Characters no text field takes: C0 controls but tab, line feed and carriage return, and DEL
# (PostgreSQL cannot store NUL at all); the same pattern in the OpenAPI document.
TEXT_PATTERN = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$"
NUMBER_PATTERN = "^[0-9]{8}-[0-9]{4,9}$"
NUMBER = re.compile(NUMBER_PATTERN)
INTEGER = re.compile(r"-?[0-9]{1,9}")
DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_INSTANT_CHARS = 40
MAX_ROW_ID = 2**31 - 1  # integer primary keys are PostgreSQL INTEGER: a larger id finds nothing
EARLIEST_YEAR, LATEST_YEAR = 2000, 2099  # no ticket is older or newer; the rest is a typo
JSON_TYPES = ("application/json",)

Choices = Callable[[Casework], Iterable[str]]


def conforms(pattern: str, text: str) -> bool:
    """`text` matches an anchored OpenAPI pattern as JSON Schema reads it (a final line
    feed is not let through by `$`, as Python's re would)."""
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), text) is not None


# ---------------------------------------------------------------- query parameters

@dataclass(frozen=True)
class Param:
    """A query parameter. kind: "code" (one of `choices`), "text", "integer" or
    "instant" (an ISO 8601 date or date-time; China time without an offset)."""

    name: str
    kind: str
    description: str
    choices: Choices | None = None
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    default: int | str | None = None
    end_of_day: bool = False  # an instant given as a bare date means the end of that day

    def schema(self, case: Casework) -> dict[str, Any]:
        if self.kind == "integer":
            schema: dict[str, Any] = {"type": "integer"}
            if self.minimum is not None:
                schema["minimum"] = self.minimum
            if self.maximum is not None:
                schema["maximum"] = self.maximum
        elif self.kind == "code" and self.choices is not None:
            schema = {"type": "string", "enum": sorted(set(self.choices(case)))}
        elif self.kind == "instant":
            schema = {"type": "string", "minLength": 1, "maxLength": MAX_INSTANT_CHARS}
        else:
            schema = {"type": "string", "pattern": TEXT_PATTERN}
            if self.max_length is not None:
                schema["maxLength"] = self.max_length
        if self.default is not None:
            schema["default"] = self.default
        return schema


def parse_query(request: web.Request, params: Iterable[Param], case: Casework) -> dict[str, Any]:
    """The parameters' values (None when not given; defaults applied); ApiError on bad ones.
    Parameters the operation does not know are ignored."""
    values: dict[str, Any] = {}
    for param in params:
        given = request.query.getall(param.name, [])
        if len(given) > 1:
            raise bad_parameter(f"参数 {param.name} 只能给一次")
        if not given:
            values[param.name] = param.default
            continue
        values[param.name] = _value(param, given[0], case)
    return values


def _value(param: Param, text: str, case: Casework) -> Any:
    name = param.name
    if not conforms(TEXT_PATTERN, text):
        raise bad_parameter(f"参数 {name} 含有控制字符")
    if not text and param.kind != "text":
        raise bad_parameter(f"参数 {name} 不能为空（不需要时请省略）")
    if param.kind == "integer":
        if not INTEGER.fullmatch(text):
            raise bad_parameter(f"参数 {name} 应为整数")
        number = int(text)
        if param.minimum is not None and number < param.minimum:
            raise bad_parameter(f"参数 {name} 不能小于 {param.minimum}")
        if param.maximum is not None and number > param.maximum:
            raise bad_parameter(f"参数 {name} 不能大于 {param.maximum}")
        return number
    if param.kind == "code":
        known = set(param.choices(case)) if param.choices else set()
        if text not in known:
            raise bad_parameter(f"参数 {name} 的取值 {text[:40]} 不存在")
        return text
    if param.kind == "instant":
        return parse_instant(name, text, param.end_of_day)
    if param.max_length is not None and len(text) > param.max_length:
        raise bad_parameter(f"参数 {name} 最长 {param.max_length} 个字符")
    return text


def parse_instant(name: str, text: str, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or date-time as aware UTC; China time when it has no offset. A bare
    date is the start of that day, or with `end_of_day` its last instant."""
    if len(text) > MAX_INSTANT_CHARS or not text.isascii():
        raise bad_parameter(f"参数 {name} 不是 ISO 8601 日期或时间（如 2026-01-05 或 2026-01-05T09:30）")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise bad_parameter(f"参数 {name} 不是 ISO 8601 日期或时间（如 2026-01-05 或 2026-01-05T09:30）") from None
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise bad_parameter(f"参数 {name} 的年份应在 {EARLIEST_YEAR}–{LATEST_YEAR} 之间")
    if end_of_day and DATE_ONLY.fullmatch(text):
        moment += timedelta(days=1, microseconds=-1)
    return from_local(moment)


# ---------------------------------------------------------------- JSON bodies

@dataclass(frozen=True)
class Field:
    """A property of a JSON body. kind: "text" (a string) or "numbers" (a list of ticket
    numbers). A field that is not required may be null or left out."""

    name: str
    kind: str
    description: str
    required: bool = False
    max_length: int | None = None
    min_items: int = 1
    max_items: int | None = None
    pattern: str | None = None
    choices: Choices | None = None  # documented; the ticket domain checks the value

    def schema(self, case: Casework) -> dict[str, Any]:
        if self.kind == "numbers":
            schema: dict[str, Any] = {"type": "array", "items": {"type": "string", "pattern": NUMBER_PATTERN},
                                      "minItems": self.min_items, "uniqueItems": True}
            if self.max_items is not None:
                schema["maxItems"] = self.max_items
        else:
            schema = {"type": "string", "pattern": self.pattern or TEXT_PATTERN}
            if self.choices is not None:
                schema["enum"] = sorted(set(self.choices(case)))
            if self.max_length is not None:
                schema["maxLength"] = self.max_length
        if not self.required:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return {**schema, "description": self.description}


@dataclass(frozen=True)
class Body:
    fields: tuple[Field, ...]
    description: str = ""
    example: dict[str, Any] = field(default_factory=dict)

    def schema(self, case: Casework) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False,
                "required": [f.name for f in self.fields if f.required],
                "properties": {f.name: f.schema(case) for f in self.fields}}


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


async def read_json(request: web.Request, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The body as JSON: 415 when it is not declared JSON, 413 past `max_bytes`, 400 when
    it is not UTF-8 JSON (lone surrogates included)."""
    if request.content_type not in JSON_TYPES and not request.content_type.endswith("+json"):
        raise ApiError("unsupported_media_type", "请求体须为 JSON（Content-Type: application/json）")
    raw = await read_limited(request, max_bytes)
    if raw is None:
        raise ApiError("payload_too_large", f"请求体不能超过 {max_bytes // 1024} KB")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError("bad_json", "请求体不是有效的 UTF-8 JSON") from None
    if _has_lone_surrogate(value):
        raise ApiError("bad_json", "请求体含有无效的 Unicode 字符（孤立的代理项）")
    return value


async def parse_body(request: web.Request, body: Body) -> dict[str, Any]:
    """The body's fields (None for those left out), checked against `body`."""
    value = await read_json(request)
    if not isinstance(value, dict):
        raise bad_body("请求体应为 JSON 对象")
    known = {f.name for f in body.fields}
    unknown = sorted(set(value) - known)
    if unknown:
        raise bad_body(f"不认识的字段：{'、'.join(name[:40] for name in unknown[:5])}")
    return {f.name: _field(f, value.get(f.name)) for f in body.fields}


def _field(spec: Field, value: Any) -> Any:
    name = spec.name
    if value is None:
        if spec.required:
            raise bad_body(f"缺少字段 {name}")
        return None
    if spec.kind == "numbers":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad_body(f"字段 {name} 应为工单编号（字符串）的列表")
        if len(value) < spec.min_items:
            raise bad_body(f"字段 {name} 至少要有 {spec.min_items} 个工单编号")
        if spec.max_items is not None and len(value) > spec.max_items:
            raise bad_body(f"字段 {name} 最多 {spec.max_items} 个工单编号")
        if len(set(value)) != len(value):
            raise bad_body(f"字段 {name} 中有重复的工单编号")
        bad = next((v for v in value if not NUMBER.fullmatch(v)), None)
        if bad is not None:
            raise bad_body(f"字段 {name} 中的 {bad[:40]} 不是工单编号（如 20260105-0001）")
        return list(value)
    if not isinstance(value, str):
        raise bad_body(f"字段 {name} 应为字符串")
    if spec.choices is not None and not value:  # other values not among them: the ticket domain says why
        raise bad_body(f"字段 {name} 不能为空（不需要时请省略或给 null）")
    if not conforms(spec.pattern or TEXT_PATTERN, value):
        raise bad_body(f"字段 {name} 的格式不正确" if spec.pattern else f"字段 {name} 含有控制字符")
    if spec.max_length is not None and len(value) > spec.max_length:
        raise bad_body(f"字段 {name} 最长 {spec.max_length} 个字符")
    return value


# ---------------------------------------------------------------- the photo upload

@dataclass(frozen=True)
class Upload:
    content: bytes
    label: str | None


async def parse_photo(request: web.Request, max_photo_bytes: int, max_label: int) -> Upload:
    """A multipart/form-data body with a `file` part (the photo) and an optional `label`."""
    if request.content_type != "multipart/form-data":
        raise ApiError("unsupported_media_type", "上传照片须用 multipart/form-data（字段 file，可选 label）")
    limit = max_photo_bytes + 64 * 1024  # the photo and the form around it
    raw = await read_limited(request, limit)
    if raw is None:
        raise ApiError("payload_too_large", f"照片不能超过 {max_photo_bytes // 1024 // 1024} MB")
    head = f"Content-Type: {request.headers.get('Content-Type', '')}\r\nMIME-Version: 1.0\r\n\r\n"
    try:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            head.encode("utf-8", "surrogateescape") + raw)
        parts = list(message.iter_parts()) if message.is_multipart() else []
    except Exception:  # the email parser is lenient; anything it still cannot read is bad input
        raise bad_parameter("无法解析 multipart/form-data 请求体") from None
    found: dict[str, Any] = {}
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if name in ("file", "label"):
            if name in found:
                raise bad_parameter(f"字段 {name} 只能给一次")
            found[name] = part.get_payload(decode=True) or b""
    content = found.get("file")
    if content is None:
        raise bad_parameter("缺少字段 file（照片文件）")
    if len(content) > max_photo_bytes:
        raise ApiError("payload_too_large", f"照片不能超过 {max_photo_bytes // 1024 // 1024} MB")
    label = None
    if "label" in found:
        try:
            label = found["label"].decode("utf-8")
        except UnicodeDecodeError:
            raise bad_parameter("字段 label 应为 UTF-8 文本") from None
        if not conforms(TEXT_PATTERN, label):
            raise bad_parameter("字段 label 含有控制字符")
        if len(label) > max_label:
            raise bad_parameter(f"字段 label 最长 {max_label} 个字符")
    return Upload(content, label or None)
