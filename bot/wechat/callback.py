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
from typing import Mapping

from aiohttp import web

from bot.httpbody import read_limited
from bot.inbox import Delivery, Inbox
from bot.tasks import BackgroundTasks
from bot.settings import WeChatSettings
from bot.wechat.inbound import BadMessage, Inbound
from bot.wechat.signing import CryptoError, MessageCrypto, signature_matches
from bot.wechat.xmlsafe import XMLRejected, parse_xml, render_text_reply

log = logging.getLogger(__name__)

SUCCESS = "success"
# How long a callback whose budget ran out still waits for a delivery that is being
# recorded or is committing its reply, before answering 503.
SEALED_WAIT_SECONDS = 10.0
# WeChat stops waiting after 5 s: an answer written later reaches nobody.
ANSWER_DEADLINE_SECONDS = 4.8


# A Unix time has at most 10 digits until the year 2286; longer values are refused
# before any arithmetic (a 400-digit number would otherwise cost a bignum conversion).
MAX_TIMESTAMP_DIGITS = 12


def _error(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=reason)


class WeChatCallback:
    def __init__(self, settings: WeChatSettings, inbox: Inbox, max_body_bytes: int, tasks: BackgroundTasks) -> None:
        self.settings = settings
        self.inbox = inbox
        self.tasks = tasks  # handling outlives a late answer; shutdown drains it
        self.max_body_bytes = max_body_bytes
        self.crypto = MessageCrypto(settings.token, settings.aes_key, settings.appid) if settings.aes_key else None

    def _check_query(self, q: Mapping[str, str]) -> tuple[str, str, web.Response | None]:
        timestamp, nonce, sig = q.get("timestamp", ""), q.get("nonce", ""), q.get("signature", "")
        if not (timestamp and nonce and sig):
            return timestamp, nonce, _error(400, "missing signature, timestamp or nonce")
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > MAX_TIMESTAMP_DIGITS:
            return timestamp, nonce, _error(400, "timestamp is not a Unix time")
        skew = abs(time.time() - int(timestamp))
        if skew > self.settings.timestamp_window_seconds:
            return timestamp, nonce, _error(403, "stale timestamp (replay refused)")
        if not signature_matches(sig, self.settings.token, timestamp, nonce):
            return timestamp, nonce, _error(403, "bad signature")
        return timestamp, nonce, None

    def verify_url(self, query: Mapping[str, str]) -> web.Response:
        """GET: the platform checks the server URL and expects echostr back."""
        _, _, error = self._check_query(query)
        if error:
            return error
        echostr = query.get("echostr", "")
        if not echostr:
            return _error(400, "missing echostr")
        return web.Response(text=echostr)

    async def receive(self, request: web.Request) -> web.Response:
        """POST /wechat: checks the query before reading the body."""
        _, _, error = self._check_query(request.query)
        if error:
            return error
        body = await read_limited(request, self.max_body_bytes)
        if body is None:
            return _error(413, f"body larger than {self.max_body_bytes} bytes")
        return await self.deliver(request.query, body)

    async def deliver(self, query: Mapping[str, str], body: bytes) -> web.Response:
        """One delivery, independent of the transport: the simulator calls this directly."""
        timestamp, nonce, error = self._check_query(query)
        if error:
            return error
        if len(body) > self.max_body_bytes:
            return _error(413, f"body larger than {self.max_body_bytes} bytes")
        encrypted = query.get("encrypt_type", "raw").lower() == "aes"
        try:
            fields = parse_xml(body)
            if encrypted:
                fields = self._decrypt(fields, query.get("msg_signature", ""), timestamp, nonce)
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

        delivery = Delivery()
        loop = asyncio.get_running_loop()
        started = loop.time()
        handling = self.tasks.spawn(self.inbox.handle(msg, delivery), name=f"handle-{msg.msg_type}")
        try:
            try:
                outcome = await asyncio.wait_for(asyncio.shield(handling), self.settings.reply_budget_seconds)
            except asyncio.TimeoutError:
                if delivery.go_late():
                    # Recorded, too slow for WeChat's 5 s: the reply follows as a customer-service message.
                    return web.Response(text=SUCCESS)
                # Not recorded yet: 'success' as soon as it is, while WeChat still waits.
                recorded = asyncio.ensure_future(delivery.wait_recorded())
                try:
                    await asyncio.wait({handling, recorded}, return_when=asyncio.FIRST_COMPLETED,
                                       timeout=max(0.0, ANSWER_DEADLINE_SECONDS - (loop.time() - started)))
                finally:
                    recorded.cancel()
                if not handling.done() and delivery.go_late():
                    return web.Response(text=SUCCESS)
                if not handling.done() and not delivery.sealed:
                    delivery.abandon()  # whenever it gets done, its reply goes by customer-service message
                    return _error(503, "temporarily unavailable, retry")
                # Done, or committing its reply right now (then it goes in this response).
                outcome = await asyncio.wait_for(asyncio.shield(handling), SEALED_WAIT_SECONDS)
        except asyncio.CancelledError:
            delivery.abandon()
            raise
        except Exception:
            # Not acknowledged: WeChat retries, and the retry finishes the recorded delivery.
            delivery.abandon()
            log.exception("handling a %s delivery failed", msg.msg_type)
            return _error(503, "temporarily unavailable, retry")
        reply = outcome.response_text
        if not reply:
            return web.Response(text=SUCCESS)
        xml = render_text_reply(msg.openid, msg.account, reply, int(time.time()))
        if encrypted and self.crypto is not None:
            xml = self.crypto.encrypt(xml, nonce)
        return web.Response(text=xml, content_type="application/xml")

    def _decrypt(self, outer: dict, msg_signature: str, timestamp: str, nonce: str) -> dict | web.Response:
        if self.crypto is None:
            return _error(400, "encrypted message but no EncodingAESKey configured")
        encrypted = outer.get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            return _error(400, "encrypt_type=aes but no <Encrypt> element")
        if not signature_matches(msg_signature, self.settings.token, timestamp, nonce, encrypted):
            return _error(403, "bad msg_signature")
        return parse_xml(self.crypto.decrypt(encrypted))
