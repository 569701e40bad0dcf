"""The built-in WeChat simulator (/sim): a page where a person chats as a resident.

The page talks to /sim/api/*, which builds the XML WeChat would send, signs it (and
encrypts it when an EncodingAESKey is set), POSTs it to this server's own /wechat
over HTTP, and returns the decoded reply. The outbox shows what minyi sent later.
Served only in offline/demo mode unless [simulator] enabled = true.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from aiohttp import web

from bot.jsonhttp import json_response
from sqlmodel import col, select

from bot.clock import format_local
from bot.services import SERVICES
from bot.wechat.signing import MessageCrypto, signature
from bot.wechat.xmlsafe import cdata, parse_xml
from storage.models import Outbox

STATIC = Path(__file__).resolve().parent / "static"
ACCOUNT = "gh_minyi_sim"
MAX_UPLOAD = 5 * 1024 * 1024


def build_message(openid: str, kind: str, form: dict, msg_id: int) -> str:
    """The XML WeChat would deliver for one simulator action."""
    now = int(time.time())
    head = (f"<ToUserName>{cdata(ACCOUNT)}</ToUserName><FromUserName>{cdata(openid)}</FromUserName>"
            f"<CreateTime>{now}</CreateTime>")
    if kind == "text":
        body = f"<MsgType>{cdata('text')}</MsgType><Content>{cdata(str(form.get('content', '')))}</Content>"
    elif kind == "voice":
        body = (f"<MsgType>{cdata('voice')}</MsgType><MediaId>{cdata('sim-voice-' + str(msg_id))}</MediaId>"
                f"<Format>{cdata('amr')}</Format><Recognition>{cdata(str(form.get('content', '')))}</Recognition>")
    elif kind == "image":
        body = (f"<MsgType>{cdata('image')}</MsgType><PicUrl>{cdata(str(form.get('url', '')))}</PicUrl>"
                f"<MediaId>{cdata(str(form.get('media_id', '')))}</MediaId>")
    elif kind == "location":
        body = (f"<MsgType>{cdata('location')}</MsgType><Location_X>{float(form['lat'])}</Location_X>"
                f"<Location_Y>{float(form['lng'])}</Location_Y><Scale>15</Scale>"
                f"<Label>{cdata(str(form.get('label', '')))}</Label>")
    elif kind in ("subscribe", "unsubscribe"):
        body = f"<MsgType>{cdata('event')}</MsgType><Event>{cdata(kind)}</Event>"
        if form.get("scene"):
            body += f"<EventKey>{cdata('qrscene_' + str(form['scene']))}</EventKey>"
        return f"<xml>{head}{body}</xml>"
    elif kind == "click":
        body = (f"<MsgType>{cdata('event')}</MsgType><Event>{cdata('CLICK')}</Event>"
                f"<EventKey>{cdata(str(form.get('key', '')))}</EventKey>")
        return f"<xml>{head}{body}</xml>"
    else:
        raise web.HTTPBadRequest(text=f"unknown simulator action {kind}")
    return f"<xml>{head}{body}<MsgId>{msg_id}</MsgId></xml>"


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "sim.html")


async def send(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    wechat = services.settings.wechat
    form = await request.json()
    openid = str(form.get("openid") or "o-sim-resident")[:64]
    xml = build_message(openid, str(form.get("type", "text")), form, int(time.time() * 1000) * 100 + secrets.randbelow(100))
    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    params = {"timestamp": timestamp, "nonce": nonce, "signature": signature(wechat.token, timestamp, nonce),
              "openid": openid}
    crypto = MessageCrypto(wechat.token, wechat.aes_key, wechat.appid) if wechat.aes_key else None
    payload = xml
    if crypto is not None:
        envelope = parse_xml(crypto.encrypt(xml, nonce, timestamp))
        payload = f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName><Encrypt>{cdata(envelope['Encrypt'])}</Encrypt></xml>"
        params.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
    url = str(request.url.origin()) + "/wechat"
    async with services.http.post(url, params=params, data=payload.encode()) as resp:
        status, raw = resp.status, await resp.text()
    reply = ""
    if status == 200 and raw != "success":
        fields = parse_xml(raw)
        if crypto is not None:
            fields = parse_xml(crypto.decrypt(fields["Encrypt"]))
        reply = str(fields.get("Content", ""))
    return json_response({"status": status, "reply": reply, "raw": raw if status != 200 else "",
                              "sent": xml, "encrypted": crypto is not None})


async def outbox(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    openid = request.query.get("openid", "")
    after = int(request.query.get("after", "0") or 0)
    statement = select(Outbox).where(col(Outbox.id) > after).order_by(col(Outbox.id).desc()).limit(50)
    if openid and request.query.get("mine") == "1":
        statement = statement.where(Outbox.openid == openid)
    async with services.db.session() as s:
        rows = (await s.exec(statement)).all()
    return json_response([
        {"id": r.id, "kind": r.kind, "openid": r.openid, "status": r.status, "channel": r.channel,
         "content": (r.payload or {}).get("content") or r.payload, "created": format_local(r.created_at)}
        for r in reversed(rows)])


async def upload(request: web.Request) -> web.Response:
    """A photo chosen in the page: stored under data/media/sim, given a fake MediaId."""
    services = request.app[SERVICES]
    reader = await request.multipart()
    part = await reader.next()
    if part is None or getattr(part, "name", "") != "file":
        raise web.HTTPBadRequest(text="expected a file field")
    data = await part.read(decode=False)  # type: ignore[union-attr]
    if len(data) > MAX_UPLOAD:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=len(data))
    media_id = "sim-" + secrets.token_hex(8)
    folder = services.settings.data_dir / "media" / "sim"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{media_id}.jpg").write_bytes(data)
    url = str(request.url.origin()) + f"/sim/media/{media_id}.jpg"
    return json_response({"media_id": media_id, "url": url})


async def media(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    name = request.match_info["name"]
    if "/" in name or ".." in name:
        raise web.HTTPNotFound()
    path = services.settings.data_dir / "media" / "sim" / name
    if not path.exists():
        raise web.HTTPNotFound()
    return web.FileResponse(path)


async def areas(request: web.Request) -> web.Response:
    """Grid centres, so the page offers locations that land in real demo grids."""
    services = request.app[SERVICES]
    grids = [{"code": n.code, "name": services.areas.full_name(n.code), "lat": n.center[0], "lng": n.center[1],
              "places": list(n.places)}
             for n in services.areas.nodes.values() if n.level == "grid" and n.center]
    return json_response(sorted(grids, key=lambda g: g["code"]))


def setup_simulator(app: web.Application) -> None:
    app.router.add_get("/sim", page)
    app.router.add_post("/sim/api/send", send)
    app.router.add_get("/sim/api/outbox", outbox)
    app.router.add_post("/sim/api/upload", upload)
    app.router.add_get("/sim/api/areas", areas)
    app.router.add_get("/sim/media/{name}", media)
