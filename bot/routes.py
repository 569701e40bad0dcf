"""Every route in one place."""

from __future__ import annotations

from aiohttp import web

from bot import open311
from bot.services import SERVICES
from bot.settings import Settings
from bot.inbox import Inbox
from bot.wechat.callback import WeChatCallback

CALLBACK = web.AppKey("callback", WeChatCallback)
INBOX = web.AppKey("inbox", Inbox)


async def wechat_verify(request: web.Request) -> web.Response:
    return request.app[CALLBACK].verify_url(request.query)


async def wechat_receive(request: web.Request) -> web.Response:
    return await request.app[CALLBACK].receive(request)


async def healthz(request: web.Request) -> web.Response:
    """200 once the database answers; used by load balancers and docker."""
    from sqlalchemy import text

    services = request.app.get(SERVICES)
    if services is None:
        return web.json_response({"status": "starting"}, status=503)
    async with services.db.session() as s:
        await s.exec(text("SELECT 1"))  # type: ignore[call-overload]
    return web.json_response({"status": "ok", "offline": services.settings.wechat.offline})


def setup_routes(app: web.Application, settings: Settings) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/wechat", wechat_verify)
    app.router.add_post("/wechat", wechat_receive)
    app.router.add_get("/open311/v2/services.json", open311.services_endpoint)
    app.router.add_get("/open311/v2/requests.json", open311.requests_endpoint)
    app.router.add_get("/open311/v2/requests/{request_id}.json", open311.request_endpoint)
    from bot.rating_page import setup_rating_page

    setup_rating_page(app)  # GET/POST /rating/{token}: the signed 回访 page (route name "rating")
    from bot.api import create_api
    from bot.console import create_console

    app.add_subapp("/console/", create_console(settings))  # the staff console (bot/console/routes.py)
    app.add_subapp("/api/v1/", create_api(settings))  # the JSON API (bot/api/routes.py)

    if settings.simulator_enabled:
        from bot.sim import setup_simulator

        setup_simulator(app)
