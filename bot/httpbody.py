"""Reading request bodies within a size limit (413 beyond it)."""

from __future__ import annotations

from aiohttp import web


async def read_limited(request: web.Request, max_bytes: int) -> bytes | None:
    """The body, or None when it is larger than `max_bytes` (checked before and while reading)."""
    if request.content_length is not None and request.content_length > max_bytes:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(16384):
        body += chunk
        if len(body) > max_bytes:
            return None
    return bytes(body)
