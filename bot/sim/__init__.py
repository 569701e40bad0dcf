"""The built-in WeChat simulator (/sim): a page where a person chats as a resident.

The page talks to /sim/api/*. A message is checked (bot/sim/messages.py), turned into the
XML WeChat would send, signed (and encrypted when an EncodingAESKey is set) and handed to
this app's own callback in process (`WeChatCallback.deliver`); nothing is posted to a URL,
least of all one built from the request's Host header.

Sessions (bot/sim/sessions.py): each browser gets its own session, named by a random
HttpOnly, SameSite=Strict cookie issued by the page or any API call. A session owns the
resident openids the server created for it (GET /sim/api/session lists them, POST
/sim/api/residents adds one) and the photos it uploaded; it may act only as its own
residents (403 otherwise) and sees only outbox rows addressed to them. Rows addressed to
anyone else, staff notices included, are not shown: the outbox panel shows only what the
session's residents were sent. Sessions live in this process's memory, so with several
workers a browser may land on a worker that does not know it and get a fresh session.

Served only when settings.simulator_enabled; with enabled = auto (offline and bound to a
loopback address) each request must also arrive on a loopback socket with a loopback Host
header (no `--host 0.0.0.0` exposure, no DNS rebinding). Every bad input is a 4xx JSON
error {"error": "…"}.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from sqlmodel import col, select

from bot.clock import format_local
from bot.httpbody import read_limited
from bot.jsonhttp import json_response
from bot.routes import CALLBACK
from bot.services import SERVICES
from bot.settings import is_loopback_host
from bot.sim.errors import SimError, size_text
from bot.sim.messages import ACCOUNT, MAX_BODY, Action, parse_action, parse_body, to_xml
from bot.sim.sessions import SimSession, SimSessions
from bot.wechat.signing import MessageCrypto, signature
from bot.wechat.xmlsafe import cdata, parse_xml
from storage.models import Outbox

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "minyi_sim"
SIM_SESSIONS = web.AppKey("sim_sessions", SimSessions)
MAX_FILENAME = 255
MAX_OUTBOX_ID = 2**31 - 1  # outbox.id is a 32-bit integer column on PostgreSQL
PHOTO_NAME = re.compile(r"sim-[0-9a-f]{16}\.(jpg|png|gif|webp)")
PHOTO_TYPES = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                "style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; "
                                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    "X-Frame-Options": "DENY",
}

SimHandler = Callable[[web.Request, SimSession], Awaitable[web.StreamResponse]]


# ---------------------------------------------------------------- request guard and session

def _host_name(host: str) -> str:
    """The name in a Host header: "[::1]:8080" → "::1", "localhost:8080" → "localhost"."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.split(":", 1)[0] if host.count(":") == 1 else host


def is_local_request(request: web.Request) -> bool:
    """Arrived on a loopback (or Unix) socket and names a loopback host."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, (tuple, list)) and sockname:
        local = is_loopback_host(str(sockname[0]))
    else:
        local = isinstance(sockname, str)  # a Unix socket
    return local and is_loopback_host(_host_name(request.headers.get("Host", "")))


def sim_route(handler: SimHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Guard (auto mode), session cookie, SimError → JSON, common headers."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if request.app[SERVICES].settings.simulator_auto and not is_local_request(request):
            raise web.HTTPNotFound()
        session, fresh = request.app[SIM_SESSIONS].resolve(request.cookies.get(COOKIE))
        try:
            response = await handler(request, session)
        except SimError as exc:
            response = exc.response()
        if fresh:
            response.set_cookie(COOKIE, session.id, path="/sim", httponly=True, samesite="Strict",
                                secure=request.secure or None)
        response.headers.update(HEADERS)
        return response

    return wrapped


def _owned_openid(sessions: SimSessions, session: SimSession, openid: str | None) -> str:
    residents = sessions.residents(session)
    if openid is None:
        return residents[0]
    if openid not in residents:
        raise SimError(403, "这个身份不属于当前模拟会话：请使用本页分配的居民身份")
    return openid


# ---------------------------------------------------------------- page and sessions

async def page(request: web.Request, session: SimSession) -> web.StreamResponse:
    return web.FileResponse(STATIC / "sim.html", headers=PAGE_HEADERS)


async def session_info(request: web.Request, session: SimSession) -> web.Response:
    """The session's residents (a new session gets its first one)."""
    return json_response({"openids": request.app[SIM_SESSIONS].residents(session)})


