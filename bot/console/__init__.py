"""The staff console: an aiohttp sub-application at /console, rendered on the server
(aiohttp-jinja2), phone-first. Views call the casework functions the CLI and the staff
chat use (desk.act, remarks, merge, queues, ticket_view, exports); they add no rules."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.casework.workflow import Workflow
from bot.console.auth import security_headers, session_middleware
from bot.console.keys import CONSOLE
from bot.console.render import FILTERS, GLOBALS, Console
from bot.console.routes import setup_routes
from bot.settings import Settings

HERE = Path(__file__).parent


def create_console(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[security_headers, session_middleware])
    console = Console.load(settings)
    console.check(set(Workflow.load(settings.config_dir / "workflow.toml").transitions))
    app[CONSOLE] = console
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    env.filters.update(FILTERS)
    env.globals.update(GLOBALS)
    setup_routes(app, HERE / "static")
    return app
