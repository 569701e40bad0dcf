"""The JSON API at /api/v1 (docs/api.md): staff systems read queues and tickets and work
them with a bearer token, through the same casework functions as the CLI and the
console. `create_api` builds the sub-application bot/routes.py mounts."""

from __future__ import annotations

from aiohttp import web

from bot.api.auth import bearer_auth
from bot.api.errors import json_errors
from bot.api.keys import API, ApiState
from bot.api.specs import export_params, list_params
from bot.casework.queues import load_queues
from bot.settings import Settings

__all__ = ["create_api"]


def create_api(settings: Settings) -> web.Application:
    from bot.api.routes import ROUTES, setup_routes

    queues = load_queues(settings.config_dir)
    app = web.Application(middlewares=[json_errors, bearer_auth])
    app[API] = ApiState(settings, queues, list_params(queues, settings.console.page_size), export_params(queues),
                        tuple((r.name, r.method, r.path) for r in ROUTES))
    setup_routes(app)
    return app