async def new_resident(request: web.Request, session: SimSession) -> web.Response:
    sessions = request.app[SIM_SESSIONS]
    sessions.residents(session)
    openid = sessions.new_resident(session)
    return json_response({"openid": openid, "openids": list(session.openids)})


# ---------------------------------------------------------------- sending

def _pic_url(request: web.Request, session: SimSession, action: Action) -> str:
    """An image's PicUrl: a photo this session uploaded, on the configured public URL."""
    if action.kind != "image":
        return ""
    photo = session.photos.get(action.fields["media_id"])
    if photo is None:
        raise SimError(403, "这张照片不是当前模拟会话上传的：请先上传照片")
    base = request.app[SERVICES].settings.server.base_url
    return f"{base}/sim/media/{photo.name}"


def _signed(xml: str, crypto: MessageCrypto | None, token: str, openid: str) -> tuple[dict[str, str], bytes]:
    """The query and body WeChat would deliver: signed, and encrypted with a crypto."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    query = {"timestamp": timestamp, "nonce": nonce, "signature": signature(token, timestamp, nonce),
             "openid": openid}
    if crypto is None:
        return query, xml.encode()
    envelope = parse_xml(crypto.encrypt(xml, nonce, timestamp))
    query.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
    body = f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName><Encrypt>{cdata(envelope['Encrypt'])}</Encrypt></xml>"
    return query, body.encode()


def _reply_text(response: web.Response, crypto: MessageCrypto | None) -> str:
    raw = response.text or ""
    if response.status != 200 or raw == "success":
        return ""
    fields = parse_xml(raw)
    if crypto is not None:
        fields = parse_xml(crypto.decrypt(fields["Encrypt"]))
    return str(fields.get("Content", ""))


async def send(request: web.Request, session: SimSession) -> web.Response:
    raw = await read_limited(request, MAX_BODY)
    if raw is None:
        raise SimError(413, f"请求体太大：最多 {size_text(MAX_BODY)}")
    action = parse_action(parse_body(raw))
    openid = _owned_openid(request.app[SIM_SESSIONS], session, action.openid)
    msg_id = int(time.time() * 1000) * 100 + secrets.randbelow(100)
    xml = to_xml(action, openid, msg_id, int(time.time()), _pic_url(request, session, action))
    wechat = request.app[SERVICES].settings.wechat
    crypto = MessageCrypto(wechat.token, wechat.aes_key, wechat.appid) if wechat.aes_key else None
    query, body = _signed(xml, crypto, wechat.token, openid)
    response = await request.app[CALLBACK].deliver(query, body)
    raw_reply = response.text or ""
    return json_response({"status": response.status, "reply": _reply_text(response, crypto),
                          "raw": raw_reply if response.status != 200 else "", "sent": xml,
                          "encrypted": crypto is not None, "openid": openid})


# ---------------------------------------------------------------- outbox

def parse_after(value: str) -> int:
    if value == "":
        return 0
    # At most 10 digits before int(): no bignum from a 3,000-digit value.
    if not (value.isascii() and value.isdigit() and len(value) <= 10 and int(value) <= MAX_OUTBOX_ID):
        raise SimError(400, f"参数 after 应为 0 到 {MAX_OUTBOX_ID} 之间的整数")
    return int(value)


async def outbox(request: web.Request, session: SimSession) -> web.Response:
    """Outbox rows after `after` addressed to this session's residents, oldest first."""
    after = parse_after(request.query.get("after", ""))
    if not session.openids:
        return json_response([])
    statement = (select(Outbox).where(col(Outbox.id) > after, col(Outbox.openid).in_(session.openids))
                 .order_by(col(Outbox.id).desc()).limit(50))
    async with request.app[SERVICES].db.session() as s:
        rows = (await s.exec(statement)).all()
    return json_response([
        {"id": r.id, "kind": r.kind, "openid": r.openid, "status": r.status, "channel": r.channel,
         "content": (r.payload or {}).get("content") or r.payload, "created": format_local(r.created_at)}
        for r in reversed(rows)])


