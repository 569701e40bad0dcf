"""The app factory. Resources are opened and closed in cleanup contexts, in order:
database → services (areas, router, WeChat client, outbox) → scheduler."""

from __future__ import annotations

import logging
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from bot.casework.areas import AreaDirectory
from bot.casework.context import Casework
from bot.casework.notify import NOTICES_FILE, Notices
from bot.casework.org import Organisation, default_rights
from bot.casework.parts import PartPolicy
from bot.casework.ratings import LinkSigner, RatingPolicy
from bot.dialogs.advice import EmergencyGuide
from bot.dialogs.staff import CONFIG_FILE as STAFF_CHAT_FILE
from bot.dialogs.staff import StaffChat
from bot.inbox import Inbox
from bot.leader import Leadership
from bot.routes import CALLBACK, INBOX, setup_routes
from bot.scheduler import start_scheduler
from bot.services import SERVICES, Services
from bot.settings import Settings
from bot.sla_jobs import check_calendar
from bot.casework.sla import SlaPolicy
from bot.tasks import BackgroundTasks
from bot.wechat.callback import WeChatCallback
from bot.wechat.client import WeChatClient
from bot.wechat.outbox import OutboxSender
from bot.casework.workflow import Workflow
from nlp.intent import IntentClassifier
from nlp.router import Router
from storage import migrate, seed
from storage.db import Database
from surveys.definitions import load_surveys

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)


async def open_database(settings: Settings) -> Database:
    """Open the database, migrating and seeding the embedded default as configured."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url, echo=settings.database.echo, pool_size=settings.database.pool_size,
                  pool_timeout=settings.database.pool_timeout_seconds)
    if settings.auto_migrate:
        await migrate.upgrade(db.engine)
    if settings.load_demo:
        async with db.transaction() as s:
            added = await seed.load_demo(s, settings.config_dir)
        if any(added.values()):
            log.info("demo data loaded: %s", added)
    return db


async def build_services(settings: Settings, db: Database, http: aiohttp.ClientSession) -> Services:
    async with db.session() as s:
        areas = await AreaDirectory.load(s)
        org = await Organisation.load(s, default_rights(settings.config_dir))
    router = Router.from_config(settings.config_dir, areas.locator, areas.gazetteer,
                                settings.routing.confidence_threshold, settings.models_dir)
    client = None if settings.wechat.offline else WeChatClient(settings.wechat, http)
    workflow = Workflow.load(settings.config_dir / "workflow.toml")
    parts = PartPolicy.load(settings.config_dir / "workflow.toml")
    ratings = RatingPolicy.load(settings.config_dir)
    ratings.check(workflow)
    StaffChat.load(settings.config_dir / STAFF_CHAT_FILE).check(set(workflow.transitions), set(parts.transitions))
    org.rights.check(workflow, {t.action for t in parts.transitions.values()})  # every action the rights table names exists
    sla = SlaPolicy.load(settings.config_dir)
    outbox = OutboxSender(db, settings.wechat, client)
    return Services(
        settings=settings,
        db=db,
        areas=areas,
        router=router,
        workflow=workflow,
        sla=sla,
        tasks=BackgroundTasks(),
        http=http,
        wechat=client,
        outbox=outbox,
        surveys=load_surveys(settings.config_dir / "surveys"),
        emergency=EmergencyGuide.load(settings.config_dir / "emergency.toml"),
        intents=IntentClassifier.from_config(settings.config_dir, router.tagger),
        case=Casework(db=db, workflow=workflow, sla=sla, router=router, areas=areas, org=org, outbox=outbox,
                      notices=Notices.load(settings.config_dir / NOTICES_FILE, settings.wechat.notice_templates),
                      parts=parts, ratings=ratings, rating_links=LinkSigner.from_settings(settings),
                      data_dir=settings.data_dir),
    )


def check_settings(settings: Settings) -> None:
    """Refuse settings that would leave the callback open to anyone."""
    if not settings.wechat.token.strip():
        raise ValueError("MINYI_WECHAT_TOKEN 不能为空：回调签名依赖它")
    if not settings.wechat.offline and settings.wechat.token == "minyi-dev-token":
        log.warning("正在使用默认的开发 token 连接真实公众号：请设置 MINYI_WECHAT_TOKEN")


def create_app(settings: Settings) -> web.Application:
    check_settings(settings)
    from bot.httpbody import body_limits
    from bot.logs import request_id_middleware

    app = web.Application(client_max_size=max(settings.server.max_body_bytes, 8 * 1024 * 1024),
                          middlewares=[request_id_middleware, body_limits(settings.server)])
    app[SETTINGS] = settings

    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        app[DATABASE] = await open_database(settings)
        yield
        await app[DATABASE].close()

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as http:
            services = await build_services(settings, app[DATABASE], http)
            app[SERVICES] = services
            app[INBOX] = Inbox(services)
            app[CALLBACK] = WeChatCallback(settings.wechat, app[INBOX], settings.server.max_body_bytes,
                                           services.tasks)
            services.outbox.kick()  # anything left from before a restart
            check_calendar(services.sla)  # logs a warning when the next 60 days are not all known
            yield
            await services.tasks.close()
            await services.outbox.close()

    async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
        leadership = Leadership.for_settings(settings)
        scheduler = start_scheduler(app[SERVICES], app[INBOX], leadership=leadership)
        yield
        scheduler.shutdown(wait=False)
        await leadership.release()  # another worker takes over on its next try

    app.cleanup_ctx.extend([database_ctx, services_ctx, scheduler_ctx])
    setup_routes(app, settings)
    return app
