"""What the ticket domain is given: a narrow interface, not the whole service.

The app factory builds one `Casework` and hands it to dialogs, the CLI and (next) the
web console; nothing in bot/casework imports the WeChat boundary (bot/wechat) — messages
are outbox rows written through storage/, delivered by bot/wechat/outbox.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.casework.areas import AreaDirectory
from bot.casework.org import Organisation
from bot.casework.sla import SlaPolicy
from bot.casework.workflow import Workflow
from nlp.router import Router
from storage.db import Database
from storage.outbox_rows import OutboxPort

if TYPE_CHECKING:  # these modules build on this one
    from bot.casework.notify import Notices
    from bot.casework.parts import PartPolicy
    from bot.casework.ratings import LinkSigner, RatingPolicy


@dataclass
class Casework:
    db: Database
    workflow: Workflow
    sla: SlaPolicy
    router: Router  # the taxonomy (departments, categories) and the urgency rules
    areas: AreaDirectory
    org: Organisation  # staff and their roles
    outbox: OutboxPort
    notices: "Notices"  # who is told what, config/notices.toml
    parts: "PartPolicy"  # joint dispatch parts, [part] of config/workflow.toml
    ratings: "RatingPolicy"  # 回访 questions and windows, config/rating.toml
    rating_links: "LinkSigner"  # signed links to the rating page
    data_dir: Path  # attachments are stored under data_dir/media (paths relative to it)
