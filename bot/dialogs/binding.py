"""Binding a home grid: by a location message, or by choosing community then grid."""

from __future__ import annotations

from bot.dialogs import texts
from bot.dialogs.session import Session
from bot.wechat.inbound import Inbound


def _numbered(names: list[str]) -> str:
    return "\n".join(f"{i}. {name}" for i, name in enumerate(names, 1))


def _choice(text: str, options: list[str]) -> str | None:
    text = text.strip().translate(str.maketrans("０１２３４５６７８９", "0123456789"))
    if text.isdigit() and 1 <= int(text) <= len(options):
        return options[int(text) - 1]
    return None


async def start(msg: Inbound, session: Session) -> str:
    areas = session.services.areas
    communities = sorted(areas.children(None, "community"), key=lambda n: n.code)
    session.goto("choosing_community", options=[c.code for c in communities])
    return texts.BIND_CHOOSE_COMMUNITY.format(options=_numbered([areas.full_name(c.code) for c in communities]))


async def choose_community(msg: Inbound, session: Session) -> str:
    code = _choice(msg.content, session.data.get("options", []))
    if code is None:
        return texts.BIND_BAD_CHOICE
    areas = session.services.areas
    grids = sorted(areas.children(code, "grid"), key=lambda n: n.code)
    session.goto("choosing_grid", options=[g.code for g in grids])
    names = [f"{g.name}（{'、'.join(g.places[:2])}）" if g.places else g.name for g in grids]
    return texts.BIND_CHOOSE_GRID.format(options=_numbered(names))


async def choose_grid(msg: Inbound, session: Session) -> str:
    code = _choice(msg.content, session.data.get("options", []))
    if code is None:
        return texts.BIND_BAD_CHOICE
    session.resident.home_area_code = code
    session.reset()
    return texts.BIND_DONE.format(area=session.services.areas.full_name(code))


def bind_location(session: Session, lat: float, lng: float) -> str:
    """An idle location message binds the grid there (and is remembered for a report)."""
    code = session.services.areas.locate(lat, lng)
    if code is None:
        return texts.LOCATION_OUTSIDE
    session.resident.home_area_code = code
    session.reset(last_location=[lat, lng], last_location_at=session.now.isoformat())
    return texts.BIND_BY_LOCATION.format(area=session.services.areas.full_name(code))
