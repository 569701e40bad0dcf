"""The session a handler gets: the resident, their dialog state, the open
transaction and the services. State changes are saved with the reply."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services import Services
from storage.conversation import DialogRecord, ResidentRecord

IDLE = "idle"


@dataclass
class Session:
    services: Services
    db: AsyncSession
    resident: ResidentRecord
    dialog: DialogRecord
    now: datetime
    message_key: str
    notices: list[str] = field(default_factory=list)  # prepended to the reply
    _after_commit: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.dialog.state

    @property
    def data(self) -> dict[str, Any]:
        return self.dialog.data or {}

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return self.services.settings

    @property
    def consented(self) -> bool:
        return self.resident.consent_at is not None

    def goto(self, state: str, **data: Any) -> None:
        """Enter a dialog state with fresh data."""
        self.dialog.state = state
        self.dialog.data = data

    def update(self, **data: Any) -> None:
        """Change some data, keeping the state."""
        self.dialog.data = {**self.data, **data}

    def reset(self, **keep: Any) -> None:
        self.goto(IDLE, **keep)

    def after_commit(self, action: Callable[[], Any]) -> None:
        """Run once the transaction is committed (background work, outbox kick)."""
        self._after_commit.append(action)

    def run_after_commit(self) -> None:
        for action in self._after_commit:
            action()
