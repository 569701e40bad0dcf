"""Who is asking and the reference data clients need to fill their forms: the staff
member with their queues, the taxonomy, the grid tree, the workflow; and the OpenAPI
document itself."""

from __future__ import annotations

from aiohttp import web

from bot.api.auth import actor_of
from bot.api.keys import API
from bot.api.openapi import build_document
from bot.api.serialize import areas_json, categories_json, queues_json, staff_json, workflow_json
from bot.api.views import casework, reply
from bot.casework.queues import queue_counts, queues_for
from bot.jsonhttp import json_response


async def _my_queues(request: web.Request) -> list[dict]:
    case, actor = casework(request), actor_of(request)
    assert actor.staff is not None
    mine = queues_for(request.app[API].queues, actor.staff)
    async with case.db.session() as session:
        counts = await queue_counts(case, session, actor, mine)
    return queues_json(mine, counts)


async def me(request: web.Request) -> web.Response:
    case, actor = casework(request), actor_of(request)
    staff = case.org.record(actor.staff.id if actor.staff else None) or actor.staff
    assert staff is not None
    return reply({**staff_json(case, staff), "queues": await _my_queues(request)})


async def queues(request: web.Request) -> web.Response:
    return reply({"queues": await _my_queues(request)})


async def categories(request: web.Request) -> web.Response:
    return reply(categories_json(casework(request)))


async def areas(request: web.Request) -> web.Response:
    return reply(areas_json(casework(request)))


async def workflow(request: web.Request) -> web.Response:
    return reply(workflow_json(casework(request)))


async def openapi_document(request: web.Request) -> web.Response:
    state = request.app[API]
    if state.document is None:
        base = str(request.app.router["openapi"].url_for()).rsplit("/", 1)[0]
        state.document = build_document(casework(request), state, base)
    return json_response(state.document)
