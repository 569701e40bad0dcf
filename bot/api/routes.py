"""The API's routing table: every operation, by name (the OpenAPI document describes
each name in bot/api/openapi.py), method and path. Paths are OpenAPI templates; the
path parameters' patterns below make aiohttp match only well-formed values."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bot.api import actions, reference, views
from bot.api.errors import Handler

PATH_PATTERNS = {"number": "[0-9]{8}-[0-9]{4,9}", "attachment_id": "[0-9]{1,10}"}


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    handler: Handler

    @property
    def aiohttp_path(self) -> str:
        path = self.path
        for name, pattern in PATH_PATTERNS.items():
            path = path.replace("{" + name + "}", "{" + name + ":" + pattern + "}")
        return path


ROUTES: tuple[Route, ...] = (
    Route("openapi", "GET", "/openapi.json", reference.openapi_document),
    Route("me", "GET", "/me", reference.me),
    Route("queues", "GET", "/queues", reference.queues),
    Route("tickets", "GET", "/tickets", views.list_tickets),
    Route("export", "GET", "/tickets/export", views.export_tickets),
    Route("bulk_dispatch", "POST", "/tickets/dispatch", actions.bulk_dispatch),
    Route("ticket", "GET", "/tickets/{number}", views.get_ticket),
    Route("action", "POST", "/tickets/{number}/actions", actions.take_action),
    Route("part", "POST", "/tickets/{number}/parts", actions.act_on_part),
    Route("comment", "POST", "/tickets/{number}/comments", actions.add_comment),
    Route("supervise", "POST", "/tickets/{number}/supervisions", actions.add_supervision),
    Route("attach", "POST", "/tickets/{number}/photos", actions.add_photo),
    Route("photo", "GET", "/tickets/{number}/attachments/{attachment_id}", views.get_photo),
    Route("merge", "POST", "/tickets/{number}/merge", actions.merge_ticket),
    Route("categories", "GET", "/categories", reference.categories),
    Route("areas", "GET", "/areas", reference.areas),
    Route("workflow", "GET", "/workflow", reference.workflow),
)


def setup_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.aiohttp_path, route.handler, name=route.name)
