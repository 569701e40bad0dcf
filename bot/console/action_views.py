"""Working a ticket from the console: every form posts here and goes through the
casework functions (desk.act, remarks, merge) with the logged-in staff member as actor;
a refusal is their Chinese reason (audited by casework) on a 403 page."""

from __future__ import annotations

import aiohttp_jinja2
from typing import Awaitable, Callable

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from bot.casework import desk, merge, parts, remarks
from bot.casework.actors import Actor
from bot.casework.context import Casework
from bot.casework.desk import DeskError, Refused
from bot.console.auth import actor_of
from bot.console.forms import text_field
from bot.console.keys import CSRF
from bot.services import SERVICES


def _failed(request: web.Request, exc: DeskError, back: str) -> web.Response:
    return aiohttp_jinja2.render_template("error.html", request, {
        "title": "无权操作" if isinstance(exc, Refused) else "未能完成", "message": str(exc), "back": back},
        status=403 if isinstance(exc, Refused) else 400)


def _ticket_url(request: web.Request, number: str, done: str | None = None) -> str:
    url = request.app.router["ticket"].url_for(number=number)
    return str(url.with_query(done=done) if done else url)


def _upload(form: MultiDictProxy) -> bytes | None:
    """The photo of a multipart form, if one was chosen. (The session middleware has read
    the form already, for its CSRF field; aiohttp keeps it.)"""
    upload = form.get("photo")
    if not isinstance(upload, FileField) or not upload.filename:
        return None
    content = upload.file.read(remarks.MAX_PHOTO_BYTES + 1)
    if len(content) > remarks.MAX_PHOTO_BYTES:
        raise DeskError(f"照片不能超过 {remarks.MAX_PHOTO_BYTES // 1024 // 1024} MB")
    return content or None


async def act(request: web.Request) -> web.StreamResponse:
    """One workflow action, with a note to the resident and (e.g. with 办结) a photo."""
    case, actor = request.config_dict[SERVICES].case, actor_of(request)
    number = request.match_info["number"]
    back = _ticket_url(request, number)
    try:
        form = await request.post()
        photo = _upload(form)
        action = str(form.get("action") or "")
        note = text_field(form, "note")
        category = text_field(form, "category", 48) if action == case.workflow.reroute_action else None
        area = text_field(form, "area_code", 32) if action == case.workflow.reroute_action else None
        desk.check_request(case, action, category, area)
        merge.check_plain_action(action)
        if photo is not None:
            await remarks.attach_photo(case, number, actor, photo, text_field(form, "photo_label", 100))
        await desk.act(case, number, action, actor, note, category, area)
    except DeskError as exc:
        return _failed(request, exc, back)
    raise web.HTTPSeeOther(_ticket_url(request, number, action))


Work = Callable[[Casework, str, Actor, MultiDictProxy], Awaitable[object]]


async def _on_ticket(request: web.Request, work: Work, done: str) -> web.StreamResponse:
    """Run one casework function on the ticket of the URL with the posted form; back to
    the ticket page saying what was done, or the refusal page."""
    case, actor = request.config_dict[SERVICES].case, actor_of(request)
    number = request.match_info["number"]
    try:
        await work(case, number, actor, await request.post())
    except DeskError as exc:
        return _failed(request, exc, _ticket_url(request, number))
    raise web.HTTPSeeOther(_ticket_url(request, number, done))


async def _comment(case: Casework, number: str, actor: Actor, form: MultiDictProxy) -> object:
    return await remarks.comment(case, number, actor, text_field(form, "note"))


async def _supervise(case: Casework, number: str, actor: Actor, form: MultiDictProxy) -> object:
    return await remarks.supervise(case, number, actor, text_field(form, "note"))


async def _photo(case: Casework, number: str, actor: Actor, form: MultiDictProxy) -> object:
    content = _upload(form)
    if content is None:
        raise DeskError("请选择照片")
    return await remarks.attach_photo(case, number, actor, content, text_field(form, "photo_label", 100))


async def _merge(case: Casework, number: str, actor: Actor, form: MultiDictProxy) -> object:
    return await merge.merge(case, number, text_field(form, "into", 32) or "", actor, text_field(form, "note"))


async def _part(case: Casework, number: str, actor: Actor, form: MultiDictProxy) -> object:
    return await parts.act_on_part(case, number, text_field(form, "department", 32) or "",
                                   text_field(form, "word", 16) or "", actor, text_field(form, "note"))


async def part_action(request: web.Request) -> web.StreamResponse:
    """A co-department's part of a joint ticket (协办接单 / 协办办结)."""
    word = str((await request.post()).get("word") or "")
    transition = request.config_dict[SERVICES].case.parts.transitions.get(word)
    return await _on_ticket(request, _part, transition.action if transition else "")


async def comment(request: web.Request) -> web.StreamResponse:
    return await _on_ticket(request, _comment, remarks.COMMENT)


async def supervise(request: web.Request) -> web.StreamResponse:
    return await _on_ticket(request, _supervise, remarks.SUPERVISE)


async def photo(request: web.Request) -> web.StreamResponse:
    return await _on_ticket(request, _photo, remarks.ATTACH)


async def merge_into(request: web.Request) -> web.StreamResponse:
    return await _on_ticket(request, _merge, merge.MERGE_ACTION)


async def bulk_dispatch(request: web.Request) -> web.Response:
    """Dispatch several tickets at once (dispatchers): each through desk.act; the page
    lists what happened to each."""
    case, actor = request.config_dict[SERVICES].case, actor_of(request)
    form = await request.post()
    numbers = [n for n in form.getall("number", []) if isinstance(n, str)][:200]
    back = str(form.get("back") or request.app.router["home"].url_for())
    if not back.startswith(str(request.app.router["home"].url_for())):
        back = str(request.app.router["home"].url_for())
    results: list[tuple[str, bool, str]] = []
    try:
        category = text_field(form, "category", 48)
        area = text_field(form, "area_code", 32)
        note = text_field(form, "note")
        action = case.workflow.reroute_action
        desk.check_request(case, action, category, area)
        if not numbers:
            raise DeskError("请先勾选工单")
    except DeskError as exc:
        return _failed(request, exc, back)
    for number in numbers:
        try:
            done = await desk.act(case, number, action, actor, note, category, area)
            results.append((number, True, f"{case.workflow.label(done.to_status)}：{case.router.taxonomy.label(done.category)}"
                                          f" · {case.areas.full_name(done.area_code) or '未定位'}"))
        except DeskError as exc:
            results.append((number, False, str(exc)))
    return aiohttp_jinja2.render_template("bulk.html", request, {"results": results, "back": back,
                                                                  "csrf": request[CSRF]})
