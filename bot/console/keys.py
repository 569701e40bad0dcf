"""Every AppKey and request key of the console, in one place."""

from __future__ import annotations

from aiohttp import web

from bot.casework.actors import Actor
from bot.console.render import Console

CONSOLE = web.AppKey("console", Console)
# Set on the request by the session middleware for a logged-in staff member.
ACTOR = web.RequestKey("actor", Actor)
CSRF = web.RequestKey("csrf", str)
SESSION_COOKIE = "minyi_console"
LOGIN_CSRF_COOKIE = "minyi_login_csrf"
