"""Callback signatures (compared in constant time) and safe-mode AES envelopes.

The AES part is wechatpy's; the signature check is ours because wechatpy compares
with `!=` and parses the outer XML without our guards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from wechatpy.crypto import PrpCrypto

from bot.wechat.xmlsafe import cdata


class CryptoError(ValueError):
    """An encrypted body that does not decrypt to a message for this account."""


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature_matches(given: str, *parts: str) -> bool:
    return hmac.compare_digest(signature(*parts).encode(), (given or "").encode())


class MessageCrypto:
    """Encrypts and decrypts safe-mode messages for one account."""

    def __init__(self, token: str, encoding_aes_key: str, appid: str) -> None:
        try:
            key = base64.b64decode(encoding_aes_key + "=")
        except binascii.Error as exc:
            raise ValueError("EncodingAESKey is not base64") from exc
        if len(key) != 32:
            raise ValueError("EncodingAESKey must be 43 characters (32 bytes)")
        self._key = key
        self.token = token
        self.appid = appid

    def decrypt(self, encrypted: str) -> str:
        try:
            return PrpCrypto(self._key).decrypt(encrypted, self.appid)
        except Exception as exc:  # wrong appid, bad padding, bad base64, bad length
            raise CryptoError(f"cannot decrypt message: {type(exc).__name__}") from None

    def encrypt(self, xml: str, nonce: str, timestamp: str | None = None) -> str:
        timestamp = timestamp or str(int(time.time()))
        encrypted = PrpCrypto(self._key).encrypt(xml, self.appid).decode()
        msg_signature = signature(self.token, timestamp, nonce, encrypted)
        return (
            "<xml>"
            f"<Encrypt>{cdata(encrypted)}</Encrypt>"
            f"<MsgSignature>{cdata(msg_signature)}</MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp>"
            f"<Nonce>{cdata(nonce)}</Nonce>"
            "</xml>"
        )
