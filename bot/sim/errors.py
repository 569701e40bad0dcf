"""The simulator's one error: a 4xx status and a Chinese message, answered as JSON."""

from __future__ import annotations

from aiohttp import web

from bot.jsonhttp import json_response


class SimError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        return json_response({"error": self.message}, status=self.status)


def size_text(n: int) -> str:
    """A limit for people: 5 MB, 64 KB or 300 字节."""
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} 字节"
