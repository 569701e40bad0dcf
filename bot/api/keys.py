"""The API sub-application's own state and request keys, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.api.inputs import Param
from bot.casework.actors import Actor
from bot.casework.queues import Queue
from bot.settings import Settings


@dataclass
class ApiState:
    settings: Settings
    queues: tuple[Queue, ...]  # config/console.toml, the same queues as the console's
    list_params: tuple[Param, ...]  # GET /tickets
    export_params: tuple[Param, ...]  # GET /tickets/export
    operations: tuple[tuple[str, str, str], ...]  # (route name, method, path) of every route
    document: dict[str, Any] | None = field(default=None)  # the OpenAPI document, built on first request


API = web.AppKey("api", ApiState)
ACTOR = web.RequestKey("api_actor", Actor)  # set by the bearer middleware (bot/api/auth.py)
