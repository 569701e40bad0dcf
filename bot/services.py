"""Everything a request handler may use, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from bot.casework.areas import AreaDirectory
from bot.casework.context import Casework
from bot.dialogs.advice import EmergencyGuide
from bot.settings import Settings
from bot.casework.sla import SlaPolicy
from bot.tasks import BackgroundTasks
from bot.wechat.client import WeChatClient
from bot.wechat.outbox import OutboxSender
from bot.casework.workflow import Workflow
from nlp.intent import IntentClassifier
from nlp.router import Router
from storage.db import Database
from surveys.definitions import Survey


@dataclass
class Services:
    settings: Settings
    db: Database
    areas: AreaDirectory
    router: Router
    workflow: Workflow
    sla: SlaPolicy
    tasks: BackgroundTasks
    http: aiohttp.ClientSession
    wechat: WeChatClient | None  # None in offline mode
    outbox: OutboxSender
    surveys: dict[str, Survey]  # questionnaires from config/surveys/, validated at start
    emergency: EmergencyGuide  # advice per danger, config/emergency.toml
    intents: IntentClassifier  # what a resident's text wants, config/intents.toml
    case: Casework  # the ticket domain's view of the above (bot/casework)


SERVICES = web.AppKey("services", Services)
