"""Working tickets: workflow actions (desk.act), bulk dispatch, joint-dispatch parts
(parts.act_on_part), internal notes, 督办, photos and 合并重复 — the casework functions
the CLI and the console call, so rights, audit, events and notices are theirs. The API
only maps their answers to HTTP: Refused → 403, a value the domain does not take → 400,
a state that does not allow the action now → 409."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from aiohttp import web

from bot.api.auth import actor_of
from bot.api.errors import ApiError
from bot.api.inputs import parse_body, parse_photo
from bot.api.serialize import done_json, part_done_json
from bot.api.specs import ACTION, BULK_DISPATCH, COMMENT, MAX_LABEL_CHARS, MERGE, PART, SUPERVISE
from bot.api.views import casework, reply, visible_ticket
from bot.casework import desk, merge, parts, remarks
from bot.casework.actors import Actor
from bot.casework.context import Casework
from bot.casework.desk import DeskError, Refused
from bot.casework.queries import find_ticket
from bot.casework.remarks import Added

CREATED = 201


def failure(exc: DeskError, conflict: bool) -> ApiError:
    """A DeskError as an answer: a refusal (already audited) is 403; otherwise 409 when the
    request was well formed and the ticket's state is what stands in the way, else 400."""
    if isinstance(exc, Refused):
        return ApiError("forbidden", str(exc))
    return ApiError("conflict" if conflict else "invalid_request", str(exc))


def checked_request(case: Casework, action: str, category: str | None, area_code: str | None) -> None:
    """The ticket domain's own check of an action and its re-route values (400)."""
    try:
        desk.check_request(case, action, category, area_code)
        merge.check_plain_action(action)
    except DeskError as exc:
        raise failure(exc, conflict=False) from None


def added_json(added: Added) -> dict[str, Any]:
    return {"number": added.number, "event_id": added.event_id, "notices": added.notices}


async def take_action(request: web.Request) -> web.Response:
    case, actor = casework(request), actor_of(request)
    number = request.match_info["number"]
    body = await parse_body(request, ACTION)
    action, category, area_code = body["action"], body["category"], body["area_code"]
    checked_request(case, action, category, area_code)
    await visible_ticket(case, actor, number, action)
    try:
        done = await desk.act(case, number, action, actor, body["note"], category, area_code)
    except DeskError as exc:
        raise failure(exc, conflict=True) from None
    return reply(done_json(case, done))


async def _dispatch_one(case: Casework, actor: Actor, number: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        await visible_ticket(case, actor, number, action)
        done = await desk.act(case, number, action, actor, body["note"], body["category"], body["area_code"])
    except ApiError as exc:
        return {"number": number, "ok": False, "result": None, "error": {"code": exc.code, "message": exc.message}}
    except DeskError as exc:
        problem = failure(exc, conflict=True)
        return {"number": number, "ok": False, "result": None,
                "error": {"code": problem.code, "message": problem.message}}
    return {"number": number, "ok": True, "result": done_json(case, done), "error": None}


async def bulk_dispatch(request: web.Request) -> web.Response:
    case, actor = casework(request), actor_of(request)
    body = await parse_body(request, BULK_DISPATCH)
    action = case.workflow.reroute_action
    checked_request(case, action, body["category"], body["area_code"])
    results = [await _dispatch_one(case, actor, number, action, body) for number in body["numbers"]]
    succeeded = sum(1 for r in results if r["ok"])
    return reply({"action": action, "succeeded": succeeded, "failed": len(results) - succeeded, "results": results})


async def act_on_part(request: web.Request) -> web.Response:
    """联合派单: `minyi ticket part NUMBER DEPT WORD` over HTTP."""
    case, actor = casework(request), actor_of(request)
    number = request.match_info["number"]
    body = await parse_body(request, PART)
    department, word = body["department"], body["action"]
    transition = case.parts.transitions.get(word)
    # Audited under the part action tried (the word itself when there is none, as the CLI does).
    ticket = await visible_ticket(case, actor, number, transition.action if transition else word)
    if department not in case.router.taxonomy.departments:  # codes only; the CLI also takes names
        raise ApiError("invalid_request", f"没有部门代码 {department}（部门见 GET /categories）")
    async with case.db.session() as session:
        has_part = any(p.department == department for p in await parts.parts_of(session, ticket.id or 0))
    try:
        done = await parts.act_on_part(case, number, department, word, actor, body["note"])
    except DeskError as exc:
        # An unknown word or a department with no part of this ticket is bad input (400);
        # with both right, what stands in the way is the part's state (409).
        raise failure(exc, conflict=transition is not None and has_part) from None
    return reply(part_done_json(case, done))


async def _remark(request: web.Request, action: str, add: Callable[[Casework, str, Actor, Any], Awaitable[Added]],
                  value: Any) -> web.Response:
    """A remark (casework/remarks.py) on the ticket of the URL: the view check first, then
    `add(case, number, actor, value)`; 201 with the event it wrote."""
    case, actor = casework(request), actor_of(request)
    number = request.match_info["number"]
    await visible_ticket(case, actor, number, action)
    try:
        added = await add(case, number, actor, value)
    except DeskError as exc:
        raise failure(exc, conflict=False) from None
    return reply(added_json(added), CREATED)


async def add_comment(request: web.Request) -> web.Response:
    body = await parse_body(request, COMMENT)
    return await _remark(request, remarks.COMMENT, remarks.comment, body["text"])


async def add_supervision(request: web.Request) -> web.Response:
    body = await parse_body(request, SUPERVISE)
    return await _remark(request, remarks.SUPERVISE, remarks.supervise, body["note"])


async def add_photo(request: web.Request) -> web.Response:
    upload = await parse_photo(request, remarks.MAX_PHOTO_BYTES, MAX_LABEL_CHARS)

    async def attach(case: Casework, number: str, actor: Actor, _: Any) -> Added:
        return await remarks.attach_photo(case, number, actor, upload.content, upload.label)

    return await _remark(request, remarks.ATTACH, attach, None)


async def merge_ticket(request: web.Request) -> web.Response:
    case, actor = casework(request), actor_of(request)
    number = request.match_info["number"]
    body = await parse_body(request, MERGE)
    into = body["into"]
    await visible_ticket(case, actor, number, merge.MERGE_ACTION)
    # What merge refuses about `into` itself is bad input (400); the rest is the state (409).
    if into == number:
        raise ApiError("invalid_request", "不能合并到工单自身")
    async with case.db.session() as session:
        target = await find_ticket(session, into)
    if target is None:
        raise ApiError("invalid_request", f"没有工单 {into}")
    try:
        done = await merge.merge(case, number, into, actor, body["note"])
    except DeskError as exc:
        raise failure(exc, conflict=True) from None
    return reply(done_json(case, done))
