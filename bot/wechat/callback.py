"""The /wechat endpoint: URL verification (GET) and message delivery (POST) in
plaintext, compatible and safe (AES) modes.

Order of checks, cheapest first: query parameters → timestamp window (403) →
body size (413) → signature (403) → XML (400) → decrypt (400) → handle once.
Nothing the sender controls can produce a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from bot.inbox import Inbox
from bot.tasks import BackgroundTasks
from bot.wechat.outbox import OutboxSender
from bot.settings import WeChatSettings
from bot.wechat.inbound import BadMessage, Inbound
from bot.wechat.signing import CryptoError, MessageCrypto, signature_matches
from bot.wechat.xmlsafe import XMLRejected, parse_xml, render_text_reply

log = logging.getLogger(__name__)

SUCCESS = "success"


def _error(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=reason)


class WeChatCallback:
    def __init__(self, settings: WeChatSettings, inbox: Inbox, max_body_bytes: int, outbox: OutboxSender,
                 late_replies: BackgroundTasks) -> None:
        self.settings = settings
        self.inbox = inbox
        self.outbox = outbox
        self.late_replies = late_replies
        self.max_body_bytes = max_body_bytes
        self.crypto = MessageCrypto(settings.token, settings.aes_key, settings.appid) if settings.aes_key else None

    def _check_query(self, request: web.Request) -> tuple[str, str, web.Response | None]:
        q = request.query
        timestamp, nonce, sig = q.get("timestamp", ""), q.get("nonce", ""), q.get("signature", "")
        if not (timestamp and nonce and sig):
            return timestamp, nonce, _error(400, "missing signature, timestamp or nonce")
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            return timestamp, nonce, _error(400, "timestamp is not a number")
        if skew > self.settings.timestamp_window_seconds:
            return timestamp, nonce, _error(403, "stale timestamp (replay refused)")
        if not signature_matches(sig, self.settings.token, timestamp, nonce):
            return timestamp, nonce, _error(403, "bad signature")
        return timestamp, nonce, None

    async def verify_url(self, request: web.Request) -> web.Response:
        """GET: the platform checks the server URL and expects echostr back."""
        _, _, error = self._check_query(request)
        if error:
            return error
        echostr = request.query.get("echostr", "")
        if not echostr:
            return _error(400, "missing echostr")
        return web.Response(text=echostr)

    async def _read_body(self, request: web.Request) -> bytes | None:
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return None
        body = bytearray()
        async for chunk in request.content.iter_chunked(16384):
            body += chunk
            if len(body) > self.max_body_bytes:
                return None
        return bytes(body)

    async def receive(self, request: web.Request) -> web.Response:
        timestamp, nonce, error = self._check_query(request)
        if error:
            return error
        body = await self._read_body(request)
        if body is None:
            return _error(413, f"body larger than {self.max_body_bytes} bytes")
        encrypted = request.query.get("encrypt_type", "raw").lower() == "aes"
        try:
            fields = parse_xml(body)
            if encrypted:
                fields = self._decrypt(fields, request.query.get("msg_signature", ""), timestamp, nonce)
                if isinstance(fields, web.Response):
                    return fields
            elif self.settings.require_encryption:
                return _error(403, "plaintext refused: the account runs in safe mode")
            msg = Inbound.from_fields(fields)
        except XMLRejected as exc:
            return _error(400, f"bad XML: {exc}")
        except CryptoError as exc:
            return _error(400, str(exc))
        except BadMessage as exc:
            return _error(400, f"bad message: {exc}")

        handling = asyncio.ensure_future(self.inbox.handle(msg))
        try:
            reply = await asyncio.wait_for(asyncio.shield(handling), self.settings.reply_budget_seconds)
        except asyncio.TimeoutError:
            # Too slow for WeChat's 5 s: acknowledge now, send the reply when it is ready.
            self.late_replies.spawn(self._reply_late(handling, msg), name=f"late-{msg.dedupe_key}")
            return web.Response(text=SUCCESS)
        except Exception:
            # Nothing was committed; WeChat retries and the retry starts clean.
            log.exception("handling %s failed", msg.dedupe_key)
            return _error(503, "temporarily unavailable, retry")
        if not reply:
            return web.Response(text=SUCCESS)
        xml = render_text_reply(msg.openid, msg.account, reply, int(time.time()))
        if encrypted and self.crypto is not None:
            xml = self.crypto.encrypt(xml, nonce)
        return web.Response(text=xml, content_type="application/xml")

    async def _reply_late(self, handling: "asyncio.Future[str | None]", msg: Inbound) -> None:
        try:
            reply = await handling
        except Exception:
            log.exception("late handling of %s failed", msg.dedupe_key)
            return
        if reply:
            async with self.outbox.db.transaction() as db:
                self.outbox.queue_text(db, msg.openid, reply, title="回复")
            self.outbox.kick()

    def _decrypt(self, outer: dict, msg_signature: str, timestamp: str, nonce: str) -> dict | web.Response:
        if self.crypto is None:
            return _error(400, "encrypted message but no EncodingAESKey configured")
        encrypted = outer.get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            return _error(400, "encrypt_type=aes but no <Encrypt> element")
        if not signature_matches(msg_signature, self.settings.token, timestamp, nonce, encrypted):
            return _error(403, "bad msg_signature")
        return parse_xml(self.crypto.decrypt(encrypted))
