"""Who may do what to which ticket (config/rights.toml).

`refusal` returns None when `actor` may take `action` on `ticket`, else the reason, in
Chinese, shown to them as is; bot.casework.desk audits every refusal.
"""

from __future__ import annotations

from bot.casework.actors import Actor
from bot.casework.context import Casework
from storage.models import Ticket


def refusal(case: Casework, actor: Actor, ticket: Ticket, action: str) -> str | None:
    # Filled in by the rights table (config/rights.toml); until then every actor may act.
    return None
