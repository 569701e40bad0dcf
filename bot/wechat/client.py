"""Async client for the WeChat API: stable_token, messages, menu, media.

One token owner per process: concurrent calls that all see 40001/42001 cause a
single refresh, not a storm. stable_token (not the legacy /cgi-bin/token) is used
because it does not invalidate the token other workers already hold.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from bot.settings import WeChatSettings

log = logging.getLogger(__name__)

TOKEN_INVALID = frozenset({40001, 40014, 42001})
SYSTEM_BUSY = -1
WINDOW_CLOSED = 45015  # 回复时间超过限制: the 48 h customer-service window is closed
CUSTOM_QUOTA = 45047  # 客服接口下行条数超过上限
API_DAILY_LIMIT = 45009  # 接口调用超过限制
TOKEN_MARGIN_SECONDS = 300


class WeChatAPIError(Exception):
    def __init__(self, errcode: int, errmsg: str = "") -> None:
        super().__init__(f"WeChat API error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeChatClient:
    def __init__(self, settings: WeChatSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.base = settings.api_base.rstrip("/")
        self.http = http
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self._stale: str | None = None  # a token WeChat called invalid
        self.token_fetches = 0

    async def access_token(self) -> str:
        if self._token and time.monotonic() < self._expires_at:
            return self._token
        async with self._lock:
            if self._token and time.monotonic() < self._expires_at:
                return self._token
            force = self._stale is not None
            data = await self._post_json("/cgi-bin/stable_token", {
                "grant_type": "client_credential",
                "appid": self.settings.appid,
                "secret": self.settings.secret,
                "force_refresh": force,
            })
            self.token_fetches += 1
            self._token = data["access_token"]
            self._expires_at = time.monotonic() + max(60, int(data.get("expires_in", 7200)) - TOKEN_MARGIN_SECONDS)
            self._stale = None
            return self._token

    def _invalidate(self, token: str) -> None:
        """Drop the token only if it is still the current one (others may have refreshed)."""
        if self._token == token:
            self._token = None
            self._stale = token

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.base + path, json=body, timeout=self._timeout()) as resp:
            data = await resp.json(content_type=None)
        errcode = int(data.get("errcode", 0) or 0)
        if errcode:
            raise WeChatAPIError(errcode, str(data.get("errmsg", "")))
        return data

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.settings.http_timeout_seconds)

    async def call(self, method: str, path: str, *, json: dict[str, Any] | None = None,
                   params: dict[str, str] | None = None, binary: bool = False) -> Any:
        """Call an API with the access token; bounded retries on busy, network and token errors."""
        last_error: Exception | None = None
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
            try:
                token = await self.access_token()
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                last_error = exc  # token endpoint unreachable: same bounded retries as the call
                log.warning("WeChat stable_token failed: %s", exc)
                continue
            except WeChatAPIError as exc:
                if exc.errcode != SYSTEM_BUSY:
                    raise  # bad appid/secret, IP not whitelisted: retrying cannot help
                last_error = exc
                continue
            query = {"access_token": token, **(params or {})}
            try:
                async with self.http.request(method, self.base + path, params=query, json=json,
                                             timeout=self._timeout()) as resp:
                    if binary and not resp.content_type.endswith(("json", "text/plain")):
                        return await resp.read()
                    data = await resp.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                last_error = exc
                log.warning("WeChat %s %s failed: %s", method, path, exc)
                continue
            errcode = int(data.get("errcode", 0) or 0)
            if errcode == 0:
                return data
            error = WeChatAPIError(errcode, str(data.get("errmsg", "")))
            if errcode in TOKEN_INVALID:
                self._invalidate(token)
                last_error = error
                continue
            if errcode == SYSTEM_BUSY:
                last_error = error
                continue
            raise error
        if isinstance(last_error, WeChatAPIError):
            raise last_error
        raise WeChatAPIError(-2, f"retries exhausted: {last_error}")

    async def send_custom_text(self, openid: str, content: str) -> dict[str, Any]:
        return await self.call("POST", "/cgi-bin/message/custom/send", json={
            "touser": openid, "msgtype": "text", "text": {"content": content},
        })

    async def send_template(self, openid: str, template_id: str, data: dict[str, Any],
                            url: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data}
        if url:
            body["url"] = url
        return await self.call("POST", "/cgi-bin/message/template/send", json=body)

    async def send_subscribe(self, openid: str, template_id: str, data: dict[str, Any],
                             page: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data}
        if page:
            body["page"] = page
        return await self.call("POST", "/cgi-bin/message/subscribe/bizsend", json=body)

    async def create_menu(self, menu: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", "/cgi-bin/menu/create", json=menu)

    async def download_media(self, media_id: str) -> bytes:
        result = await self.call("GET", "/cgi-bin/media/get", params={"media_id": media_id}, binary=True)
        if isinstance(result, dict) and result.get("video_url"):
            # Videos are not returned inline: media/get answers with a download URL.
            async with self.http.get(result["video_url"], timeout=self._timeout()) as resp:
                if resp.status != 200:
                    raise WeChatAPIError(-3, f"video download failed with HTTP {resp.status}")
                return await resp.read()
        if not isinstance(result, bytes):
            raise WeChatAPIError(-3, "media/get returned JSON instead of a file")
        return result