# ---------------------------------------------------------------- photos

def image_extension(data: bytes) -> str | None:
    """jpg, png, gif or webp by the file's first bytes; None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


async def _photo_part(request: web.Request) -> BodyPartReader:
    """The multipart field `file`, its headers checked."""
    if request.content_type != "multipart/form-data":
        raise SimError(400, "应以 multipart/form-data 上传照片")
    try:
        part = await (await request.multipart()).next()
        filename = part.filename if isinstance(part, BodyPartReader) else None
    except (KeyError, ValueError, AssertionError, HttpProcessingError):
        raise SimError(400, "上传的内容不是合法的 multipart/form-data") from None
    if not isinstance(part, BodyPartReader) or part.name != "file":
        raise SimError(400, "应以字段 file 上传照片")
    if filename is not None and len(filename) > MAX_FILENAME:
        raise SimError(400, f"文件名太长：最多 {MAX_FILENAME} 个字符")
    return part


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    try:
        while chunk := await part.read_chunk(65536):
            data += chunk
            if len(data) > limit:
                raise SimError(413, f"照片太大：最多 {size_text(limit)}")
    except (ValueError, HttpProcessingError):
        raise SimError(400, "上传的内容不是合法的 multipart/form-data") from None
    return bytes(data)


async def upload(request: web.Request, session: SimSession) -> web.Response:
    """A photo chosen in the page: stored for this session, given a fake MediaId."""
    sessions = request.app[SIM_SESSIONS]
    limit = sessions.limits.upload_bytes
    sessions.count_upload(session)
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise SimError(413, f"照片太大：最多 {size_text(limit)}")
    data = await _read_part(await _photo_part(request), limit)
    if not data:
        raise SimError(400, "照片是空的")
    extension = image_extension(data)
    if extension is None:
        raise SimError(415, "只能上传 JPEG、PNG、GIF 或 WebP 格式的照片")
    media_id, photo = sessions.store_photo(session, data, extension)
    return json_response({"media_id": media_id, "url": f"/sim/media/{photo.name}"})


async def media(request: web.Request, session: SimSession) -> web.StreamResponse:
    """A photo this session uploaded."""
    name = request.match_info["name"]
    photo = session.photo_named(name) if PHOTO_NAME.fullmatch(name) else None
    path = request.app[SIM_SESSIONS].folder / name
    if photo is None or not path.is_file():
        raise SimError(404, "没有这张照片")
    return web.FileResponse(path, headers={"Content-Type": PHOTO_TYPES[name.rsplit(".", 1)[1]]})


# ---------------------------------------------------------------- areas and routes

async def areas(request: web.Request, session: SimSession) -> web.Response:
    """Grid centres, so the page offers locations that land in real demo grids."""
    services = request.app[SERVICES]
    grids = [{"code": n.code, "name": services.areas.full_name(n.code), "lat": n.center[0], "lng": n.center[1],
              "places": list(n.places)}
             for n in services.areas.nodes.values() if n.level == "grid" and n.center]
    return json_response(sorted(grids, key=lambda g: g["code"]))


def setup_simulator(app: web.Application) -> None:
    """The /sim routes; photos are kept under data/media/sim while their session lives."""
    from bot.app import SETTINGS  # bot.app builds the routes that call this

    sessions = SimSessions(app[SETTINGS].data_dir / "media" / "sim")
    app[SIM_SESSIONS] = sessions

    async def forget_sessions(app: web.Application) -> None:
        sessions.close()

    app.on_cleanup.append(forget_sessions)
    app.router.add_get("/sim", sim_route(page))
    app.router.add_get("/sim/api/session", sim_route(session_info))
    app.router.add_post("/sim/api/residents", sim_route(new_resident))
    app.router.add_post("/sim/api/send", sim_route(send))
    app.router.add_get("/sim/api/outbox", sim_route(outbox))
    app.router.add_post("/sim/api/upload", sim_route(upload))
    app.router.add_get("/sim/api/areas", sim_route(areas))
    app.router.add_get("/sim/media/{name}", sim_route(media))
