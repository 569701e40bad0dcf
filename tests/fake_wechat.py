"""A local fake of api.weixin.qq.com at its HTTP boundary.

It speaks the real paths, request/response JSON and error codes of the endpoints
minyi uses, so the real client (bot/wechat/client.py) is exercised unchanged:

    fake = FakeWeChat()
    server = await aiohttp_server(fake.app())
    settings = make_settings(tmp_path, database_url, wechat=fake.settings_for(server))

State lives on the FakeWeChat object: issued tokens, recorded calls, scripted
failures (`fail`), slow responses (`slow`), dropped connections (`drop`) and the
media files `media/get` serves.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from aiohttp import web
from sqlmodel import select

from bot.app import create_app
from storage.models import Outbox
from tests import wechat
from tests.conftest import make_settings

APPID = wechat.APPID
SECRET = "fake-app-secret-0123456789abcdef"
TOKEN_TTL = 7200

STABLE_TOKEN = "/cgi-bin/stable_token"
CUSTOM_SEND = "/cgi-bin/message/custom/send"
TEMPLATE_SEND = "/cgi-bin/message/template/send"
SUBSCRIBE_SEND = "/cgi-bin/message/subscribe/bizsend"
MENU_CREATE = "/cgi-bin/menu/create"
MEDIA_GET = "/cgi-bin/media/get"

# errmsg texts as api.weixin.qq.com returns them (the real ones end in " rid: …").
ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid appid",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    42001: "access_token expired",
    44002: "empty post data",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    47001: "data format error",
}

# A tiny but well-formed JPEG (SOI, APP0/JFIF, EOI) served for unknown-but-registered media.
JPEG_BYTES = (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
              + bytes(range(64)) + b"\xff\xd9")

CUSTOM_MSGTYPES = {"text", "image", "voice", "video", "music", "news", "mpnews", "msgmenu", "wxcard",
                   "miniprogrampage"}
BUTTON_TYPES = {"click", "view", "miniprogram", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
                "pic_photo_or_album", "pic_weixin", "location_select", "media_id", "article_id",
                "article_view_limited"}


@dataclass
class Call:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON body, None for GET
    errcode: int = 0  # what the fake answered (0 = success, -999 = connection dropped)
    delayed: float = 0.0  # seconds a `slow` rule held the answer back
    at: float = field(default_factory=time.monotonic)

    @property
    def touser(self) -> str | None:
        return self.body.get("touser") if isinstance(self.body, dict) else None


@dataclass
class _Rule:
    path: str
    times: int | None  # None = until cleared
    errcode: int = 0
    errmsg: str | None = None
    delay: float = 0.0
    drop: bool = False
    openid: str | None = None  # only requests to this touser

    def matches(self, path: str, body: Any) -> bool:
        if path != self.path or self.times == 0:
            return False
        if self.openid is not None:
            return isinstance(body, dict) and body.get("touser") == self.openid
        return True

    def use(self) -> None:
        if self.times is not None:
            self.times -= 1


@dataclass
class Media:
    content: bytes
    content_type: str = "image/jpeg"
    filename: str = ""


class FakeWeChat:
    def __init__(self, appid: str = APPID, secret: str = SECRET) -> None:
        self.appid = appid
        self.secret = secret
        self.tokens: dict[str, float] = {}  # token → monotonic expiry
        self.current_token: str | None = None
        self.token_fetches = 0  # stable_token calls that returned a token
        self.calls: list[Call] = []
        self.media: dict[str, Media] = {}
        self._rules: list[_Rule] = []
        self._msgids = itertools.count(2_000_000_000)

    # ------------------------------------------------------------ scripting

    def fail(self, path: str, errcode: int, times: int | None = 1, *, errmsg: str | None = None,
             openid: str | None = None) -> None:
        """The next `times` calls to path (None = every call) answer with this errcode."""
        self._rules.append(_Rule(path, times, errcode=errcode, errmsg=errmsg, openid=openid))

    def slow(self, path: str, seconds: float, times: int | None = 1) -> None:
        """The next `times` calls to path wait `seconds` before answering normally."""
        self._rules.append(_Rule(path, times, delay=seconds))

    def drop(self, path: str, times: int | None = 1) -> None:
        """The next `times` calls to path have their connection closed without a response."""
        self._rules.append(_Rule(path, times, drop=True))

    def clear_failures(self) -> None:
        self._rules.clear()

    def expire_tokens(self) -> None:
        """Every token issued so far is now expired (calls with it get 42001)."""
        past = time.monotonic() - 1
        for token in self.tokens:
            self.tokens[token] = past

    def revoke_tokens(self) -> None:
        """Forget every token, as when another party force-refreshed (calls get 40001)."""
        self.tokens.clear()
        self.current_token = None

    def add_media(self, media_id: str, content: bytes = JPEG_BYTES, content_type: str = "image/jpeg",
                  filename: str | None = None) -> None:
        ext = content_type.rsplit("/", 1)[-1].replace("jpeg", "jpg")
        self.media[media_id] = Media(content, content_type, filename or f"{media_id}.{ext}")

    # ------------------------------------------------------------ assertions

    def calls_to(self, path: str, *, ok_only: bool = False) -> list[Call]:
        return [c for c in self.calls if c.path == path and (not ok_only or c.errcode == 0)]

    def delivered(self, path: str) -> list[Call]:
        """Calls to path that the fake accepted."""
        return self.calls_to(path, ok_only=True)

    def settings_for(self, server: Any, **extra: Any) -> dict[str, Any]:
        """The [wechat] settings pointing minyi at this fake served by `server`."""
        return {"api_base": str(server.make_url("")), "appid": self.appid, "secret": self.secret, **extra}

    # ------------------------------------------------------------ the app

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(STABLE_TOKEN, self._stable_token)
        app.router.add_post(CUSTOM_SEND, self._with_token(self._custom_send))
        app.router.add_post(TEMPLATE_SEND, self._with_token(self._template_send))
        app.router.add_post(SUBSCRIBE_SEND, self._with_token(self._template_send))  # same checks
        app.router.add_post(MENU_CREATE, self._with_token(self._menu_create))
        app.router.add_get(MEDIA_GET, self._with_token(self._media_get))
        return app

    @staticmethod
    def _error(errcode: int, errmsg: str | None = None) -> web.Response:
        rid = secrets.token_hex(4) + "-" + secrets.token_hex(4)
        text = json.dumps({"errcode": errcode, "errmsg": f"{errmsg or ERRMSG.get(errcode, 'error')} rid: {rid}"})
        # WeChat answers errors with HTTP 200 and a JSON body.
        return web.Response(text=text, content_type="application/json", charset="utf-8")

    @staticmethod
    def _ok(**fields: Any) -> web.Response:
        return web.json_response({"errcode": 0, "errmsg": "ok", **fields})

    async def _read_json(self, request: web.Request) -> tuple[Any, int]:
        raw = await request.read()
        if not raw:
            return None, 44002
        try:
            return json.loads(raw), 0
        except ValueError:
            return None, 47001

    async def _scripted(self, request: web.Request, call: Call) -> web.StreamResponse | None:
        """Apply the first matching scripted behaviour; a response ends the request."""
        for rule in self._rules:
            if not rule.matches(call.path, call.body):
                continue
            rule.use()
            if rule.delay:
                call.delayed += rule.delay
                await asyncio.sleep(rule.delay)
                continue
            if rule.drop:
                call.errcode = -999
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError  # nothing is written to the aborted connection
            call.errcode = rule.errcode
            return self._error(rule.errcode, rule.errmsg)
        return None

    async def _stable_token(self, request: web.Request) -> web.StreamResponse:
        body, bad = await self._read_json(request)
        call = Call(request.method, request.path, dict(request.query), body)
        self.calls.append(call)
        if bad or not isinstance(body, dict):
            call.errcode = bad or 47001
            return self._error(call.errcode)
        scripted = await self._scripted(request, call)
        if scripted is not None:
            return scripted
        if body.get("grant_type") != "client_credential":
            call.errcode = 40002
        elif body.get("appid") != self.appid:
            call.errcode = 40013
        elif body.get("secret") != self.secret:
            call.errcode = 40125
        if call.errcode:
            return self._error(call.errcode)
        now = time.monotonic()
        force = body.get("force_refresh") in (True, "true", 1)
        current = self.current_token
        if force or current is None or self.tokens.get(current, 0) <= now:
            if force and current is not None:
                self.tokens.pop(current, None)  # force_refresh invalidates the previous token
            current = self.current_token = "ACCESS_TOKEN_" + secrets.token_hex(16)
            self.tokens[current] = now + TOKEN_TTL
        self.token_fetches += 1
        return web.json_response({"access_token": current, "expires_in": int(self.tokens[current] - now)})

    def _with_token(self, handler: Any) -> Any:
        async def checked(request: web.Request) -> web.StreamResponse:
            body = None
            bad = 0
            if request.method == "POST":
                body, bad = await self._read_json(request)
            call = Call(request.method, request.path, dict(request.query), body)
            self.calls.append(call)
            token = request.query.get("access_token")
            if not token:
                call.errcode = 41001
            elif token not in self.tokens:
                call.errcode = 40001
            elif self.tokens[token] <= time.monotonic():
                call.errcode = 42001
            if call.errcode:
                return self._error(call.errcode)
            scripted = await self._scripted(request, call)
            if scripted is not None:
                return scripted
            if bad:
                call.errcode = bad
                return self._error(bad)
            if request.method == "POST" and not isinstance(body, dict):
                call.errcode = 47001
                return self._error(47001)
            response = handler(request, body or {})
            if isinstance(response, int):
                call.errcode = response
                return self._error(response)
            return response

        return checked

    @staticmethod
    def _valid_openid(value: Any) -> bool:
        return isinstance(value, str) and 0 < len(value) <= 64

    def _custom_send(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse | int:
        if not self._valid_openid(body.get("touser")):
            return 40003
        msgtype = body.get("msgtype")
        if msgtype not in CUSTOM_MSGTYPES or not isinstance(body.get(msgtype), dict):
            return 40008
        if msgtype == "text" and not str(body["text"].get("content") or ""):
            return 44002
        return self._ok()

    def _template_send(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse | int:
        """Template and subscription messages: touser, template_id and data are required."""
        if not self._valid_openid(body.get("touser")):
            return 40003
        if not body.get("template_id"):
            return 40037
        if not isinstance(body.get("data"), dict):
            return 47001
        return self._ok(msgid=next(self._msgids))

    def _menu_create(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse | int:
        """Validates the menu as the platform does: 1–3 buttons of ≤16 bytes, ≤5 sub-buttons of ≤60."""
        buttons = body.get("button")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return 40016
        for button in buttons:
            if not isinstance(button, dict):
                return 47001
            if not 0 < len(str(button.get("name", "")).encode()) <= 16:
                return 40018
            subs = button.get("sub_button")
            if subs:
                if len(subs) > 5:
                    return 40023
                for sub in subs:
                    error = self._check_button(sub, sub_level=True)
                    if error:
                        return error
            else:
                error = self._check_button(button, sub_level=False)
                if error:
                    return error
        return self._ok()

    @staticmethod
    def _check_button(button: dict[str, Any], sub_level: bool) -> int:
        kind = button.get("type")
        if kind not in BUTTON_TYPES:
            return 40024 if sub_level else 40017
        if sub_level and not 0 < len(str(button.get("name", "")).encode()) <= 60:
            return 40025
        if kind == "view" and not 0 < len(str(button.get("url", ""))) <= 1024:
            return 40027 if sub_level else 40020
        if kind not in ("view", "miniprogram", "media_id", "article_id", "article_view_limited") \
                and not 0 < len(str(button.get("key", "")).encode()) <= 128:
            return 40026 if sub_level else 40019
        return 0

    def _media_get(self, request: web.Request, body: Any) -> web.StreamResponse | int:
        media = self.media.get(request.query.get("media_id", ""))
        if media is None:
            return 40007
        return web.Response(body=media.content, content_type=media.content_type, headers={
            "Content-disposition": f'attachment; filename="{media.filename}"',
            "Cache-Control": "no-cache, must-revalidate",
        })


# ---------------------------------------------------------------- pytest glue
# Test modules import these names (`from tests.fake_wechat import fake, fake_server, start_app`).


@pytest.fixture
def fake() -> FakeWeChat:
    return FakeWeChat()


@pytest.fixture
async def fake_server(aiohttp_server: Callable[..., Any], fake: FakeWeChat) -> Any:
    return await aiohttp_server(fake.app())


@pytest.fixture
def start_app(aiohttp_client: Callable[..., Any], tmp_path: Path, database_url: str, fake: FakeWeChat,
              fake_server: Any) -> Callable[..., Awaitable[Any]]:
    """start_app(online=True, **wechat_settings) → a TestClient of minyi.

    Online: pointed at the fake with its secret. Offline: no secret (the default of
    make_settings), but api_base still names the fake, so any stray call would show.
    """

    async def start(online: bool = True, **wechat_settings: Any) -> Any:
        if online:
            section = fake.settings_for(fake_server, **wechat_settings)
        else:
            section = {"api_base": str(fake_server.make_url("")), "secret": "", **wechat_settings}
        settings = make_settings(tmp_path, database_url, wechat=section)
        return await aiohttp_client(create_app(settings))

    return start


async def settle(services: Any) -> None:
    """Wait for background tasks and the outbox sender to finish what they started."""
    for _ in range(5):
        await services.tasks.drain()
        await services.outbox.close()  # waits for a running delivery pass
        if not services.tasks.pending and not await services.outbox.deliver_pending():
            return


async def outbox_rows(services: Any, kind: str | None = None) -> list[Outbox]:
    async with services.db.session() as s:
        statement = select(Outbox).order_by(Outbox.id)
        if kind is not None:
            statement = statement.where(Outbox.kind == kind)
        return list((await s.exec(statement)).all())
